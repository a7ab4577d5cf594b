import { PassThrough, Readable, Transform } from 'node:stream';
import { SMALL_FILE_BYTES } from '../adapter.js';
import { pipeline } from 'node:stream/promises';
import { ErrorCode, fromSystemError, KetterError, throwIfAborted } from '../errors.js';
import type { HashAlgorithm } from '../hash/algorithms.js';
import { createHasher, type Hasher } from '../hash/hasher.js';
import type { Manifest, ManifestEntry } from '../manifest.js';
import { joinPath } from '../paths.js';
import { chunkSizeFor } from '../engine/file-copy.js';
import type { JobRun } from '../engine/job-run.js';
import { canReadOnLane, laneBatchesInFlight, makeBatches, readOnLane } from '../engine/local-lane.js';

export interface PackedArchive {
  /** Archive path at the destination (hidden, named after the job). */
  path: string;
  bytes: number;
  hash: string;
  /**
   * Source hash and size of every file, computed as it was read into the archive;
   * `checked`: the file was also found unchanged since the scan (size, mtime, type) as it was read.
   */
  sourceHashes: Map<string, { hash: string; size: number; checked?: boolean }>;
}

/** Name of a job's archive beside its staging directory; recovery finds it by this pattern. */
export function archiveNameFor(run: JobRun): string {
  return joinPath(run.destinationDir.path, `.ketter-${run.id}.archive.zip`);
}

/**
 * Pack the source tree into an uncompressed (STORE) zip streamed straight to the
 * destination: no copy of the data lands anywhere else. Every source file is hashed as it
 * is read into the archive, and the archive as it is written. yazl switches to Zip64 by
 * itself past 4 GiB or 65,535 entries.
 */
export async function packToDestination(run: JobRun, manifest: Manifest): Promise<PackedArchive> {
  const archivePath = archiveNameFor(run);
  const src = run.sourceAdapter;
  const dest = run.destAdapter;
  const algorithm = run.settings.algorithm;
  const sourceHashes: PackedArchive['sourceHashes'] = new Map();
  // Loaded with the first archive: DIRECT-only processes never pay for the zip libraries.
  const { ZipFile } = (await import('yazl')).default;
  const zip = new ZipFile();
  let packError: unknown = null;
  let archiveBytes = 0;
  // Small files' bytes read and waiting for their entries: with the archive's bytes
  // written so far, they bound the memory held by the packer.
  let bufferedBytes = 0;
  let drained: (() => void) | null = null;
  // yazl listens for errors on neither the streams it is given nor reports them on its
  // output: a failing source read ends the archive output here, and the streams handed to
  // yazl never emit 'error' themselves (an unheard 'error' would crash the process).
  const failPack = (error: unknown) => {
    packError ??= error;
    (zip.outputStream as unknown as PassThrough).destroy(error instanceof Error ? error : new Error(String(error)));
    drained?.();
  };

  /** A larger file is streamed into the archive, opened only when yazl reaches it. */
  const addStreamed = (entry: ManifestEntry, options: { mtime: Date; mode: number }) => {
    const sourcePath = joinPath(run.source.path, entry.path);
    zip.addReadStreamLazy(entry.path, { ...options, compress: false, size: entry.size }, (cb) => {
      if (run.signal?.aborted) {
        failPack(new KetterError('CANCELLED', 'cancelled'));
        return cb(null, new PassThrough());
      }
      const open = async (): Promise<Readable> => {
        const hasher = await createHasher(algorithm);
        const input = src.openRead(sourcePath, { highWaterMark: chunkSizeFor(entry.size), ...(run.signal ? { signal: run.signal } : {}) });
        const hashing = hashingTransform(hasher, chunkSizeFor(entry.size), (n) => (run.emitter.progress.bytesDone += n), (size) => {
          sourceHashes.set(entry.path, { hash: hasher.digest(), size });
          run.emitter.progress.filesDone += 1;
        });
        input.once('error', (error) => {
          failPack(error);
          hashing.destroy();
        });
        hashing.on('error', failPack);
        return input.pipe(hashing);
      };
      open().then(
        (stream) => cb(null, stream),
        (error: unknown) => {
          failPack(error);
          cb(null, new PassThrough());
        },
      );
    });
  };

  const archiveHasher = await createHasher(algorithm);
  const onArchiveBytes = (n: number) => {
    archiveBytes += n;
    if (drained && archiveBytes + BUFFERED_BYTES_LIMIT >= bufferedBytes) {
      drained();
      drained = null;
    }
  };
  const sink = dest.openWrite(archivePath, { highWaterMark: 8 * 1024 * 1024, ...(run.signal ? { signal: run.signal } : {}) });
  run.tempPaths.push(archivePath);
  const writing = pipeline(
    zip.outputStream,
    hashingTransform(archiveHasher, 8 * 1024 * 1024, onArchiveBytes, () => undefined),
    sink,
    run.signal ? { signal: run.signal } : {},
  );
  writing.catch(() => undefined); // awaited below

  const readAhead = smallFileReadAhead(run, manifest);
  const waiting = new Map<string, Buffer>();
  try {
    for (const entry of manifest.entries) {
      if (packError) break;
      throwIfAborted(run.signal);
      const options = { mtime: new Date(entry.mtimeMs), mode: entryMode(entry) };
      if (entry.kind === 'directory') {
        zip.addEmptyDirectory(entry.path, options);
        continue;
      }
      const prefetched = readAhead.take(entry);
      if (prefetched) {
        // A small file is read and hashed ahead, and goes in as one chunk: a hashing stream
        // pipeline per 1 KiB entry cost more than the bytes. Not through addBuffer: yazl
        // keeps what an entry's pump holds until the whole archive is done, which would
        // keep every small file of the job in memory. The bytes wait here instead, and are
        // handed over (and forgotten) when yazl reaches the entry.
        const got = await prefetched;
        const data = asBuffer(got.data);
        sourceHashes.set(entry.path, { hash: got.hash ?? (await hashOf(algorithm, data)), size: data.byteLength, checked: got.checked === true });
        run.emitter.progress.bytesDone += data.byteLength;
        run.emitter.progress.filesDone += 1;
        waiting.set(entry.path, data);
        zip.addReadStreamLazy(entry.path, { ...options, compress: false, size: data.byteLength }, (cb) => {
          const bytes = waiting.get(entry.path);
          waiting.delete(entry.path);
          cb(null, oneChunk(bytes ?? Buffer.alloc(0)));
        });
        bufferedBytes += data.byteLength;
        if (bufferedBytes - archiveBytes > BUFFERED_BYTES_LIMIT) await new Promise<void>((resolve) => (drained = resolve));
        continue;
      }
      addStreamed(entry, options);
    }
  } catch (error) {
    failPack(error);
  } finally {
    readAhead.close();
  }
  zip.on('error', failPack);
  zip.end();

  try {
    await writing;
  } catch (error) {
    throwIfAborted(run.signal);
    const cause = packError ?? error;
    throw cause instanceof KetterError ? cause : fromSystemError(cause, { path: archivePath, operation: 'pack' });
  }
  if (packError) throw packError;
  for (const entry of manifest.entries) {
    if (entry.kind !== 'file') continue;
    const got = sourceHashes.get(entry.path);
    if (!got || got.size !== entry.size) {
      throw new KetterError('SOURCE_CHANGED', `source changed while packing: ${run.source.portal.describe(joinPath(run.source.path, entry.path))}`, {
        portal: run.source.portal.name,
        path: joinPath(run.source.path, entry.path),
      });
    }
  }
  return { path: archivePath, bytes: archiveBytes, hash: archiveHasher.digest(), sourceHashes };
}

/** Small files' bytes read ahead and waiting for yazl to reach their entries. */
const BUFFERED_BYTES_LIMIT = 16 * 1024 * 1024;

/** Small files read ahead of the archive writer through the adapter (bounded by count and bytes). */
const READ_AHEAD_FILES = 32;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/** A small file's bytes; from the local lane also its source hash, and checked against its scan. */
interface Prefetched {
  data: Uint8Array;
  hash?: string;
  checked?: boolean;
}

/**
 * yazl asks for one entry at a time; reading each small file only then makes the packer
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
  const small = onLane || readFile ? manifest.entries.filter((e) => e.kind === 'file' && e.size <= SMALL_FILE_BYTES) : [];
  const batches = onLane ? makeBatches(small) : small.map((e) => [e]);
  const where = new Map<string, { batch: number; at: number }>();
  batches.forEach((batch, b) => batch.forEach((e, at) => where.set(e.path, { batch: b, at })));
  const maxInFlight = onLane ? laneBatchesInFlight() : READ_AHEAD_FILES;
  const stop = new SharedArrayBuffer(4);
  const inFlight = new Map<number, { bytes: number; files: Array<Promise<Prefetched>> }>();
  let next = 0;
  let bytes = 0;

  const readBatch = (batch: readonly ManifestEntry[]): Array<Promise<Prefetched>> => {
    const signal = run.signal ? { signal: run.signal } : {};
    const viaAdapter = (e: ManifestEntry) => (readFile as NonNullable<typeof readFile>)(joinPath(run.source.path, e.path), signal).then((data) => ({ data }));
    if (!onLane) return batch.map(viaAdapter);
    const answers = readOnLane(run, batch, stop);
    return batch.map((e, i) =>
      answers.then((all) => {
        const got = all[i];
        if (got === 'retry') {
          if (!readFile) throw new KetterError(ErrorCode.IO_ERROR, `read failed: ${run.source.portal.describe(joinPath(run.source.path, e.path))}`);
          return viaAdapter(e); // a transient fault: once more through the adapter
        }
        if (got instanceof KetterError || got === undefined) throw got ?? new Error('local lane lost a file');
        return { ...got, checked: true };
      }),
    );
  };
  const pump = (from: number) => {
    next = Math.max(next, from);
    while (next < batches.length && inFlight.size < maxInFlight) {
      const batch = batches[next] as ManifestEntry[];
      const size = batch.reduce((n, e) => n + e.size, 0);
      if (inFlight.size > 0 && bytes + size > READ_AHEAD_BYTES) break;
      const files = readBatch(batch);
      for (const file of files) file.catch(() => undefined); // reported when taken
      inFlight.set(next, { bytes: size, files });
      bytes += size;
      next += 1;
    }
  };
  return {
    take(entry) {
      const place = where.get(entry.path);
      if (place === undefined) return null;
      if (!inFlight.has(place.batch)) pump(place.batch);
      const got = inFlight.get(place.batch);
      if (!got) return null;
      // The batch's last file taken: its memory is the packer's now, read the next ones.
      if (place.at === got.files.length - 1) {
        inFlight.delete(place.batch);
        bytes -= got.bytes;
        pump(place.batch + 1);
      }
      return got.files[place.at] ?? null;
    },
    close() {
      Atomics.store(new Int32Array(stop), 0, 1);
    },
  };
}

/** Zip external attributes keep the type bits; yazl wants a full st_mode. */
function entryMode(entry: ManifestEntry): number {
  return (entry.kind === 'directory' ? 0o040000 : 0o100000) | (entry.mode & 0o7777);
}

/** A stream of one chunk, cheaper than `Readable.from` for the thousands of small entries. */
function oneChunk(bytes: Buffer): Readable {
  return new Readable({
    read() {
      this.push(bytes);
      this.push(null);
    },
  });
}

async function hashOf(algorithm: HashAlgorithm, data: Uint8Array): Promise<string> {
  const hasher = await createHasher(algorithm);
  hasher.update(data);
  return hasher.digest();
}

/** A view of the bytes without copying them. */
function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function hashingTransform(hasher: Hasher, highWaterMark: number, onBytes: (n: number) => void, onEnd: (size: number) => void): Transform {
  let size = 0;
  return new Transform({
    highWaterMark,
    transform(chunk: Buffer, _enc, done) {
      hasher.update(chunk);
      size += chunk.byteLength;
      onBytes(chunk.byteLength);
      done(null, chunk);
    },
    flush(done) {
      onEnd(size);
      done();
    },
  });
}
