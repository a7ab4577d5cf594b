import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { SMALL_FILE_BYTES, type Adapter } from '../adapter.js';
import { fromSystemError, KetterError, throwIfAborted } from '../errors.js';
import type { HashAlgorithm } from '../hash/algorithms.js';
import { createHasher } from '../hash/hasher.js';
import { OffThreadHasher } from '../hash/offthread.js';
import { copyFromLocal, type LocalFile } from './local-copy.js';

const MiB = 1024 * 1024;
/** Large buffers roughly halve big-file copy time against Node's 64 KiB default. */
const MAX_CHUNK = 8 * MiB;
const MIN_CHUNK = 64 * 1024;

/** Buffer size for a file: big for big files, no 8 MiB allocation for a 1 KiB one. */
export function chunkSizeFor(size: number): number {
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, size));
}

export interface CopiedFile {
  hash: string;
  size: number;
}

/**
 * Stream one file from `from` to a new file at `to`, hashing the bytes as they pass: the
 * source is read exactly once. `onBytes` reports progress per chunk.
 */
export async function copyAndHash(
  from: { adapter: Adapter; path: string },
  to: { adapter: Adapter; path: string; mode?: number },
  expectedSize: number,
  algorithm: HashAlgorithm,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<CopiedFile> {
  throwIfAborted(signal);
  const hasher = await createHasher(algorithm);
  if (expectedSize <= SMALL_FILE_BYTES && from.adapter.readFile && to.adapter.writeFile) {
    const data = await from.adapter.readFile(from.path, { sizeHint: expectedSize, ...(signal ? { signal } : {}) });
    hasher.update(data);
    await to.adapter.writeFile(to.path, data, { ...(to.mode === undefined ? {} : { mode: to.mode }), ...(signal ? { signal } : {}) });
    onBytes(data.byteLength);
    return { hash: hasher.digest(), size: data.byteLength };
  }
  const highWaterMark = chunkSizeFor(expectedSize);
  let size = 0;
  const source = from.adapter.openRead(from.path, { highWaterMark, signal });
  const sink = to.adapter.openWrite(to.path, { highWaterMark, signal, ...(to.mode === undefined ? {} : { mode: to.mode }) });
  try {
    await pipeline(
      source,
      async function* hashing(chunks: AsyncIterable<Uint8Array>) {
        for await (const chunk of chunks) {
          hasher.update(chunk);
          size += chunk.byteLength;
          onBytes(chunk.byteLength);
          yield chunk;
        }
      },
      sink,
      signal ? { signal } : {},
    );
  } catch (error) {
    throwIfAborted(signal);
    throw error instanceof KetterError ? error : fromSystemError(error, { path: to.path, operation: 'copy' });
  }
  return { hash: hasher.digest(), size };
}

/** Re-read a file and hash it (the destination check when no server-side hash exists). */
export async function rereadHash(
  adapter: Adapter,
  path: string,
  expectedSize: number,
  algorithm: HashAlgorithm,
  signal?: AbortSignal,
): Promise<CopiedFile> {
  throwIfAborted(signal);
  const hasher = await createHasher(algorithm);
  if (expectedSize <= SMALL_FILE_BYTES && adapter.readFile) {
    const data = await adapter.readFile(path, { sizeHint: expectedSize, ...(signal ? { signal } : {}) });
    hasher.update(data);
    return { hash: hasher.digest(), size: data.byteLength };
  }
  let size = 0;
  try {
    const local = adapter.localPath?.(path);
    if (local !== undefined) return { size: await hashLocalFile(local, expectedSize, hasher, signal), hash: hasher.digest() };
    for await (const chunk of adapter.openRead(path, { highWaterMark: chunkSizeFor(expectedSize), signal })) {
      hasher.update(chunk as Uint8Array);
      size += (chunk as Uint8Array).byteLength;
    }
  } catch (error) {
    throwIfAborted(signal);
    throw error instanceof KetterError ? error : fromSystemError(error, { path, operation: 'verify' });
  }
  return { hash: hasher.digest(), size };
}

/** Size of each of the two buffers a local file is re-read through. */
const REREAD_BUFFER_BYTES = 4 * MiB;

/**
 * Hash a local file through two buffers reused to its end: the next read is in flight while
 * the last one is hashed. A stream allocates a buffer per chunk instead, and re-reading a
 * 320 MiB archive left ~40 MiB of them waiting for the garbage collector. A link is not
 * followed (a scan lists a link as a link, never as a file). Returns the bytes read.
 */
async function hashLocalFile(abs: string, expectedSize: number, hasher: { update(data: Uint8Array): void }, signal?: AbortSignal): Promise<number> {
  const file = await open(abs, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  const length = Math.min(REREAD_BUFFER_BYTES, Math.max(MIN_CHUNK, expectedSize + 1));
  const buffers = [Buffer.allocUnsafeSlow(length), Buffer.allocUnsafeSlow(length)] as const;
  let position = 0;
  let turn = 0;
  let reading: Promise<{ bytesRead: number }> = file.read(buffers[0], 0, length, 0);
  try {
    for (;;) {
      const { bytesRead } = await reading;
      if (bytesRead === 0) return position;
      throwIfAborted(signal);
      const filled = buffers[turn] as Buffer;
      position += bytesRead;
      turn ^= 1;
      reading = file.read(buffers[turn] as Buffer, 0, length, position);
      hasher.update(filled.subarray(0, bytesRead));
    }
  } finally {
    await reading.catch(() => undefined);
    await file.close();
  }
}

/** Files from this size on are verified while they are copied (see {@link copyVerifyOverlapped}). */
export const OVERLAP_VERIFY_BYTES = 64 * 1024 * 1024;

/**
 * Copy a large file and verify it at the same time: the source is hashed as it is copied,
 * while the destination is read back a range behind the writer — only bytes the
 * destination has acknowledged — and hashed on a worker thread. The result is the same
 * proof as copying then re-reading, in about the time of the copy alone. A source with a
 * `local` path is read through fixed buffers and hashed off the main thread too
 * ({@link copyFromLocal}).
 */
export async function copyVerifyOverlapped(
  from: { adapter: Adapter; path: string; local?: LocalFile },
  to: { adapter: Adapter; path: string; portal: string; mode?: number },
  expectedSize: number,
  algorithm: HashAlgorithm,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<{ source: CopiedFile; destination: CopiedFile }> {
  throwIfAborted(signal);
  const inner = new AbortController();
  const onAbort = () => inner.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const destHasher = new OffThreadHasher(algorithm);
  let written = 0;
  let writerDone = false;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };

  const streamed = async (): Promise<CopiedFile> => {
    const sourceHasher = await createHasher(algorithm);
    const source = from.adapter.openRead(from.path, { highWaterMark: MAX_CHUNK, signal: inner.signal });
    const sink = to.adapter.openWrite(to.path, { highWaterMark: MAX_CHUNK, signal: inner.signal, ...(to.mode === undefined ? {} : { mode: to.mode }) });
    const sinkError = new Promise<never>((_, reject) => sink.once('error', reject));
    sinkError.catch(() => undefined);
    let size = 0;
    try {
      for await (const chunk of source) {
        const bytes = chunk as Buffer;
        sourceHasher.update(bytes);
        size += bytes.byteLength;
        onBytes(bytes.byteLength);
        // Resolved once the destination has the bytes: only then may the verifier read them.
        await Promise.race([
          new Promise<void>((resolve, reject) => sink.write(bytes, (error) => (error ? reject(error) : resolve()))),
          sinkError,
        ]);
        written += bytes.byteLength;
        notify();
      }
      await Promise.race([new Promise<void>((resolve) => sink.end(resolve)), sinkError]);
      return { hash: sourceHasher.digest(), size };
    } catch (error) {
      sink.destroy();
      source.destroy();
      throw error;
    }
  };

  const writer = async (): Promise<CopiedFile> => {
    try {
      if (!from.local) return await streamed();
      return await copyFromLocal(from.local, to, algorithm, onBytes, inner.signal, (n) => {
        written += n;
        notify();
      });
    } finally {
      writerDone = true;
      notify();
    }
  };

  const verifier = async (): Promise<number> => {
    let verified = 0;
    for (;;) {
      if (verified >= written) {
        if (writerDone) return verified;
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const end = written - 1;
      for await (const chunk of to.adapter.openRead(to.path, { start: verified, end, highWaterMark: MAX_CHUNK, signal: inner.signal })) {
        const bytes = chunk as Uint8Array;
        verified += bytes.byteLength;
        await destHasher.update(bytes);
      }
    }
  };

  try {
    const [source, verifiedBytes] = await Promise.all([
      writer().catch((error: unknown) => {
        inner.abort(error);
        throw error;
      }),
      verifier().catch((error: unknown) => {
        inner.abort(error);
        throw error;
      }),
    ]);
    return { source, destination: { hash: await destHasher.digest(), size: verifiedBytes } };
  } catch (error) {
    destHasher.dispose();
    throwIfAborted(signal);
    throw error instanceof KetterError ? error : fromSystemError(error, { path: to.path, operation: 'copy' });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
