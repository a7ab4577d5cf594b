import * as fs from 'node:fs';
import { finished } from 'node:stream/promises';
import type { Adapter } from '../adapter.js';
import { cancelledError, fromSystemError, KetterError } from '../errors.js';
import type { HashAlgorithm } from '../hash/algorithms.js';
import { createHasher } from '../hash/hasher.js';
import { OFF_THREAD_ALGORITHMS, OffThreadHasher } from '../hash/offthread.js';
import type { CopiedFile } from './file-copy.js';

/*
 * A large file between two local filesystems, copied and verified with a fixed set of
 * buffers. The adapter path (streams) allocates a fresh buffer per chunk on both the copy
 * and the read-back; at 1 GiB that kept the main thread's garbage collector busy for more
 * time than the hashing itself. Here the bytes go through shared memory allocated once per
 * file: read from the source into a copy slot, hashed there on the main thread, written
 * from there; read back from the destination into a verify slot and hashed there by the
 * off-thread hasher. The I/O runs on libuv's threads, the two hashes on two cores.
 *
 * A large local file going to any other destination (an SFTP host) takes the same kind of
 * path on its source side ({@link copyFromLocal}): read into fixed slots, hashed there by
 * the off-thread hasher, handed from there to the destination's write stream. Over SFTP
 * the main thread's time goes to encryption and the socket; hashing there too made it the
 * bottleneck.
 */

const MiB = 1024 * 1024;
/** Bytes per slot: past 2–4 MiB larger reads buy nothing measurable here. */
const SLOT_BYTES = 4 * MiB;
/** Copy slots: one being read while the other is hashed and written. */
const COPY_SLOTS = 2;
/** Verify slots: one being read back while the other is hashed. */
const VERIFY_SLOTS = 2;

/** Slots a local source is read into while earlier ones are hashed and written. */
const UPLOAD_SLOTS = 4;
/** From this size on a local file goes to another kind of destination through {@link copyFromLocal}. */
export const COPY_FROM_LOCAL_BYTES = UPLOAD_SLOTS * SLOT_BYTES;

/** Whether {@link copyVerifyLocal} can compute `algorithm`. */
export function canCopyVerifyLocal(algorithm: HashAlgorithm): boolean {
  return OFF_THREAD_ALGORITHMS.has(algorithm);
}

/** A local file: its absolute path for the system, its portal path for errors. */
export interface LocalFile {
  abs: string;
  path: string;
  portal: string;
}

/** Where a local copy reads and writes: absolute paths for the system, portal paths for errors. */
export interface LocalCopyEnds {
  source: LocalFile;
  destination: LocalFile & { mode?: number };
}

/**
 * Copy `source` to a new file at `destination` (never replacing one), hashing the source as
 * it is read and the destination as it is read back — only bytes the destination has
 * acknowledged, a bounded distance behind the writer. Same proof as copying, then
 * re-reading, in about the time of the copy alone.
 */
export async function copyVerifyLocal(
  ends: LocalCopyEnds,
  algorithm: HashAlgorithm,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
): Promise<{ source: CopiedFile; destination: CopiedFile }> {
  if (signal?.aborted) throw cancelledError(signal);
  const copyMemory = new SharedArrayBuffer(SLOT_BYTES * COPY_SLOTS);
  const verifyMemory = new SharedArrayBuffer(SLOT_BYTES * VERIFY_SLOTS);
  const sourceHasher = await createHasher(algorithm);
  const destHasher = new OffThreadHasher(algorithm);
  const fds: number[] = [];
  let failed: unknown = null;
  let written = 0;
  let writerDone = false;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  const check = () => {
    if (failed !== null) throw failed;
    if (signal?.aborted) throw cancelledError(signal);
  };

  const writer = async (sourceFd: number, destFd: number): Promise<number> => {
    const slot = (i: number) => Buffer.from(copyMemory, (i % COPY_SLOTS) * SLOT_BYTES, SLOT_BYTES);
    let position = 0;
    let index = 0;
    const readSource = (i: number, at: number) => read(sourceFd, slot(i), SLOT_BYTES, at).catch(failedTo('read'));
    let reading = readSource(0, 0);
    try {
      for (;;) {
        const n = await reading;
        check();
        if (n === 0) return position;
        const buffer = slot(index);
        // Start the next read before hashing and writing this chunk: the disk stays busy.
        reading = readSource(index + 1, position + n);
        reading.catch(() => undefined);
        const chunk = buffer.subarray(0, n);
        sourceHasher.update(chunk);
        await writeAll(destFd, chunk, position).catch(failedTo('copy'));
        position += n;
        written = position;
        onBytes(n);
        notify();
        index += 1;
      }
    } finally {
      writerDone = true;
      notify();
    }
  };

  const verifier = async (readFd: number): Promise<number> => {
    const pending: Array<Promise<void> | null> = new Array<Promise<void> | null>(VERIFY_SLOTS).fill(null);
    let verified = 0;
    let index = 0;
    for (;;) {
      check();
      if (verified >= written) {
        if (writerDone) break;
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const at = index % VERIFY_SLOTS;
      await pending[at];
      const n = await read(readFd, Buffer.from(verifyMemory, at * SLOT_BYTES, SLOT_BYTES), Math.min(SLOT_BYTES, written - verified), verified).catch(
        failedTo('verify'),
      );
      if (n === 0) break; // shorter than written: the size comparison reports it
      pending[at] = destHasher.updateShared(verifyMemory, at * SLOT_BYTES, n);
      verified += n;
      index += 1;
    }
    await Promise.all(pending);
    return verified;
  };

  const failedTo = (operation: Operation) => (error: unknown): never => {
    throw mapLocalError(error, ends, operation);
  };

  try {
    // A link swapped in since the scan is refused, never followed (it could lead out of the portal).
    fds.push(await open(ends.source.abs, READ_NO_FOLLOW).catch(failedTo('read')));
    fds.push(await open(ends.destination.abs, 'wx', ends.destination.mode).catch(failedTo('copy')));
    fds.push(await open(ends.destination.abs, READ_NO_FOLLOW).catch(failedTo('verify')));
    const [sourceFd, destFd, readBackFd] = fds as [number, number, number];
    const fail = (error: unknown) => {
      failed ??= error;
      notify();
      throw error;
    };
    const [size, verifiedBytes] = await Promise.all([writer(sourceFd, destFd).catch(fail), verifier(readBackFd).catch(fail)]);
    return { source: { hash: sourceHasher.digest(), size }, destination: { hash: await destHasher.digest(), size: verifiedBytes } };
  } catch (error) {
    destHasher.dispose();
    if (signal?.aborted) throw cancelledError(signal);
    throw failed ?? error;
  } finally {
    await Promise.all(fds.map((fd) => close(fd)));
  }
}

/**
 * Copy a large local file to a new file at `to` through `to.adapter`'s write stream,
 * hashing it as it is read: through {@link UPLOAD_SLOTS} shared buffers allocated once,
 * each read from the source, then hashed on the hash worker and written from there at the
 * same time, and reused once both are done. The destination is checked afterwards, as on
 * the stream path (a server-side hash, or a read-back), or a range behind the writer when
 * `onWritten` feeds a verifier. The destination's stream is handed views of the shared
 * buffers: like Node's own streams, it must neither alter them nor keep them past its
 * write callback.
 */
export async function copyFromLocal(
  source: LocalFile,
  to: { adapter: Adapter; path: string; portal: string; mode?: number },
  algorithm: HashAlgorithm,
  onBytes: (n: number) => void,
  signal?: AbortSignal,
  /** Told, in order, of each range the destination has acknowledged (its write callback). */
  onWritten?: (n: number) => void,
): Promise<CopiedFile> {
  if (signal?.aborted) throw cancelledError(signal);
  const ends = { source, destination: { path: to.path, portal: to.portal } };
  const failedTo = (operation: Operation) => (error: unknown): never => {
    throw mapLocalError(error, ends, operation);
  };
  const memory = new SharedArrayBuffer(SLOT_BYTES * UPLOAD_SLOTS);
  const hasher = new OffThreadHasher(algorithm);
  // A link swapped in since the scan is refused, never followed (it could lead out of the portal).
  const fd = await open(source.abs, READ_NO_FOLLOW).catch((error: unknown) => {
    hasher.dispose();
    return failedTo('read')(error);
  });
  const sink = to.adapter.openWrite(to.path, { highWaterMark: SLOT_BYTES, ...(signal ? { signal } : {}), ...(to.mode === undefined ? {} : { mode: to.mode }) });
  // The first failure of the destination, whenever it comes: every wait below races it. The
  // listener stays for the stream's life: writes already queued fail again after it.
  let rejectSink: (error: unknown) => void = () => undefined;
  const sinkFailed = new Promise<never>((_, reject) => (rejectSink = reject));
  sinkFailed.catch(() => undefined);
  sink.on('error', (error) => rejectSink(error));
  const busy: Array<Promise<unknown> | null> = new Array<Promise<unknown> | null>(UPLOAD_SLOTS).fill(null);
  try {
    let position = 0;
    for (let index = 0; ; index = (index + 1) % UPLOAD_SLOTS) {
      // A slot is reused only once its hash and its write are both done.
      await Promise.race([busy[index], sinkFailed]);
      if (signal?.aborted) throw cancelledError(signal);
      const offset = index * SLOT_BYTES;
      const n = await read(fd, Buffer.from(memory, offset, SLOT_BYTES), SLOT_BYTES, position).catch(failedTo('read'));
      if (n === 0) break;
      // A stream that failed since the last wait reports it on the next tick: not written to again.
      if (sink.destroyed) throw sink.errored ?? new Error('the destination closed before the file was written');
      const written = new Promise<void>((resolve, reject) =>
        sink.write(Buffer.from(memory, offset, n), (error) => {
          if (error) return reject(error);
          onWritten?.(n);
          resolve();
        }),
      );
      const done = Promise.all([hasher.updateShared(memory, offset, n), written]);
      // Awaited when the slot comes round again, or not at all once something failed.
      done.catch(() => undefined);
      busy[index] = done;
      position += n;
      onBytes(n);
    }
    await Promise.race([Promise.all(busy), sinkFailed]);
    sink.end();
    await Promise.race([finished(sink), sinkFailed]);
    return { hash: await hasher.digest(), size: position };
  } catch (error) {
    hasher.dispose();
    sink.destroy();
    // Closed before the caller removes or retries the partial file.
    await finished(sink).catch(() => undefined);
    if (signal?.aborted) throw cancelledError(signal);
    throw mapLocalError(error, ends, 'copy');
  } finally {
    await close(fd);
  }
}

type Operation = 'read' | 'copy' | 'verify';

/** A system error as the adapter path reports it: portal-relative paths, never absolute ones. */
function mapLocalError(error: unknown, ends: { source: LocalFile; destination: { abs?: string; path: string; portal: string } }, operation: Operation): KetterError {
  if (error instanceof KetterError) return error;
  const end = operation === 'read' ? ends.source : ends.destination;
  let message = (error instanceof Error ? error.message : String(error)).split(ends.source.abs).join(ends.source.path);
  if (ends.destination.abs !== undefined) message = message.split(ends.destination.abs).join(ends.destination.path);
  const errno = (error as NodeJS.ErrnoException | null)?.code;
  const cause = Object.assign(new Error(message), { code: errno, syscall: (error as NodeJS.ErrnoException | null)?.syscall });
  return fromSystemError(cause, { portal: end.portal, path: end.path, operation });
}

const READ_NO_FOLLOW = fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0);

const open = (path: string, flags: string | number, mode?: number): Promise<number> =>
  new Promise((resolve, reject) => fs.open(path, flags, mode ?? 0o666, (error, fd) => (error ? reject(error) : resolve(fd))));

const close = (fd: number): Promise<void> => new Promise((resolve) => fs.close(fd, () => resolve()));

const read = (fd: number, buffer: Buffer, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) => fs.read(fd, buffer, 0, length, position, (error, n) => (error ? reject(error) : resolve(n))));

async function writeAll(fd: number, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.byteLength) {
    done += await new Promise<number>((resolve, reject) =>
      fs.write(fd, chunk, done, chunk.byteLength - done, position + done, (error, n) => (error ? reject(error) : resolve(n))),
    );
  }
}
