import { Readable, Writable } from 'node:stream';
import { cancelledError } from '@ketter/core';
import type { SFTPWrapper } from 'ssh2';
import { maxReadLen, maxWriteLen, sftpCalls } from './sftp-calls.js';

/** An open remote file on one SFTP session; `release` returns the session to the pool. */
export interface OpenedFile {
  sftp: SFTPWrapper;
  handle: Buffer;
  release(): void;
}

/** How a stream opens its file and turns raw failures into KetterErrors (the adapter knows the context). */
export interface StreamHooks {
  open(): Promise<OpenedFile>;
  mapError(error: unknown): Promise<Error> | Error;
  signal?: AbortSignal | undefined;
  /** Writes: fsync the handle just before closing it (in flight together), then call `durable`. */
  fsyncOnClose?: { durable(): void } | undefined;
}

/** Requests in flight for one chunk; OpenSSH queues them and answers in order. */
const MAX_PARALLEL_REQUESTS = 64;

function attachSignal(stream: Readable | Writable, signal: AbortSignal | undefined): void {
  if (!signal) return;
  const onAbort = (): void => void stream.destroy(cancelledError(signal));
  if (signal.aborted) {
    queueMicrotask(onAbort);
    return;
  }
  signal.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => signal.removeEventListener('abort', onAbort));
}

async function closeQuietly(file: OpenedFile | undefined): Promise<void> {
  if (!file) return;
  try {
    await sftpCalls.close(file.sftp, file.handle);
  } catch {
    // The handle dies with the session anyway; a failed close must not hide the real error.
  } finally {
    file.release();
  }
}

/**
 * Readable over an SFTP handle. Each `_read` fetches one chunk of `highWaterMark` bytes as
 * several requests in flight at once (the protocol's latency, not bandwidth, is what limits
 * a single request); the next chunk is only asked for when the consumer wants more, which
 * is the back-pressure.
 */
export class SftpReadStream extends Readable {
  #file: OpenedFile | undefined;
  #position: number;
  /** Exclusive end of the range, or Infinity for "to end of file". */
  readonly #limit: number;
  #first = true;
  readonly #hooks: StreamHooks;

  /** `start`/`end` select a byte range, `end` inclusive, as in `fs.createReadStream`. */
  constructor(hooks: StreamHooks, range: { start?: number | undefined; end?: number | undefined; highWaterMark?: number | undefined } = {}) {
    super({ highWaterMark: range.highWaterMark ?? 1024 * 1024 });
    this.#hooks = hooks;
    this.#position = range.start ?? 0;
    this.#limit = range.end === undefined ? Number.POSITIVE_INFINITY : range.end + 1;
    attachSignal(this, hooks.signal);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#hooks.open().then(
      (file) => {
        this.#file = file;
        callback();
      },
      async (error) => callback(await this.#hooks.mapError(error)),
    );
  }

  override _read(size: number): void {
    this.#readChunk(size).then(
      (chunk) => {
        if (chunk === null) this.push(null);
        else this.push(chunk);
      },
      async (error) => this.destroy(await this.#hooks.mapError(error)),
    );
  }

  async #readChunk(size: number): Promise<Buffer | null> {
    const file = this.#file as OpenedFile;
    const piece = maxReadLen(file.sftp);
    const remaining = this.#limit - this.#position;
    if (remaining <= 0) return null;
    // The first request is a single one: most files in a session folder fit in it, and
    // asking for more would only buy requests that answer EOF.
    const want = Math.min(remaining, this.#first ? piece : Math.max(piece, Math.min(size, piece * MAX_PARALLEL_REQUESTS)));
    this.#first = false;
    const buffer = Buffer.allocUnsafe(want);
    const pieces: Array<{ offset: number; length: number }> = [];
    for (let offset = 0; offset < want; offset += piece) pieces.push({ offset, length: Math.min(piece, want - offset) });
    const got = await Promise.all(pieces.map((p) => this.#readFully(file, buffer, p.offset, p.length, this.#position + p.offset)));
    let total = 0;
    for (let i = 0; i < pieces.length; i++) {
      total += got[i] as number;
      if ((got[i] as number) < (pieces[i] as { length: number }).length) break;
    }
    this.#position += total;
    return total === 0 ? null : buffer.subarray(0, total);
  }

  /** Read until `length` bytes or end of file: servers may answer a read short. */
  async #readFully(file: OpenedFile, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const n = await sftpCalls.read(file.sftp, file.handle, buffer, offset + done, length - done, position + done);
      if (!n) break;
      done += n;
    }
    return done;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.#file;
    this.#file = undefined;
    void closeQuietly(file).then(() => callback(error));
  }
}

/**
 * Writable over an SFTP handle opened with exclusive create. Chunks buffered while a batch
 * is in flight are written together (`_writev`) as parallel requests at their offsets; the
 * stream's `highWaterMark` bounds the memory, and `_final` closes the handle so a failed
 * close (e.g. a full disk reported late) fails the write.
 */
export class SftpWriteStream extends Writable {
  #file: OpenedFile | undefined;
  #position = 0;
  readonly #hooks: StreamHooks;

  constructor(hooks: StreamHooks, highWaterMark = 4 * 1024 * 1024) {
    super({ highWaterMark, decodeStrings: true });
    this.#hooks = hooks;
    attachSignal(this, hooks.signal);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#hooks.open().then(
      (file) => {
        this.#file = file;
        callback();
      },
      async (error) => callback(await this.#hooks.mapError(error)),
    );
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#writeBatch(chunks.map((c) => c.chunk)).then(
      () => callback(),
      async (error) => callback(await this.#hooks.mapError(error)),
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this._writev([{ chunk }], callback);
  }

  async #writeBatch(buffers: Buffer[]): Promise<void> {
    const file = this.#file as OpenedFile;
    const piece = maxWriteLen(file.sftp);
    const requests: Array<Promise<void>> = [];
    let position = this.#position;
    // Many small chunks (an archive's headers and 1 KiB entries) go out as full-size
    // requests: one round trip's worth of requests per piece, not per chunk.
    for (const buffer of coalesce(buffers, piece)) {
      for (let offset = 0; offset < buffer.length; offset += piece) {
        const length = Math.min(piece, buffer.length - offset);
        requests.push(sftpCalls.write(file.sftp, file.handle, buffer, offset, length, position));
        position += length;
        if (requests.length >= MAX_PARALLEL_REQUESTS) await Promise.all(requests.splice(0));
      }
    }
    await Promise.all(requests);
    this.#position = position;
  }

  override _final(callback: (error?: Error | null) => void): void {
    const file = this.#file as OpenedFile;
    this.#file = undefined;
    const durable = this.#hooks.fsyncOnClose;
    const synced = durable ? sftpCalls.fsync(file.sftp, file.handle) : Promise.resolve();
    synced.catch(() => undefined);
    Promise.all([synced, sftpCalls.close(file.sftp, file.handle)]).then(
      () => {
        file.release();
        durable?.durable();
        callback();
      },
      async (error) => {
        file.release();
        callback(await this.#hooks.mapError(error));
      },
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.#file;
    this.#file = undefined;
    void closeQuietly(file).then(() => callback(error));
  }
}

/** Consecutive buffers smaller than `piece` joined into buffers of about `piece` bytes; larger ones as they are. */
function* coalesce(buffers: readonly Buffer[], piece: number): Generator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for (const buffer of buffers) {
    if (buffer.length >= piece) {
      if (size > 0) yield Buffer.concat(pending, size);
      pending = [];
      size = 0;
      yield buffer;
      continue;
    }
    pending.push(buffer);
    size += buffer.length;
    if (size >= piece) {
      yield Buffer.concat(pending, size);
      pending = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(pending, size);
}
