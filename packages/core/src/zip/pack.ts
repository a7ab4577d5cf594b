import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { SMALL_FILE_BYTES } from '../adapter.js';
import { cancelledError, ErrorCode, fromSystemError, KetterError, throwIfAborted } from '../errors.js';
import type { HashAlgorithm } from '../hash/algorithms.js';
import { createHasher } from '../hash/hasher.js';
import type { Manifest, ManifestEntry } from '../manifest.js';
import { joinPath } from '../paths.js';
import { archivePathIn } from '../store/job-state.js';
import { chunkSizeFor } from '../engine/file-copy.js';
import { HashedFiles } from '../engine/hashed-files.js';
import type { JobRun } from '../engine/job-run.js';
import { batchAt, batchBounds, canReadOnLane, laneBatchesInFlight, readOnLane } from '../engine/local-lane.js';
import { ReadSlots } from './read-slots.js';
import { ZipSizeMismatchError, ZipWriter } from './zip-writer.js';

export interface PackedArchive {
  /** Archive path at the destination (hidden, named after the job). */
  path: string;
  bytes: number;
  hash: string;
  /** Source hash and size of every file, computed as it was read into the archive. */
  sourceHashes: HashedFiles;
  /** By manifest index, 1: the file was also found unchanged since the scan (size, mtime, type) as it was read. */
  checked: Uint8Array;
  /** By manifest index: the offset of the file's local header in the archive (its data follows the header), or -1. */
  offsets: Float64Array;
}

/** Name of a job's archive beside its staging directory; recovery finds it by this pattern. */
export function archiveNameFor(run: JobRun): string {
  return archivePathIn(run.destinationDir.path, run.id);
}

/**
 * Pack the source tree into an uncompressed (STORE) zip streamed straight to the
 * destination: no copy of the data lands anywhere else. Every source file is hashed as it
 * is read into the archive, and the archive as it is written. The writer (`zip-writer.ts`)
 * takes Zip64 form by itself past 4 GiB or 65,535 entries.
 *
 * Memory stays bounded: each entry is awaited until the destination stream has room for
 * it, so what is held is the small files read ahead, the writer's 1 MiB output blocks
 * (reused once the stream has written them), the destination stream's buffer and the
 * central directory (~100 bytes per entry).
 */
export async function packToDestination(run: JobRun, manifest: Manifest): Promise<PackedArchive> {
  const archivePath = archiveNameFor(run);
  const src = run.sourceAdapter;
  const dest = run.destAdapter;
  const algorithm = run.settings.algorithm;
  const { entries } = manifest;
  const sourceHashes = new HashedFiles(entries);
  const checked = new Uint8Array(entries.length);
  const offsets = new Float64Array(entries.length).fill(-1);
  const signal = run.signal ? { signal: run.signal } : {};

  const archiveHasher = await createHasher(algorithm);
  const output = writableSink(dest.openWrite(archivePath, { highWaterMark: dest.localPath ? LOCAL_OUTPUT_BUFFER : REMOTE_OUTPUT_BUFFER, ...signal }));
  run.tempPaths.push(archivePath);
  const localSource = src.localPath?.bind(src);
  const slots = localSource && manifest.entries.someFileSized((size) => size > SMALL_FILE_BYTES) ? new ReadSlots(READ_SLOTS, READ_SLOT_BYTES) : undefined;
  let archiveBytes = 0;
  const zip = new ZipWriter((chunk, release) => {
    archiveHasher.update(chunk);
    archiveBytes += chunk.byteLength;
    // Either a view of a read slot (a larger file's bytes) or the writer's own block.
    return output.write(chunk, slots?.handedToSink(chunk) ?? release);
  });
  // A write waiting for room must not outlive a cancellation, whatever the adapter does with the signal.
  const onAbort = () => output.destroy(cancelledError(run.signal));
  run.signal?.addEventListener('abort', onAbort, { once: true });

  /** A larger file is streamed into the archive, opened only when the writer reaches it. */
  const addStreamed = async (entry: ManifestEntry, meta: { mtimeMs: number; mode: number }) => {
    const hasher = await createHasher(algorithm);
    const path = joinPath(run.source.path, entry.path);
    const input: AsyncIterable<Uint8Array> & { destroy?: () => void } =
      slots && localSource
        ? readMapped(slots.read(localSource(path), run.signal), { portal: run.source.portal.name, path, operation: 'read' })
        : src.openRead(path, { highWaterMark: chunkSizeFor(entry.size), ...signal });
    let size = 0;
    async function* hashed(): AsyncIterable<Uint8Array> {
      for await (const chunk of input) {
        hasher.update(chunk);
        size += chunk.byteLength;
        run.emitter.progress.bytesDone += chunk.byteLength;
        yield chunk;
      }
    }
    const at = zip.bytes;
    try {
      await zip.addStream(entry.path, hashed(), { ...meta, expectedSize: entry.size });
    } catch (error) {
      input.destroy?.();
      throw error instanceof ZipSizeMismatchError ? sourceChanged(run, entry) : error;
    }
    sourceHashes.set(entry.index, hasher.digest(), size);
    offsets[entry.index] = at;
    run.emitter.progress.filesDone += 1;
  };

  const readAhead = smallFileReadAhead(run, manifest);
  try {
    for (const entry of entries) {
      throwIfAborted(run.signal);
      const meta = { mtimeMs: entry.mtimeMs, mode: entryMode(entry) };
      if (entry.kind === 'directory') {
        await zip.addDirectory(entry.path, meta);
        continue;
      }
      const prefetched = readAhead.take(entry);
      if (prefetched) {
        // A small file read and hashed ahead goes in whole: no stream per entry, and its
        // bytes are the writer's (then the destination stream's) as soon as it is added.
        const got = await prefetched;
        if (got.data.byteLength !== entry.size) throw sourceChanged(run, entry);
        const hash = got.hash ?? (await hashOf(algorithm, got.data));
        sourceHashes.set(entry.index, hash, got.data.byteLength);
        if (got.checked === true) checked[entry.index] = 1;
        offsets[entry.index] = zip.bytes;
        run.emitter.progress.bytesDone += got.data.byteLength;
        run.emitter.progress.filesDone += 1;
        await zip.addBytes(entry.path, got.data, got.release ? { ...meta, crc32: got.crc32, copy: true } : { ...meta, crc32: got.crc32 });
        got.release?.();
        continue;
      }
      await addStreamed(entry, meta);
    }
    await zip.end();
    await output.end();
  } catch (error) {
    readAhead.close(); // before waiting for the output to close: no new reads meanwhile
    await output.abort(error);
    throwIfAborted(run.signal);
    throw error instanceof KetterError ? error : fromSystemError(error, { path: archivePath, operation: 'pack' });
  } finally {
    readAhead.close();
    run.signal?.removeEventListener('abort', onAbort);
  }
  for (const i of entries.indexesOf('file')) {
    if (sourceHashes.size(i) !== entries.size(i)) throw sourceChanged(run, entries.at(i));
  }
  return { path: archivePath, bytes: archiveBytes, hash: archiveHasher.digest(), sourceHashes, checked, offsets };
}

function sourceChanged(run: JobRun, entry: ManifestEntry): KetterError {
  const path = joinPath(run.source.path, entry.path);
  return new KetterError(ErrorCode.SOURCE_CHANGED, `source changed while packing: ${run.source.portal.describe(path)}`, {
    portal: run.source.portal.name,
    path,
  });
}

/**
 * The destination stream as the writer's sink: a write that fills the stream's buffer
 * returns a promise of room (`drain`), so the packer waits instead of queuing; a stream
 * failure, whenever it happens, is what the next write or the end throws. The listener is
 * there from the start: an unheard 'error' would crash the process.
 */
function writableSink(out: Writable): {
  write(chunk: Buffer, written?: () => void): void | Promise<void>;
  end(): Promise<void>;
  abort(error: unknown): Promise<void>;
  destroy(error: Error): void;
} {
  let failure: Error | null = null;
  out.on('error', (error) => {
    failure ??= error;
  });
  const closedEarly = () => failure ?? new Error('the archive output closed before the archive was complete');
  return {
    write(chunk, written) {
      if (failure || out.destroyed) throw closedEarly();
      if (written ? out.write(chunk, () => written()) : out.write(chunk)) return;
      return new Promise<void>((resolve, reject) => {
        const settle = (error?: Error) => {
          out.off('drain', onDrain);
          out.off('close', onClose);
          out.off('error', onClose);
          if (error) reject(error);
          else resolve();
        };
        const onDrain = () => settle();
        const onClose = () => settle(closedEarly());
        out.on('drain', onDrain);
        out.on('close', onClose);
        out.on('error', onClose);
      });
    },
    async end() {
      if (failure) throw failure;
      out.end();
      await finished(out);
    },
    async abort(error) {
      if (!out.destroyed) out.destroy(error instanceof Error ? error : new Error(String(error)));
      // Closed before the caller removes the partial archive.
      await finished(out).catch(() => undefined);
    },
    destroy(error) {
      if (!out.destroyed) out.destroy(error);
    },
  };
}

/**
 * The destination stream's buffer. A local disk takes each block as it comes: more queued
 * bought nothing, and a 20,000-file archive peaked ~10 MiB higher with 8 MiB queued. A remote host
 * keeps several writes in flight: its stream gets room for them.
 */
const LOCAL_OUTPUT_BUFFER = 2 * 1024 * 1024;
const REMOTE_OUTPUT_BUFFER = 8 * 1024 * 1024;

/** Buffers larger local files are read through into the archive (see {@link ReadSlots}). */
const READ_SLOTS = 4;
const READ_SLOT_BYTES = 4 * 1024 * 1024;


/** A local read's system errors as the adapter would report them: on the source file, by portal. */
async function* readMapped(pieces: AsyncIterable<Buffer>, context: { portal: string; path: string; operation: 'read' }): AsyncGenerator<Buffer> {
  try {
    yield* pieces;
  } catch (error) {
    throw fromSystemError(error, context);
  }
}

/** Small files read ahead of the archive writer through the adapter (bounded by count and bytes). */
const READ_AHEAD_FILES = 32;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/** A small file's bytes; from the local lane also its source hash, and checked against its scan. */
interface Prefetched {
  data: Uint8Array;
  hash?: string;
  /** CRC-32 of `data`, computed by the worker that read it (the writer computes it otherwise). */
  crc32?: number;
  checked?: boolean;
  /** Present when `data` lives in memory lent for reads: call once done with it, and not before. */
  release?: () => void;
}

/**
 * Memory lent to the lane for a batch's bytes comes in multiples of this size, so a buffer
 * fits the next batches of similar files.
 */
const LEND_STEP = 1024 * 1024;

/**
 * The writer takes one entry at a time; reading each small file only then makes the packer
 * wait on one source round trip per file. This keeps the next small files' reads in
 * flight, in archive order: on the local lane's worker threads for a local source (batches
 * of files read and hashed with synchronous calls — per-file asynchronous reads cost more
 * main-thread time than the I/O), otherwise through the adapter's `readFile` fast path.
 * `close()` stops reads not yet started.
 */
function smallFileReadAhead(run: JobRun, manifest: Manifest): { take(entry: ManifestEntry): Promise<Prefetched> | null; close(): void } {
  const src = run.sourceAdapter;
  const onLane = canReadOnLane(run);
  const readFile = src.readFile?.bind(src);
  const { entries } = manifest;
  const small = onLane || readFile ? entries.indexesOf('file').filter((i) => entries.size(i) <= SMALL_FILE_BYTES) : new Uint32Array(0);
  // Without the lane, one file per batch.
  const bounds = onLane ? batchBounds(small, (i) => entries.size(i)) : Uint32Array.from({ length: small.length + 1 }, (_, k) => k);
  const nBatches = bounds.length - 1;
  // Where each small file is, by manifest index: its batch (-1: not read ahead) and its place in it.
  const batchOf = new Int32Array(entries.length).fill(-1);
  const placeOf = new Uint16Array(entries.length);
  for (let b = 0; b < nBatches; b++) {
    const batch = batchAt(small, bounds, b);
    for (let k = 0; k < batch.length; k++) {
      batchOf[batch[k] as number] = b;
      placeOf[batch[k] as number] = k;
    }
  }
  const maxInFlight = onLane ? laneBatchesInFlight(run) : READ_AHEAD_FILES;
  const stop = new SharedArrayBuffer(4);
  const inFlight = new Map<number, { bytes: number; files: Array<Promise<Prefetched>> }>();
  let next = 0;
  let bytes = 0;

  // Buffers back from the lane whose bytes the writer has copied: lent again to later
  // batches, so reading ahead allocates a few buffers for the whole job, not one per file.
  const spare: ArrayBuffer[] = [];
  const lend = (size: number): ArrayBuffer => {
    const fits = spare.findIndex((b) => b.byteLength >= size);
    if (fits >= 0) return spare.splice(fits, 1)[0] as ArrayBuffer;
    return new ArrayBuffer(Math.ceil(Math.max(size, 1) / LEND_STEP) * LEND_STEP);
  };
  const giveBack = (buffer: ArrayBuffer) => {
    if (spare.length < maxInFlight) spare.push(buffer);
  };

  const readBatch = (batch: readonly ManifestEntry[], size: number): Array<Promise<Prefetched>> => {
    const signal = run.signal ? { signal: run.signal } : {};
    const viaAdapter = (e: ManifestEntry) => (readFile as NonNullable<typeof readFile>)(joinPath(run.source.path, e.path), { ...signal, sizeHint: e.size }).then((data) => ({ data }));
    if (!onLane) return batch.map(viaAdapter);
    const answers = readOnLane(run, batch, stop, lend(size));
    // The lent buffer is free again once every file of the batch is released.
    let unreleased = batch.length;
    const release = () => {
      if (--unreleased === 0) void answers.then(({ into }) => into && giveBack(into));
    };
    return batch.map((e, i) =>
      answers.then(({ files }) => {
        const got = files[i];
        if (got === 'retry') {
          if (!readFile) throw new KetterError(ErrorCode.IO_ERROR, `read failed: ${run.source.portal.describe(joinPath(run.source.path, e.path))}`);
          return viaAdapter(e).then((own) => ({ ...own, release })); // a transient fault: once more through the adapter
        }
        if (got instanceof KetterError || got === undefined) throw got ?? new Error('local lane lost a file');
        return { ...got, checked: true, release };
      }),
    );
  };
  const pump = (from: number) => {
    next = Math.max(next, from);
    while (next < nBatches && inFlight.size < maxInFlight) {
      const batch = [...entries.select(batchAt(small, bounds, next))];
      const size = batch.reduce((n, e) => n + e.size, 0);
      if (inFlight.size > 0 && bytes + size > READ_AHEAD_BYTES) break;
      const files = readBatch(batch, size);
      for (const file of files) file.catch(() => undefined); // reported when taken
      inFlight.set(next, { bytes: size, files });
      bytes += size;
      next += 1;
    }
  };
  return {
    take(entry) {
      const batch = batchOf[entry.index] as number;
      if (batch < 0) return null;
      const at = placeOf[entry.index] as number;
      if (!inFlight.has(batch)) pump(batch);
      const got = inFlight.get(batch);
      if (!got) return null;
      // The batch's last file taken: its memory is the packer's now, read the next ones.
      if (at === got.files.length - 1) {
        inFlight.delete(batch);
        bytes -= got.bytes;
        pump(batch + 1);
      }
      return got.files[at] ?? null;
    },
    close() {
      Atomics.store(new Int32Array(stop), 0, 1);
    },
  };
}

/** Zip external attributes hold a full st_mode: the type bits with the permissions. */
function entryMode(entry: ManifestEntry): number {
  return (entry.kind === 'directory' ? 0o040000 : 0o100000) | (entry.mode & 0o7777);
}

async function hashOf(algorithm: HashAlgorithm, data: Uint8Array): Promise<string> {
  const hasher = await createHasher(algorithm);
  hasher.update(data);
  return hasher.digest();
}
