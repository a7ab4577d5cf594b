import { PassThrough, Readable, Transform } from 'node:stream';
import { SMALL_FILE_BYTES } from '../adapter.js';
import { pipeline } from 'node:stream/promises';
import { ZipFile } from 'yazl';
import { fromSystemError, KetterError, throwIfAborted } from '../errors.js';
import { createHasher, type Hasher } from '../hash/hasher.js';
import type { Manifest, ManifestEntry } from '../manifest.js';
import { joinPath } from '../paths.js';
import { chunkSizeFor } from '../engine/file-copy.js';
import type { JobRun } from '../engine/job-run.js';

export interface PackedArchive {
  /** Archive path at the destination (hidden, named after the job). */
  path: string;
  bytes: number;
  hash: string;
  /** Source hash and size of every file, computed as it was read into the archive. */
  sourceHashes: Map<string, { hash: string; size: number }>;
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
  const sourceHashes = new Map<string, { hash: string; size: number }>();
  const zip = new ZipFile();
  let packError: unknown = null;
  // yazl listens for errors on neither the streams it is given nor reports them on its
  // output: a failing source read ends the archive output here, and the streams handed to
  // yazl never emit 'error' themselves (an unheard 'error' would crash the process).
  const failPack = (error: unknown) => {
    packError ??= error;
    (zip.outputStream as unknown as PassThrough).destroy(error instanceof Error ? error : new Error(String(error)));
  };

  const readAhead = smallFileReadAhead(run, manifest);
  for (const entry of manifest.entries) {
    const options = { mtime: new Date(entry.mtimeMs), mode: entryMode(entry) };
    if (entry.kind === 'directory') {
      zip.addEmptyDirectory(entry.path, options);
      continue;
    }
    const sourcePath = joinPath(run.source.path, entry.path);
    zip.addReadStreamLazy(entry.path, { ...options, compress: false, size: entry.size }, (cb) => {
      // Opened only when yazl reaches this entry: one source file open at a time.
      if (run.signal?.aborted) {
        failPack(new KetterError('CANCELLED', 'cancelled'));
        return cb(null, new PassThrough());
      }
      const open = async (): Promise<Readable> => {
        const hasher = await createHasher(algorithm);
        const signalOption = run.signal ? { signal: run.signal } : {};
        const prefetched = readAhead.take(entry);
        const input = prefetched
          ? Readable.from([asBuffer(await prefetched)])
          : src.openRead(sourcePath, { highWaterMark: chunkSizeFor(entry.size), ...signalOption });
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
  }
  zip.on('error', failPack);
  zip.end();

  const archiveHasher = await createHasher(algorithm);
  let archiveBytes = 0;
  const sink = dest.openWrite(archivePath, { highWaterMark: 8 * 1024 * 1024, ...(run.signal ? { signal: run.signal } : {}) });
  run.tempPaths.push(archivePath);
  try {
    await pipeline(
      zip.outputStream,
      hashingTransform(archiveHasher, 8 * 1024 * 1024, (n) => (archiveBytes += n), () => undefined),
      sink,
      run.signal ? { signal: run.signal } : {},
    );
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

/** Small files read ahead of the archive writer (bounded by count and bytes). */
const READ_AHEAD_FILES = 32;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/**
 * yazl asks for one entry's stream at a time; reading each small file only then makes the
 * packer wait on one source round trip per file. This keeps the next small files' reads in
 * flight (through the adapter's `readFile` fast path), in archive order.
 */
function smallFileReadAhead(run: JobRun, manifest: Manifest): { take(entry: ManifestEntry): Promise<Uint8Array> | null } {
  const src = run.sourceAdapter;
  const readFile = src.readFile?.bind(src);
  const small = readFile ? manifest.entries.filter((e) => e.kind === 'file' && e.size <= SMALL_FILE_BYTES) : [];
  const index = new Map(small.map((e, i) => [e.path, i] as const));
  const inFlight = new Map<number, { bytes: number; data: Promise<Uint8Array> }>();
  let next = 0;
  let bytes = 0;
  const pump = (from: number) => {
    next = Math.max(next, from);
    while (next < small.length && inFlight.size < READ_AHEAD_FILES && (inFlight.size === 0 || bytes + (small[next] as ManifestEntry).size <= READ_AHEAD_BYTES)) {
      const entry = small[next] as ManifestEntry;
      const data = (readFile as NonNullable<typeof readFile>)(joinPath(run.source.path, entry.path), run.signal ? { signal: run.signal } : {});
      data.catch(() => undefined); // reported when taken
      inFlight.set(next, { bytes: entry.size, data });
      bytes += entry.size;
      next += 1;
    }
  };
  return {
    take(entry) {
      const i = index.get(entry.path);
      if (i === undefined) return null;
      if (!inFlight.has(i)) pump(i);
      const got = inFlight.get(i);
      if (!got) return null;
      inFlight.delete(i);
      bytes -= got.bytes;
      pump(i + 1);
      return got.data;
    },
  };
}

/** Zip external attributes keep the type bits; yazl wants a full st_mode. */
function entryMode(entry: ManifestEntry): number {
  return (entry.kind === 'directory' ? 0o040000 : 0o100000) | (entry.mode & 0o7777);
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
