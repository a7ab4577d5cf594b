import { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  Adapter,
  AdapterCapabilities,
  FileStat,
  ListEntry,
  ListOptions,
  ReadOptions,
  StatfsResult,
  WriteOptions,
} from '../adapter.js';
import { ErrorCode, KetterError } from '../errors.js';
import type { HashAlgorithm } from '../hash/algorithms.js';

/** Adapter operations a fault can target. */
export type FaultOperation =
  | 'stat'
  | 'list'
  | 'openRead'
  | 'openWrite'
  | 'mkdir'
  | 'rename'
  | 'unlink'
  | 'rmdir'
  | 'removeTree'
  | 'setTimes'
  | 'setMode'
  | 'sync'
  | 'statfs'
  | 'hash'
  | 'extract';

/** What a fault does. */
export type FaultKind = 'fail' | 'delay' | 'truncate' | 'corrupt';

/** One injected fault. */
export interface Fault {
  op: FaultOperation;
  /**
   * Which paths: an exact root-relative path, a RegExp, or a predicate; all when absent.
   * For operations on several paths (`rename`, `sync`, `hash`, `extract`) it matches when
   * any of them does.
   */
  path?: string | RegExp | ((path: string) => boolean);
  /**
   * - `fail`: throw (or, for streams, emit) `error`, by default a transient `IO_ERROR`.
   * - `delay`: wait `delayMs`, then carry on.
   * - `truncate` (streams only): `openRead` ends early, cleanly; `openWrite` silently drops
   *   the bytes past the cut, so the file is shorter than what the writer sent.
   * - `corrupt`: flip one byte of the data (`openRead`: bytes read; `openWrite`: bytes
   *   written); for `hash`, one character of the digest.
   */
  kind: FaultKind;
  error?: KetterError;
  /** For `delay` (default 100 ms). */
  delayMs?: number;
  /**
   * For streams: act once this many bytes have passed. Defaults: 0 for `fail` and `delay`;
   * the middle of the first chunk for `truncate` and `corrupt`.
   */
  afterBytes?: number;
  /** How many times it fires (default 1; `Infinity` for always). */
  times?: number;
}

/** A fault that acted, for assertions. */
export interface FiredFault {
  readonly op: FaultOperation;
  readonly kind: FaultKind;
  /** The path it acted on. */
  readonly path: string;
  readonly fault: Fault;
}

/** Kinds each operation supports; anything else is refused when the fault is added. */
const STREAM_KINDS: readonly FaultKind[] = ['fail', 'delay', 'truncate', 'corrupt'];
const HASH_KINDS: readonly FaultKind[] = ['fail', 'delay', 'corrupt'];
const CALL_KINDS: readonly FaultKind[] = ['fail', 'delay'];

function kindsFor(op: FaultOperation): readonly FaultKind[] {
  if (op === 'openRead' || op === 'openWrite') return STREAM_KINDS;
  if (op === 'hash') return HASH_KINDS;
  return CALL_KINDS;
}

const DEFAULT_DELAY_MS = 100;

interface Slot {
  fault: Fault;
  remaining: number;
}

/**
 * An adapter wrapper that injects chosen faults (failures, delays, short or corrupted
 * streams) into an otherwise real adapter, to test how Ketter and its callers behave when
 * storage misbehaves. Everything else is delegated unchanged: same kind, id, root and
 * capabilities, and optional methods only where the wrapped adapter has them.
 *
 * A stream fault is taken by the `openRead`/`openWrite` call that matches it and acts when
 * its byte offset is reached; `fired` records every fault that actually acted.
 *
 * @example
 * ```ts
 * const faulty = new FaultyAdapter(adapter, [{ op: 'openRead', path: /\.wav$/, kind: 'corrupt' }]);
 * // ... run a transfer through a Portal over `faulty`, expect CHECKSUM_MISMATCH
 * expect(faulty.fired).toHaveLength(1);
 * ```
 */
export class FaultyAdapter implements Adapter {
  readonly inner: Adapter;
  /** Every fault that acted, in order. */
  readonly fired: FiredFault[] = [];
  #slots: Slot[] = [];

  declare readFile?: (path: string, options?: { signal?: AbortSignal }) => Promise<Uint8Array>;
  declare writeFile?: (path: string, data: Uint8Array, options?: { mode?: number; signal?: AbortSignal }) => Promise<void>;
  declare setTimes?: (path: string, mtimeMs: number) => Promise<void>;
  declare setMode?: (path: string, mode: number) => Promise<void>;
  declare sync?: (paths: readonly string[]) => Promise<void>;
  declare statfs?: (path: string) => Promise<StatfsResult>;
  declare hash?: (paths: readonly string[], algorithm: HashAlgorithm, options?: { signal?: AbortSignal }) => Promise<string[]>;
  declare extract?: (archive: string, into: string, options?: { signal?: AbortSignal }) => Promise<void>;

  constructor(inner: Adapter, faults: readonly Fault[] = []) {
    this.inner = inner;
    for (const fault of faults) this.add(fault);
    // Only what the wrapped adapter offers: capability flags and methods must keep agreeing.
    const { readFile, writeFile, setTimes, setMode, sync, statfs, hash, extract } = inner;
    // The small-file fast path is the same data path as the streams: openRead/openWrite
    // faults apply to it, by going through the faulty streams when one is pending.
    if (readFile) {
      this.readFile = async (path, options) => {
        if (!this.#pending('openRead', path)) return readFile.call(inner, path, options);
        const chunks: Buffer[] = [];
        for await (const chunk of this.openRead(path, options)) chunks.push(chunk as Buffer);
        return Buffer.concat(chunks);
      };
    }
    if (writeFile) {
      this.writeFile = async (path, data, options) => {
        if (!this.#pending('openWrite', path)) return writeFile.call(inner, path, data, options);
        const stream = this.openWrite(path, options);
        await new Promise<void>((resolve, reject) => {
          stream.once('error', reject);
          stream.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength), () => resolve());
        });
      };
    }
    if (setTimes) this.setTimes = (path, mtimeMs) => this.#call('setTimes', [path], () => setTimes.call(inner, path, mtimeMs));
    if (setMode) this.setMode = (path, mode) => this.#call('setMode', [path], () => setMode.call(inner, path, mode));
    if (sync) this.sync = (paths) => this.#call('sync', paths, () => sync.call(inner, paths));
    if (statfs) this.statfs = (path) => this.#call('statfs', [path], () => statfs.call(inner, path));
    if (hash) this.hash = (paths, algorithm, options) => this.#hash(hash.bind(inner), paths, algorithm, options);
    if (extract) this.extract = (archive, into, options) => this.#call('extract', [archive, into], () => extract.call(inner, archive, into, options));
  }

  get kind(): string {
    return this.inner.kind;
  }
  get id(): string {
    return this.inner.id;
  }
  get root(): string {
    return this.inner.root;
  }
  get capabilities(): AdapterCapabilities {
    return this.inner.capabilities;
  }
  /** How many faults have acted so far. */
  get firedCount(): number {
    return this.fired.length;
  }

  /** Add a fault; refuses a kind the operation cannot have, so a test never relies on a no-op. */
  add(fault: Fault): this {
    if (!kindsFor(fault.op).includes(fault.kind)) {
      throw new KetterError(ErrorCode.INVALID_REQUEST, `[faulty] '${fault.kind}' is not a fault '${fault.op}' can have (${kindsFor(fault.op).join(', ')})`);
    }
    const times = fault.times ?? 1;
    if (!(times > 0)) throw new KetterError(ErrorCode.INVALID_REQUEST, `[faulty] times must be positive, got ${String(fault.times)}`);
    this.#slots.push({ fault, remaining: times });
    return this;
  }

  /** Remove every pending fault (the `fired` log is kept). */
  clear(): void {
    this.#slots = [];
  }

  connect(): Promise<void> {
    return this.inner.connect();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  readlink(path: string): Promise<string> {
    return this.inner.readlink(path);
  }

  stat(path: string): Promise<FileStat | null> {
    return this.#call('stat', [path], () => this.inner.stat(path));
  }
  mkdir(path: string): Promise<void> {
    return this.#call('mkdir', [path], () => this.inner.mkdir(path));
  }
  rename(from: string, to: string): Promise<void> {
    return this.#call('rename', [from, to], () => this.inner.rename(from, to));
  }
  unlink(path: string): Promise<void> {
    return this.#call('unlink', [path], () => this.inner.unlink(path));
  }
  rmdir(path: string): Promise<void> {
    return this.#call('rmdir', [path], () => this.inner.rmdir(path));
  }
  removeTree(path: string): Promise<void> {
    return this.#call('removeTree', [path], () => this.inner.removeTree(path));
  }

  async *list(path: string, options?: ListOptions): AsyncIterable<ListEntry> {
    await this.#before(this.#take('list', [path]));
    yield* this.inner.list(path, options);
  }

  openRead(path: string, options?: ReadOptions): Readable {
    const taken = this.#take('openRead', [path]);
    const inner = this.inner.openRead(path, options);
    if (taken.length === 0) return inner;
    const faults = new StreamFaults(taken, (slot) => this.#fire('openRead', slot.path, slot.fault));
    async function* faulty(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of inner as AsyncIterable<Buffer>) {
          const { pieces, stop } = await faults.push(chunk);
          yield* pieces;
          if (stop === 'end') return;
          if (stop) throw stop;
        }
        await faults.end();
      } finally {
        inner.destroy();
      }
    }
    return Readable.from(faulty(), { objectMode: false });
  }

  openWrite(path: string, options?: WriteOptions): Writable {
    const taken = this.#take('openWrite', [path]);
    const inner = this.inner.openWrite(path, options);
    if (taken.length === 0) return inner;
    const faults = new StreamFaults(taken, (slot) => this.#fire('openWrite', slot.path, slot.fault));
    const forward = async (piece: Buffer): Promise<void> => {
      if (!inner.write(piece)) await waitFor(inner, 'drain');
    };
    const outer = new Writable({
      ...(options?.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark }),
      write(chunk: Buffer, _encoding, callback) {
        faults
          .push(chunk)
          .then(async ({ pieces, stop }) => {
            for (const piece of pieces) await forward(piece);
            // A truncation keeps accepting bytes and drops them: the writer never knows.
            if (stop instanceof Error) throw stop;
          })
          .then(() => callback(), callback);
      },
      final(callback) {
        faults
          .end()
          .then(async () => {
            const done = waitFor(inner, 'finish');
            inner.end();
            await done;
          })
          .then(() => callback(), callback);
      },
      destroy(error, callback) {
        if (!inner.destroyed) inner.destroy(error ?? undefined);
        callback(error);
      },
    });
    inner.on('error', (error) => outer.destroy(error));
    return outer;
  }

  async #hash(
    hash: NonNullable<Adapter['hash']>,
    paths: readonly string[],
    algorithm: HashAlgorithm,
    options?: { signal?: AbortSignal },
  ): Promise<string[]> {
    const taken = this.#take('hash', paths);
    await this.#before(taken);
    const digests = await hash(paths, algorithm, options);
    for (const slot of taken.filter((s) => s.fault.kind === 'corrupt')) {
      const index = paths.indexOf(slot.path);
      const digest = digests[index];
      if (digest === undefined || digest === '') continue;
      const last = digest.slice(-1);
      digests[index] = `${digest.slice(0, -1)}${last === '0' ? '1' : '0'}`;
      this.#fire('hash', slot.path, slot.fault);
    }
    return digests;
  }

  async #call<T>(op: FaultOperation, paths: readonly string[], run: () => Promise<T>): Promise<T> {
    await this.#before(this.#take(op, paths));
    return run();
  }

  /** Delays, then failures, of the faults taken by one call. */
  async #before(taken: readonly TakenFault[]): Promise<void> {
    for (const slot of taken) {
      if (slot.fault.kind !== 'delay') continue;
      await sleep(slot.fault.delayMs ?? DEFAULT_DELAY_MS);
      this.#fire(slot.op, slot.path, slot.fault);
    }
    const failure = taken.find((slot) => slot.fault.kind === 'fail');
    if (failure) {
      this.#fire(failure.op, failure.path, failure.fault);
      throw failure.fault.error ?? injectedError(failure.op, failure.path);
    }
  }

  /** Claim the pending faults that match this call. */
  /** Whether a fault waits for this operation on this path (without taking it). */
  #pending(op: FaultOperation, path: string): boolean {
    return this.#slots.some((slot) => slot.fault.op === op && slot.remaining > 0 && matches(slot.fault.path, path));
  }

  #take(op: FaultOperation, paths: readonly string[]): TakenFault[] {
    const taken: TakenFault[] = [];
    for (const slot of this.#slots) {
      if (slot.fault.op !== op || slot.remaining <= 0) continue;
      const path = paths.find((p) => matches(slot.fault.path, p));
      if (path === undefined) continue;
      slot.remaining -= 1;
      taken.push({ op, path, fault: slot.fault });
    }
    this.#slots = this.#slots.filter((slot) => slot.remaining > 0);
    return taken;
  }

  #fire(op: FaultOperation, path: string, fault: Fault): void {
    this.fired.push({ op, kind: fault.kind, path, fault });
  }
}

interface TakenFault {
  op: FaultOperation;
  path: string;
  fault: Fault;
}

function matches(pattern: Fault['path'], path: string): boolean {
  if (pattern === undefined) return true;
  if (typeof pattern === 'string') return pattern === path;
  if (pattern instanceof RegExp) {
    pattern.lastIndex = 0;
    return pattern.test(path);
  }
  return pattern(path);
}

function injectedError(op: FaultOperation, path: string): KetterError {
  return new KetterError(ErrorCode.IO_ERROR, `[faulty] injected ${op} failure '${path}'`, { path, transient: true });
}

function waitFor(stream: Writable, event: 'drain' | 'finish'): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.errored) return reject(stream.errored);
    if (stream.destroyed) return reject(new KetterError(ErrorCode.IO_ERROR, '[faulty] the wrapped stream was destroyed'));
    const onEvent = () => {
      stream.off('error', onError);
      resolve();
    };
    const onError = (error: unknown) => {
      stream.off(event, onEvent);
      reject(error);
    };
    stream.once(event, onEvent);
    stream.once('error', onError);
  });
}

/** What passes on after one chunk, and whether the stream stops there. */
interface StreamStep {
  pieces: Buffer[];
  /** `end`: a truncation cut the data here; an Error: an injected failure, after `pieces`. */
  stop?: 'end' | Error;
}

/** Applies the stream faults taken by one open to the bytes passing through, by offset. */
class StreamFaults {
  #pending: { slot: TakenFault; at: number | undefined }[];
  #offset = 0;
  #truncated = false;
  readonly #fire: (slot: TakenFault) => void;

  constructor(taken: readonly TakenFault[], fire: (slot: TakenFault) => void) {
    this.#pending = taken.map((slot) => ({ slot, at: slot.fault.afterBytes }));
    this.#fire = fire;
  }

  async push(chunk: Buffer): Promise<StreamStep> {
    const start = this.#offset;
    const end = start + chunk.length;
    this.#offset = end;
    if (this.#truncated) return { pieces: [], stop: 'end' };
    for (const item of this.#pending) {
      if (item.at !== undefined) continue;
      const kind = item.slot.fault.kind;
      item.at = kind === 'truncate' || kind === 'corrupt' ? start + Math.floor(chunk.length / 2) : 0;
    }
    let data = chunk;
    // Act in byte order; a fault that stops the stream cuts the chunk at its offset.
    const due = this.#pending.filter(({ at = 0 }) => at < end || (at === start && chunk.length === 0));
    due.sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
    for (const item of due) {
      this.#pending.splice(this.#pending.indexOf(item), 1);
      const { fault } = item.slot;
      const cut = Math.max(0, (item.at ?? 0) - start);
      this.#fire(item.slot);
      switch (fault.kind) {
        case 'corrupt':
          data = Buffer.from(data); // never alter the caller's buffer
          data[cut] = (data[cut] ?? 0) ^ 0xff;
          break;
        case 'delay':
          await sleep(fault.delayMs ?? DEFAULT_DELAY_MS);
          break;
        case 'fail':
          // The bytes before the fault still pass, as on a link that drops mid-file.
          return { pieces: cut > 0 ? [data.subarray(0, cut)] : [], stop: fault.error ?? injectedError(item.slot.op, item.slot.path) };
        case 'truncate':
          this.#truncated = true;
          return { pieces: cut > 0 ? [data.subarray(0, cut)] : [], stop: 'end' };
      }
    }
    return { pieces: [data] };
  }

  /** End of data: a fail or delay set at exactly the end (e.g. offset 0 of an empty file) acts now. */
  async end(): Promise<void> {
    const due = this.#pending.filter(({ at = 0 }) => at <= this.#offset);
    this.#pending = [];
    for (const item of due) {
      const { fault } = item.slot;
      if (fault.kind === 'delay') {
        this.#fire(item.slot);
        await sleep(fault.delayMs ?? DEFAULT_DELAY_MS);
      } else if (fault.kind === 'fail') {
        this.#fire(item.slot);
        throw fault.error ?? injectedError(item.slot.op, item.slot.path);
      }
    }
  }
}
