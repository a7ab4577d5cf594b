import type { ManifestEntries } from '../manifest.js';
import { joinPath } from '../paths.js';
import type { StagedFile } from './job-run.js';

/**
 * Files of a manifest with a hash and size each — the files a job has staged and the
 * source hashes they were verified against — kept in columns by manifest index: a hash
 * costs its bytes (32 for SHA-256) instead of a 64-character string and an object on the
 * JavaScript heap. Iteration gives them back as {@link StagedFile}s, in path order.
 */
export class HashedFiles implements Iterable<StagedFile> {
  readonly entries: ManifestEntries;
  readonly #under: string | null;
  readonly #present: Uint8Array;
  readonly #sizes: Float64Array;
  #hashes: Buffer | null = null;
  #hashBytes = 0;
  /** Hashes that are not lowercase hex of the common length, as given. */
  readonly #odd = new Map<number, string>();
  #count = 0;
  #bytes = 0;

  /**
   * @param under Where the files are, when not at their staging paths: the files of a
   *   destination found already in place are at `under/<entry path>`.
   */
  constructor(entries: ManifestEntries, under?: string) {
    this.entries = entries;
    this.#under = under ?? null;
    this.#present = new Uint8Array(entries.length);
    this.#sizes = new Float64Array(entries.length);
  }

  /** Files recorded. */
  get length(): number {
    return this.#count;
  }

  /** Their sizes added up. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Record (or replace) the hash and size of one file. */
  push(file: { entry: { index: number }; hash: string; size: number }): void {
    this.set(file.entry.index, file.hash, file.size);
  }

  set(index: number, hash: string, size: number): void {
    if (index < 0 || index >= this.#present.length) throw new RangeError(`no manifest entry ${index}`);
    if (this.#present[index] === 1) this.#bytes -= this.#sizes[index] as number;
    else this.#count += 1;
    this.#present[index] = 1;
    this.#sizes[index] = size;
    this.#bytes += size;
    this.#odd.delete(index);
    if (this.#hashes === null && hash.length > 0 && hash.length % 2 === 0) {
      this.#hashBytes = hash.length / 2;
      this.#hashes = Buffer.alloc(this.#present.length * this.#hashBytes);
    }
    const at = index * this.#hashBytes;
    const written = this.#hashes !== null && hash.length === this.#hashBytes * 2 ? this.#hashes.write(hash, at, this.#hashBytes, 'hex') : -1;
    // Hex decoding accepts upper case and stops at the first non-hex character: such a
    // hash would not read back as given, so it is kept as it came.
    if (written !== this.#hashBytes || !isLowerHex(hash)) this.#odd.set(index, hash);
  }

  has(index: number): boolean {
    return this.#present[index] === 1;
  }

  /** The recorded hash of a file (hex), or undefined. */
  hash(index: number): string | undefined {
    if (this.#present[index] !== 1) return undefined;
    const odd = this.#odd.get(index);
    if (odd !== undefined) return odd;
    const at = index * this.#hashBytes;
    return (this.#hashes as Buffer).toString('hex', at, at + this.#hashBytes);
  }

  /** The recorded size of a file, or -1. */
  size(index: number): number {
    return this.#present[index] === 1 ? (this.#sizes[index] as number) : -1;
  }

  /** One recorded file as a {@link StagedFile}. */
  get(index: number): StagedFile {
    const hash = this.hash(index);
    if (hash === undefined) throw new RangeError(`no file recorded at manifest entry ${index}`);
    const entry = this.entries.at(index);
    const file: StagedFile = { entry, hash, size: this.#sizes[index] as number };
    if (this.#under !== null) file.at = joinPath(this.#under, entry.path);
    return file;
  }

  /** Manifest indexes of the recorded files, in path order. */
  indexes(): Uint32Array {
    const out = new Uint32Array(this.#count);
    for (let i = 0, k = 0; i < this.#present.length; i++) if (this.#present[i] === 1) out[k++] = i;
    return out;
  }

  *[Symbol.iterator](): IterableIterator<StagedFile> {
    for (let i = 0; i < this.#present.length; i++) if (this.#present[i] === 1) yield this.get(i);
  }
}

function isLowerHex(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}
