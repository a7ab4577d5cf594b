import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as Yauzl from 'yauzl';
import { SMALL_FILE_BYTES, type Adapter } from '../adapter.js';
import { ErrorCode, fromSystemError, KetterError, throwIfAborted } from '../errors.js';
import { joinPath, normalizeRelative } from '../paths.js';
import { forEachLimit } from '../engine/pool.js';

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;

export interface ExtractOptions {
  /**
   * The exact set of entries the archive must hold (path → kind). Anything else, or
   * anything missing, is refused: Ketter extracts only archives it packed itself.
   */
  expected?: ReadonlyMap<string, 'file' | 'directory'>;
  concurrency?: number;
  signal?: AbortSignal;
  /** Called as each file is written, with its size. */
  onFile?: (path: string, size: number) => void;
}

export interface ExtractedEntry {
  path: string;
  kind: 'file' | 'directory';
  size: number;
}

/** Block size of the archive read cache: many small entries come out of one read. */
const BLOCK = 4 * 1024 * 1024;
/** Blocks kept at once; entries are extracted roughly in archive order, so few are needed. */
const CACHED_BLOCKS = 4;

/**
 * Reads a zip held by an adapter through ranged reads. Small ranges (headers, small
 * entries) are served from a cache of large blocks, so a session of thousands of small
 * files costs a few reads rather than two per entry; large entries stream directly.
 * Made once yauzl is loaded (with the first extraction, not with the package).
 */
function rangeReaderOf(yauzl: (typeof Yauzl)['default']) {
  return class AdapterRangeReader extends yauzl.RandomAccessReader {
    readonly #blocks = new Map<number, Promise<Buffer>>();

    constructor(
      private readonly adapter: Adapter,
      private readonly path: string,
      private readonly size: number,
      private readonly signal?: AbortSignal,
    ) {
      super();
    }

    override _readStreamForRange(start: number, end: number): Readable {
      if (end <= start) return Readable.from([]);
      if (end - start > BLOCK) {
        return this.adapter.openRead(this.path, { start, end: end - 1, ...(this.signal ? { signal: this.signal } : {}) }) as Readable;
      }
      const read = async (): Promise<Buffer> => {
        const parts: Buffer[] = [];
        for (let index = Math.floor(start / BLOCK); index * BLOCK < end; index++) {
          const block = await this.#block(index);
          const from = Math.max(start - index * BLOCK, 0);
          const to = Math.min(end - index * BLOCK, block.length);
          parts.push(block.subarray(from, to));
        }
        return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      };
      return Readable.from((async function* () {
        yield await read();
      })());
    }

    #block(index: number): Promise<Buffer> {
      let block = this.#blocks.get(index);
      if (block) {
        // Refresh its place in the LRU order.
        this.#blocks.delete(index);
        this.#blocks.set(index, block);
        return block;
      }
      block = this.#load(index);
      this.#blocks.set(index, block);
      block.catch(() => this.#blocks.delete(index));
      while (this.#blocks.size > CACHED_BLOCKS) this.#blocks.delete(this.#blocks.keys().next().value as number);
      return block;
    }

    async #load(index: number): Promise<Buffer> {
      const start = index * BLOCK;
      const end = Math.min(this.size, start + BLOCK) - 1;
      const chunks: Buffer[] = [];
      for await (const chunk of this.adapter.openRead(this.path, { start, end, highWaterMark: BLOCK, ...(this.signal ? { signal: this.signal } : {}) })) {
        chunks.push(chunk as Buffer);
      }
      return Buffer.concat(chunks);
    }
  };
}

function unsafe(name: string, why: string): KetterError {
  return new KetterError(ErrorCode.UNSAFE_ARCHIVE_ENTRY, `unsafe archive entry '${name}': ${why}`, { path: name });
}

/**
 * Extract a zip held by `adapter` into the existing directory `into` on the same adapter.
 * Every entry is checked before anything is written: absolute names, `..`, backslashes,
 * symlinks, duplicates, encrypted entries and (with `expected`) any name not expected are
 * refused with `UNSAFE_ARCHIVE_ENTRY`, so nothing can land outside `into`.
 */
export async function extractArchive(
  adapter: Adapter,
  archivePath: string,
  archiveBytes: number,
  into: string,
  options: ExtractOptions = {},
): Promise<ExtractedEntry[]> {
  const { signal } = options;
  throwIfAborted(signal);
  const yauzl = (await import('yauzl')).default;
  const AdapterRangeReader = rangeReaderOf(yauzl);
  const reader = new AdapterRangeReader(adapter, archivePath, archiveBytes, signal);
  const zip = await new Promise<Yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromRandomAccessReader(
      reader,
      archiveBytes,
      { lazyEntries: true, autoClose: false, decodeStrings: true, validateEntrySizes: true, strictFileNames: true },
      (error, zipfile) => (error ? reject(mapZipError(error, archivePath)) : resolve(zipfile)),
    ),
  );
  try {
    const entries = await readEntries(zip, archivePath);
    const plan = checkEntries(entries, options.expected);
    for (const dir of plan.filter((p) => p.kind === 'directory')) {
      throwIfAborted(signal);
      await adapter.mkdir(joinPath(into, dir.path));
    }
    await forEachLimit(
      plan.filter((p) => p.kind === 'file'),
      options.concurrency ?? 8,
      async (item) => {
        throwIfAborted(signal);
        const input = await new Promise<Readable>((resolve, reject) =>
          zip.openReadStream(item.entry, (error, stream) => (error ? reject(mapZipError(error, archivePath)) : resolve(stream))),
        );
        const target = joinPath(into, item.path);
        if (item.size <= SMALL_FILE_BYTES && adapter.writeFile) {
          const chunks: Buffer[] = [];
          for await (const chunk of input) chunks.push(chunk as Buffer);
          // The permission bits the packer recorded, never more (no setuid from an archive):
          // the file is created with them instead of fixed afterwards, a round trip less remotely.
          const mode = (item.entry.externalFileAttributes >>> 16) & 0o777;
          await adapter.writeFile(target, Buffer.concat(chunks), { ...(mode === 0 ? {} : { mode }), ...(signal ? { signal } : {}) });
          options.onFile?.(item.path, item.size);
          return;
        }
        const output = adapter.openWrite(target, { highWaterMark: 8 * 1024 * 1024, ...(signal ? { signal } : {}) });
        try {
          await pipeline(input, output, signal ? { signal } : {});
        } catch (error) {
          throwIfAborted(signal);
          throw error instanceof KetterError ? error : mapZipError(error, target);
        }
        options.onFile?.(item.path, item.size);
      },
    );
    return plan.map(({ path, kind, size }) => ({ path, kind, size }));
  } finally {
    zip.close();
  }
}

interface PlannedEntry extends ExtractedEntry {
  entry: Yauzl.Entry;
}

function readEntries(zip: Yauzl.ZipFile, archivePath: string): Promise<Yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: Yauzl.Entry[] = [];
    zip.on('entry', (entry: Yauzl.Entry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.once('end', () => resolve(entries));
    zip.once('error', (error: unknown) => reject(mapZipError(error, archivePath)));
    zip.readEntry();
  });
}

function checkEntries(entries: readonly Yauzl.Entry[], expected?: ReadonlyMap<string, 'file' | 'directory'>): PlannedEntry[] {
  const seen = new Set<string>();
  const out: PlannedEntry[] = [];
  for (const entry of entries) {
    const raw = entry.fileName;
    const isDirName = raw.endsWith('/');
    let path: string;
    try {
      path = normalizeRelative(isDirName ? raw.slice(0, -1) : raw);
    } catch {
      throw unsafe(raw, 'absolute path, .. segment or backslash');
    }
    if (path === '') throw unsafe(raw, 'empty name');
    const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
    if (type === S_IFLNK) throw unsafe(raw, 'symbolic link');
    if ((entry.generalPurposeBitFlag & 0x1) !== 0) throw unsafe(raw, 'encrypted entry');
    const kind: 'file' | 'directory' = isDirName || type === S_IFDIR ? 'directory' : 'file';
    if (seen.has(path)) throw unsafe(raw, 'duplicate entry');
    seen.add(path);
    if (expected && expected.get(path) !== kind) throw unsafe(raw, 'not part of the packed source');
    out.push({ path, kind, size: kind === 'file' ? entry.uncompressedSize : 0, entry });
  }
  if (expected && seen.size !== expected.size) {
    const missing = [...expected.keys()].find((p) => !seen.has(p));
    throw new KetterError(ErrorCode.CHECKSUM_MISMATCH, `archive is missing entry '${missing}'`, { path: missing });
  }
  out.sort((a, b) => (a.path < b.path ? -1 : 1));
  return out;
}

function mapZipError(error: unknown, path: string): KetterError {
  if (error instanceof KetterError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/absolute path|invalid relative path|invalid characters|backslash/i.test(message)) {
    return new KetterError(ErrorCode.UNSAFE_ARCHIVE_ENTRY, `unsafe archive entry: ${message}`, { path, cause: error });
  }
  if (error && typeof error === 'object' && 'code' in error) return fromSystemError(error, { path, operation: 'extract' });
  return new KetterError(ErrorCode.CHECKSUM_MISMATCH, `archive is not a valid zip: ${message}`, { path, cause: error });
}
