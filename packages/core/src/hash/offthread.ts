import { Worker } from 'node:worker_threads';
import type { HashAlgorithm } from './algorithms.js';

/**
 * One worker thread that hashes chunks handed to it, so a second hash (the destination's,
 * while the source's runs on the main thread) uses the second core. Inline source keeps it
 * working from both the bundled package and the TypeScript sources; only `node:crypto`
 * algorithms run here.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
const memories = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'init') hashes.set(m.id, createHash(m.algorithm));
  else if (m.op === 'update') {
    hashes.get(m.id)?.update(new Uint8Array(m.buffer, m.offset, m.length));
    // The memory goes back to the main thread: this isolate allocates almost nothing, so
    // its garbage collector would let hashed chunks pile up for a long time.
    parentPort.postMessage({ id: m.id, consumed: m.length, buffer: m.buffer }, [m.buffer]);
  }
  else if (m.op === 'bind') memories.set(m.id, m.memory);
  else if (m.op === 'shared') {
    hashes.get(m.id)?.update(new Uint8Array(memories.get(m.id), m.offset, m.length));
    parentPort.postMessage({ id: m.id, hashed: true });
  }
  else if (m.op === 'digest') {
    const h = hashes.get(m.id);
    hashes.delete(m.id);
    memories.delete(m.id);
    parentPort.postMessage({ id: m.id, digest: h ? h.digest('hex') : null });
  } else if (m.op === 'drop') {
    hashes.delete(m.id);
    memories.delete(m.id);
  }
});
`;

/** Algorithms the worker computes (OpenSSL through node:crypto). */
export const OFF_THREAD_ALGORITHMS: ReadonlySet<HashAlgorithm> = new Set(['sha256', 'md5']);

let worker: Worker | null = null;
let users = 0;
let nextId = 1;
const waiting = new Map<number, { resolve: (digest: string) => void; reject: (error: Error) => void }>();
/** Per hasher: called as the worker reports bytes consumed. */
const consumers = new Map<number, (bytes: number) => void>();
/** Per hasher: told as the worker finishes a region of shared memory (in order), or is lost. */
const sharedDone = new Map<number, { hashed: () => void; lost: (error: Error) => void }>();

/** Bytes handed to the worker and not yet hashed, per hasher, before `update` makes the caller wait. */
const MAX_PENDING_BYTES = 32 * 1024 * 1024;

function acquire(): Worker {
  if (!worker) {
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.on('message', (m: { id: number; digest?: string | null; consumed?: number; hashed?: true }) => {
      if (m.consumed !== undefined) {
        consumers.get(m.id)?.(m.consumed);
        return;
      }
      if (m.hashed) {
        sharedDone.get(m.id)?.hashed();
        return;
      }
      const entry = waiting.get(m.id);
      waiting.delete(m.id);
      if (typeof m.digest !== 'string') entry?.reject(new Error('hash worker lost the hash state'));
      else entry?.resolve(m.digest);
    });
    const fail = (error: Error) => {
      for (const entry of waiting.values()) entry.reject(error);
      for (const entry of sharedDone.values()) entry.lost(error);
      waiting.clear();
      if (worker === w) worker = null;
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`hash worker exited (${code})`)));
    worker = w;
  }
  users += 1;
  worker.ref();
  return worker;
}

function release(): void {
  users -= 1;
  // Kept for the next file, but never what keeps the process alive.
  if (users === 0) worker?.unref();
}

/** An incremental hash computed on the worker thread. Chunks are moved there, not copied, when they own their memory. */
export class OffThreadHasher {
  readonly #id = nextId++;
  readonly #worker: Worker;
  #done = false;
  #pending = 0;
  #drained: (() => void) | null = null;
  readonly #sharedWaiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  #memory: SharedArrayBuffer | null = null;

  constructor(readonly algorithm: HashAlgorithm) {
    if (!OFF_THREAD_ALGORITHMS.has(algorithm)) throw new Error(`${algorithm} is not hashed off-thread`);
    this.#worker = acquire();
    consumers.set(this.#id, (bytes) => {
      this.#pending -= bytes;
      if (this.#pending <= MAX_PENDING_BYTES / 2) {
        this.#drained?.();
        this.#drained = null;
      }
    });
    // The worker answers in the order it was asked.
    sharedDone.set(this.#id, {
      hashed: () => this.#sharedWaiters.shift()?.resolve(),
      lost: (error) => {
        for (const waiter of this.#sharedWaiters.splice(0)) waiter.reject(error);
      },
    });
    this.#worker.postMessage({ op: 'init', id: this.#id, algorithm });
  }

  /**
   * Hand a chunk to the worker. The chunk must not be used afterwards: its memory may
   * move. Resolves at once, or once the worker has caught up when too much is queued, so a
   * fast reader cannot pile up memory behind a slower hash.
   */
  async update(chunk: Uint8Array): Promise<void> {
    const owns = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
    const buffer = owns ? (chunk.buffer as ArrayBuffer) : chunk.slice().buffer;
    this.#pending += chunk.byteLength;
    this.#worker.postMessage({ op: 'update', id: this.#id, buffer, offset: 0, length: chunk.byteLength }, [buffer]);
    if (this.#pending > MAX_PENDING_BYTES) await new Promise<void>((resolve) => (this.#drained = resolve));
  }

  /**
   * Hash a region of shared memory in place: nothing is copied or moved, so the caller can
   * reuse a fixed set of buffers instead of allocating one per chunk (which, at 1 GiB of
   * 4 MiB chunks, keeps the garbage collector busy for seconds). Resolves once the worker
   * has hashed the region: only then may the memory be overwritten.
   */
  updateShared(memory: SharedArrayBuffer, offset: number, length: number): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.#sharedWaiters.push({ resolve, reject }));
    // Sharing a SharedArrayBuffer with another thread costs far more than a plain message:
    // it is shared once, then only offsets travel.
    if (this.#memory !== memory) {
      this.#memory = memory;
      this.#worker.postMessage({ op: 'bind', id: this.#id, memory });
    }
    this.#worker.postMessage({ op: 'shared', id: this.#id, offset, length });
    return done;
  }

  digest(): Promise<string> {
    this.#done = true;
    const promise = new Promise<string>((resolve, reject) => waiting.set(this.#id, { resolve, reject }));
    this.#worker.postMessage({ op: 'digest', id: this.#id });
    return promise.finally(() => {
      consumers.delete(this.#id);
      sharedDone.delete(this.#id);
      release();
    });
  }

  /** Abandon the hash (on failure). */
  dispose(): void {
    if (this.#done) return;
    this.#done = true;
    consumers.delete(this.#id);
    sharedDone.delete(this.#id);
    for (const waiter of this.#sharedWaiters.splice(0)) waiter.resolve();
    this.#drained?.();
    this.#worker.postMessage({ op: 'drop', id: this.#id });
    release();
  }
}
