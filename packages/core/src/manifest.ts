import { ErrorCode, KetterError } from './errors.js';
import type { Endpoint } from './events.js';

/** One file or directory of a source tree. `path` is relative to the source root. */
export interface ManifestEntry {
  /** Position in {@link Manifest.entries} (path order): the key engines keep per-file state under. */
  readonly index: number;
  readonly path: string;
  readonly kind: 'file' | 'directory';
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
}

/** What a scan records of one entry; its place in the manifest is decided when the scan ends. */
export type ManifestRow = Omit<ManifestEntry, 'index'>;

/**
 * What `scan()` found at a source: the input of `plan()` and the list of work for the
 * engines. For a file source, `entries` holds that file alone with `path: ''`.
 */
export interface Manifest {
  readonly source: Endpoint;
  readonly rootKind: 'file' | 'directory';
  /** Basename of the source: the name it gets under the destination. */
  readonly name: string;
  /** Modification time and mode of the source root itself (kept on the destination root). */
  readonly root: { readonly mtimeMs: number; readonly mode: number };
  readonly entries: ManifestEntries;
  readonly nFiles: number;
  readonly totalBytes: number;
  /** Symlinks left out under the `skip` symlink policy, by path. */
  readonly skippedSymlinks: readonly string[];
}

const FILE = 0;
const DIRECTORY = 1;

/**
 * The entries of a manifest in path order (parents before children), kept in columns: every
 * path in one UTF-8 buffer, sizes, mtimes, modes and kinds in typed arrays. A tree of
 * 200,000 files costs ~60 bytes per entry outside the JavaScript heap, where an array of
 * entry objects cost ~200 bytes each on it — and the garbage collector's headroom on top.
 * An entry becomes an object only when asked for ({@link at}, iteration), for the time it
 * is worked on; engines keep their per-file state in columns keyed by {@link ManifestEntry.index}.
 */
export class ManifestEntries implements Iterable<ManifestEntry> {
  readonly #names: Buffer;
  /** End offset of each path in `#names`; a path starts where the previous one ends. */
  readonly #ends: Uint32Array;
  readonly #kinds: Uint8Array;
  readonly #sizes: Float64Array;
  readonly #mtimes: Float64Array;
  readonly #modes: Uint32Array;
  #lookup: Int32Array | null = null;

  private constructor(names: Buffer, ends: Uint32Array, kinds: Uint8Array, sizes: Float64Array, mtimes: Float64Array, modes: Uint32Array) {
    this.#names = names;
    this.#ends = ends;
    this.#kinds = kinds;
    this.#sizes = sizes;
    this.#mtimes = mtimes;
    this.#modes = modes;
  }

  /** Entries from rows in any order; they are sorted by path. A path given twice throws `IO_ERROR`. */
  static from(rows: Iterable<ManifestRow>): ManifestEntries {
    const builder = new ManifestBuilder();
    for (const row of rows) builder.add(row);
    return builder.finish();
  }

  /** @internal Columns already in path order (see {@link ManifestBuilder}). */
  static fromColumns(names: Buffer, ends: Uint32Array, kinds: Uint8Array, sizes: Float64Array, mtimes: Float64Array, modes: Uint32Array): ManifestEntries {
    return new ManifestEntries(names, ends, kinds, sizes, mtimes, modes);
  }

  get length(): number {
    return this.#ends.length;
  }

  path(index: number): string {
    const end = this.#ends[index];
    if (end === undefined) throw new RangeError(`no manifest entry ${index}`);
    return this.#names.toString('utf8', index === 0 ? 0 : (this.#ends[index - 1] as number), end);
  }

  kind(index: number): 'file' | 'directory' {
    return this.#kinds[index] === DIRECTORY ? 'directory' : 'file';
  }

  size(index: number): number {
    return this.#sizes[index] as number;
  }

  mtimeMs(index: number): number {
    return this.#mtimes[index] as number;
  }

  mode(index: number): number {
    return this.#modes[index] as number;
  }

  /** The entry at `index` as an object. */
  at(index: number): ManifestEntry {
    return { index, path: this.path(index), kind: this.kind(index), size: this.size(index), mtimeMs: this.mtimeMs(index), mode: this.mode(index) };
  }

  *[Symbol.iterator](): IterableIterator<ManifestEntry> {
    for (let i = 0; i < this.length; i++) yield this.at(i);
  }

  /** The entries at `indexes`, one at a time. */
  *select(indexes: Iterable<number>): IterableIterator<ManifestEntry> {
    for (const i of indexes) yield this.at(i);
  }

  /** Indexes of the entries of one kind, in path order. */
  indexesOf(kind: 'file' | 'directory'): Uint32Array {
    const code = kind === 'directory' ? DIRECTORY : FILE;
    let n = 0;
    for (let i = 0; i < this.length; i++) if (this.#kinds[i] === code) n += 1;
    const out = new Uint32Array(n);
    for (let i = 0, k = 0; i < this.length; i++) if (this.#kinds[i] === code) out[k++] = i;
    return out;
  }

  /** Whether some file's size passes `test` (read from the columns: no entry is built). */
  someFileSized(test: (size: number) => boolean): boolean {
    for (let i = 0; i < this.length; i++) if (this.#kinds[i] === FILE && test(this.#sizes[i] as number)) return true;
    return false;
  }

  /** Index of the entry at `path`, or -1. The first call builds a hash index (4–8 bytes per entry). */
  indexOf(path: string): number {
    const table = (this.#lookup ??= this.#buildLookup());
    const mask = table.length - 1;
    for (let slot = hashPath(path) & mask; ; slot = (slot + 1) & mask) {
      const i = table[slot] as number;
      if (i < 0) return -1;
      if (this.path(i) === path) return i;
    }
  }

  #buildLookup(): Int32Array {
    let size = 8;
    while (size < this.length * 2) size *= 2;
    const table = new Int32Array(size).fill(-1);
    const mask = size - 1;
    for (let i = 0; i < this.length; i++) {
      let slot = hashPath(this.path(i)) & mask;
      while ((table[slot] as number) >= 0) slot = (slot + 1) & mask;
      table[slot] = i;
    }
    return table;
  }
}

/** FNV-1a over UTF-16 code units: the same for a path however it was obtained. */
function hashPath(path: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) {
    h ^= path.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Collects a scan's rows into growing columns and sorts them once at the end. Paths are
 * kept as strings only until then: sorting compares them as JavaScript strings, the order
 * every earlier manifest had.
 */
export class ManifestBuilder {
  #paths: string[] = [];
  #kinds = new Uint8Array(1024);
  #sizes = new Float64Array(1024);
  #mtimes = new Float64Array(1024);
  #modes = new Uint32Array(1024);
  #bytes = 0;

  get length(): number {
    return this.#paths.length;
  }

  add(row: ManifestRow): void {
    const i = this.#paths.length;
    if (i === this.#kinds.length) this.#grow();
    this.#paths.push(row.path);
    this.#kinds[i] = row.kind === 'directory' ? DIRECTORY : FILE;
    this.#sizes[i] = row.kind === 'directory' ? 0 : row.size;
    this.#mtimes[i] = row.mtimeMs;
    this.#modes[i] = row.mode;
    this.#bytes += Buffer.byteLength(row.path, 'utf8');
  }

  finish(): ManifestEntries {
    const paths = this.#paths;
    const n = paths.length;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => {
      const pa = paths[a] as string;
      const pb = paths[b] as string;
      return pa < pb ? -1 : pa > pb ? 1 : 0;
    });
    const names = Buffer.allocUnsafeSlow(this.#bytes);
    const ends = new Uint32Array(n);
    const kinds = new Uint8Array(n);
    const sizes = new Float64Array(n);
    const mtimes = new Float64Array(n);
    const modes = new Uint32Array(n);
    let offset = 0;
    for (let k = 0; k < n; k++) {
      const i = order[k] as number;
      const path = paths[i] as string;
      if (k > 0 && path === paths[order[k - 1] as number]) throw new KetterError(ErrorCode.IO_ERROR, `the source listing named one path twice: ${path}`, { path });
      offset += names.write(path, offset, 'utf8');
      ends[k] = offset;
      kinds[k] = this.#kinds[i] as number;
      sizes[k] = this.#sizes[i] as number;
      mtimes[k] = this.#mtimes[i] as number;
      modes[k] = this.#modes[i] as number;
    }
    this.#paths = [];
    return ManifestEntries.fromColumns(names, ends, kinds, sizes, mtimes, modes);
  }

  #grow(): void {
    const grow = <T extends Uint8Array | Float64Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(a.length * 2);
      b.set(a as never);
      return b;
    };
    this.#kinds = grow(this.#kinds, (n) => new Uint8Array(n));
    this.#sizes = grow(this.#sizes, (n) => new Float64Array(n));
    this.#mtimes = grow(this.#mtimes, (n) => new Float64Array(n));
    this.#modes = grow(this.#modes, (n) => new Uint32Array(n));
  }
}
