import { crc32 } from 'node:zlib';
import { ErrorCode, KetterError } from '../errors.js';

/*
 * A streaming writer of uncompressed (STORE) zip archives, per PKWARE's APPNOTE 6.3.
 *
 * Why not a library: the one used before (yazl) wrote the Info-ZIP extended timestamp only
 * in the central directory, where Info-ZIP `unzip` does not look for it, so every file a
 * server-side unzip extracted came out with a DOS time (2-second steps, local time) and
 * needed a set-times request of its own; its entry bookkeeping was quadratic in the number
 * of entries; and it kept every buffer it was given, computed CRC-32 in JavaScript and made
 * several streams per entry. This writer does one thing: entries in the order given, each
 * central-directory record serialized as soon as its entry is written.
 */

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_DESCRIPTOR = 0x08074b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_EOCD = 0x06054b50;

const MAX16 = 0xffff;
const MAX32 = 0xffffffff;

/** General purpose flags: sizes and CRC follow the data (bit 3); names are UTF-8 (bit 11). */
const FLAG_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;

/** Version needed to extract: 2.0 for files and directories, 4.5 once a Zip64 field is used. */
const VERSION_DEFAULT = 20;
const VERSION_ZIP64 = 45;
/** Made by Unix (3), so readers take the upper 16 bits of the external attributes as st_mode. */
const VERSION_MADE_BY = (3 << 8) | VERSION_ZIP64;

const EXTRA_ZIP64 = 0x0001;
const EXTRA_TIMESTAMP = 0x5455;
/** The extended timestamp field as written here: header, flags (mtime only), 4-byte mtime. */
const TIMESTAMP_BYTES = 4 + 1 + 4;

const LOCAL_HEADER_BYTES = 30;
const CENTRAL_HEADER_BYTES = 46;
const EOCD_BYTES = 22;
const ZIP64_EOCD_BYTES = 56;
const ZIP64_LOCATOR_BYTES = 20;

/** Output is gathered into blocks of this size, so thousands of small entries cost a few sink calls. */
const OUTPUT_BLOCK_BYTES = 1024 * 1024;
/** Data at least this large goes to the sink as given (no copy); smaller pieces are gathered. */
const PASS_THROUGH_BYTES = 64 * 1024;
/** The central directory accumulates in blocks of this size: compact, whatever the entry count. */
const CENTRAL_BLOCK_BYTES = 64 * 1024;

/** Output blocks kept for reuse once the sink is done with them. */
const SPARE_BLOCKS = 4;

/**
 * Receives the archive's bytes in order. A returned promise holds the writer until it
 * settles. `release` may be called once the sink no longer reads `chunk` (a stream's write
 * callback): the writer then fills that memory again instead of allocating more. A sink
 * that keeps chunks, or never calls it, only costs a fresh 1 MiB block per MiB of output.
 */
export type ZipSink = (chunk: Buffer, release: () => void) => void | Promise<void>;

/** What every entry records besides its name. */
export interface ZipEntryMeta {
  /** Modification time, ms since the epoch: whole seconds in the extended timestamp, 2-second DOS time besides. */
  mtimeMs: number;
  /**
   * Unix `st_mode` (e.g. `0o100644`, `0o040755`), stored as external attributes. Without type
   * bits, those of a regular file or a directory (as added) are supplied.
   */
  mode: number;
}

export interface ZipWriterOptions {
  /**
   * Write every size, offset and count in its Zip64 form, whatever the values. For tests:
   * it exercises the Zip64 paths without writing 4 GiB or 65,535 entries.
   */
  forceZip64?: boolean;
}

/** What {@link ZipWriter.end} reports. */
export interface ZipSummary {
  /** Bytes of the whole archive, as handed to the sink. */
  bytes: number;
  entries: number;
}

/**
 * A streamed entry's byte count differed from the size announced for it (the file changed
 * while it was read). The archive is unusable after it.
 */
export class ZipSizeMismatchError extends Error {
  override readonly name = 'ZipSizeMismatchError';

  constructor(
    readonly entry: string,
    readonly expected: number,
    /** Bytes seen when the mismatch showed: the final count, or the first count past `expected`. */
    readonly actual: number,
  ) {
    super(`zip entry '${entry}': ${actual} B streamed, ${expected} B announced`);
  }
}

/**
 * Writes an uncompressed zip to a sink, one entry at a time, each add awaited before the
 * next (a single producer). Each add resolves once the sink has accepted what it had to take,
 * so a sink that returns promises (a stream waiting for `drain`) holds the producer back: the
 * writer itself buffers at most one output block (1 MiB) besides the central directory.
 *
 * Every entry carries its name in UTF-8 (flag bit 11), a DOS date and time (local time,
 * clamped to 1980–2107), the Info-ZIP extended timestamp (0x5455: whole-second mtime) in both
 * its local header and its central record — Info-ZIP `unzip` reads times from the local
 * header — and `st_mode << 16` as external attributes (made by Unix). Zip64 fields appear
 * where a value needs them, or everywhere with `forceZip64`.
 *
 * Once an add has failed (sink error, size mismatch, source error) the archive is broken and
 * every later call throws that error; a refused name leaves the writer usable.
 *
 * @example
 * ```ts
 * const out = createWriteStream('a.zip');
 * const zip = new ZipWriter((chunk) => (out.write(chunk) ? undefined : once(out, 'drain').then(() => undefined)));
 * await zip.addDirectory('take', { mtimeMs: Date.now(), mode: 0o040755 });
 * await zip.addBytes('take/a.wav', bytes, { mtimeMs: Date.now(), mode: 0o100644 });
 * await zip.addStream('take/b.mov', createReadStream('b.mov'), { mtimeMs: Date.now(), mode: 0o100644, expectedSize: size });
 * await zip.end();
 * out.end();
 * ```
 */
export class ZipWriter {
  readonly #sink: ZipSink;
  readonly #force: boolean;

  /** The output block being filled: bytes before `#start` are already queued for the sink. */
  #block: Buffer = Buffer.alloc(0);
  #start = 0;
  #used = 0;
  /** Slices waiting to be handed to the sink, in order. */
  readonly #queue: Buffer[] = [];
  /**
   * Per output block (by its memory): slices queued or handed to the sink and not yet
   * released. A block the writer has moved on from is reused once none is left. Without
   * reuse, a job's archive meant one allocation per MiB, freed only when the collector got
   * round to it: tens of MiB of dead blocks at once while packing a large tree.
   */
  readonly #held = new Map<ArrayBufferLike, number>();
  readonly #spare: Buffer[] = [];
  /** Bytes of archive produced so far (queued, handed over, or still in the block). */
  #offset = 0;

  readonly #central: Buffer[] = [];
  #centralBlock: Buffer = Buffer.alloc(0);
  #centralUsed = 0;
  #centralBytes = 0;
  #entries = 0;

  #busy = false;
  #ended = false;
  #failure: { error: unknown } | null = null;

  /** DOS date/time of the last whole second converted: consecutive entries often share it. */
  #dosSecond = Number.NaN;
  #dosTime = 0;
  #dosDate = 0;

  constructor(sink: ZipSink, options: ZipWriterOptions = {}) {
    this.#sink = sink;
    this.#force = options.forceZip64 === true;
  }

  /** Entries added so far. */
  get entries(): number {
    return this.#entries;
  }

  /**
   * Bytes of archive produced so far, including what is still gathered in the output block:
   * read before an add, the offset the entry's local header will have.
   */
  get bytes(): number {
    return this.#offset;
  }

  /**
   * Add a directory entry. `name` is `/`-separated and relative; the trailing `/` is added
   * when missing. Throws a {@link KetterError} `UNSAFE_ARCHIVE_ENTRY` for an unsafe name.
   */
  async addDirectory(name: string, meta: ZipEntryMeta): Promise<void> {
    const encoded = encodeName(name, true);
    this.#enter();
    try {
      this.#writeEntry(encoded, typed(meta, S_IFDIR), 0, 0);
      if (this.#queue.length > 0) await this.#drain();
    } catch (error) {
      throw this.#fail(error);
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Add a whole file already in memory: sizes and CRC go in the local header, no data
   * descriptor. `crc32` may be given when it was computed elsewhere (a worker thread);
   * otherwise it is computed here with `zlib.crc32`. Data of 64 KiB or more is handed to the
   * sink as is, so it must not change until the sink is done with it, unless `copy` is set:
   * then the data is copied into the writer's output whatever its size, and the caller may
   * reuse its memory as soon as the add resolves.
   */
  async addBytes(name: string, data: Uint8Array, meta: ZipEntryMeta & { crc32?: number; copy?: boolean }): Promise<void> {
    const encoded = encodeName(name, false);
    this.#enter();
    try {
      const crc = meta.crc32 ?? crc32(data);
      this.#writeEntry(encoded, typed(meta, S_IFREG), data.byteLength, crc >>> 0);
      this.#writeData(data, meta.copy === true);
      if (this.#queue.length > 0) await this.#drain();
    } catch (error) {
      throw this.#fail(error);
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Add a file streamed from `source`; resolves with the bytes written. The CRC is only
   * known at the end, so it and the sizes follow the data in a data descriptor (flag bit 3);
   * `expectedSize` decides up front whether the local header announces Zip64 (and the
   * descriptor has 8-byte sizes). A source yielding more or fewer bytes than `expectedSize`
   * throws {@link ZipSizeMismatchError}. Chunks of 64 KiB or more are handed to the sink
   * without a copy: the source must not reuse them (Node streams do not).
   */
  async addStream(name: string, source: AsyncIterable<Uint8Array>, meta: ZipEntryMeta & { expectedSize: number }): Promise<number> {
    const encoded = encodeName(name, false);
    meta = typed(meta, S_IFREG);
    if (!Number.isSafeInteger(meta.expectedSize) || meta.expectedSize < 0) throw new RangeError(`zip entry '${name}': invalid expectedSize ${meta.expectedSize}`);
    this.#enter();
    try {
      const zip64 = this.#force || meta.expectedSize >= MAX32;
      const offset = this.#offset;
      this.#writeLocalHeader(encoded, meta, 0, 0, zip64, true);
      let crc = 0;
      let size = 0;
      for await (const chunk of source) {
        size += chunk.byteLength;
        if (size > meta.expectedSize) throw new ZipSizeMismatchError(name, meta.expectedSize, size);
        crc = crc32(chunk, crc);
        this.#writeData(chunk);
        if (this.#queue.length > 0) await this.#drain();
      }
      if (size !== meta.expectedSize) throw new ZipSizeMismatchError(name, meta.expectedSize, size);
      crc >>>= 0;
      const at = this.#reserve(zip64 ? 24 : 16);
      const b = this.#block;
      b.writeUInt32LE(SIG_DESCRIPTOR, at);
      b.writeUInt32LE(crc, at + 4);
      if (zip64) {
        writeUInt64(b, size, at + 8);
        writeUInt64(b, size, at + 16);
      } else {
        b.writeUInt32LE(size, at + 8);
        b.writeUInt32LE(size, at + 12);
      }
      this.#writeCentral(encoded, meta, size, crc, offset, zip64, true);
      if (this.#queue.length > 0) await this.#drain();
      return size;
    } catch (error) {
      throw this.#fail(error);
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Write the central directory and its end records (Zip64 ones when the entry count
   * reaches 65,535 or the directory's size or offset reaches 4 GiB) and hand everything
   * left to the sink. The writer takes no more entries after it.
   */
  async end(): Promise<ZipSummary> {
    this.#enter();
    this.#ended = true;
    try {
      const cdOffset = this.#offset;
      const cdSize = this.#centralBytes;
      this.#seal();
      if (this.#centralUsed > 0) this.#central.push(this.#centralBlock.subarray(0, this.#centralUsed));
      this.#centralBlock = Buffer.alloc(0);
      this.#centralUsed = 0;
      // Handed over as serialized: the directory is never copied again.
      while (this.#central.length > 0) {
        const part = this.#central.shift() as Buffer;
        this.#queue.push(part);
        this.#offset += part.byteLength;
        await this.#drain();
      }
      const zip64 = this.#force || this.#entries >= MAX16 || cdOffset >= MAX32 || cdSize >= MAX32;
      const b0 = this.#reserve((zip64 ? ZIP64_EOCD_BYTES + ZIP64_LOCATOR_BYTES : 0) + EOCD_BYTES);
      const b = this.#block;
      let at = b0;
      if (zip64) {
        const recordOffset = cdOffset + cdSize;
        b.writeUInt32LE(SIG_ZIP64_EOCD, at);
        writeUInt64(b, ZIP64_EOCD_BYTES - 12, at + 4);
        b.writeUInt16LE(VERSION_MADE_BY, at + 12);
        b.writeUInt16LE(VERSION_ZIP64, at + 14);
        b.writeUInt32LE(0, at + 16); // this disk
        b.writeUInt32LE(0, at + 20); // disk where the central directory starts
        writeUInt64(b, this.#entries, at + 24);
        writeUInt64(b, this.#entries, at + 32);
        writeUInt64(b, cdSize, at + 40);
        writeUInt64(b, cdOffset, at + 48);
        at += ZIP64_EOCD_BYTES;
        b.writeUInt32LE(SIG_ZIP64_LOCATOR, at);
        b.writeUInt32LE(0, at + 4);
        writeUInt64(b, recordOffset, at + 8);
        b.writeUInt32LE(1, at + 16); // disks in all
        at += ZIP64_LOCATOR_BYTES;
      }
      // With a Zip64 record, every field of the classic record says "see Zip64": readers
      // that key on one marker or another all go there.
      b.writeUInt32LE(SIG_EOCD, at);
      b.writeUInt16LE(0, at + 4);
      b.writeUInt16LE(0, at + 6);
      b.writeUInt16LE(zip64 ? MAX16 : this.#entries, at + 8);
      b.writeUInt16LE(zip64 ? MAX16 : this.#entries, at + 10);
      b.writeUInt32LE(zip64 ? MAX32 : cdSize, at + 12);
      b.writeUInt32LE(zip64 ? MAX32 : cdOffset, at + 16);
      b.writeUInt16LE(0, at + 20); // comment length
      this.#seal();
      await this.#drain();
      this.#block = Buffer.alloc(0);
      this.#start = 0;
      this.#used = 0;
      return { bytes: this.#offset, entries: this.#entries };
    } catch (error) {
      throw this.#fail(error);
    } finally {
      this.#busy = false;
    }
  }

  #enter(): void {
    if (this.#failure !== null) throw this.#failure.error;
    if (this.#busy) throw new Error('ZipWriter: an add is still in progress (await each call before the next)');
    if (this.#ended) throw new Error('ZipWriter: the archive is already ended');
    this.#busy = true;
  }

  #fail(error: unknown): unknown {
    this.#failure ??= { error };
    return error;
  }

  /** A local header (plus its central record) for an entry whose size and CRC are known now. */
  #writeEntry(name: Buffer, meta: ZipEntryMeta, size: number, crc: number): void {
    const offset = this.#offset;
    const zip64 = this.#force || size >= MAX32;
    this.#writeLocalHeader(name, meta, size, crc, zip64, false);
    this.#writeCentral(name, meta, size, crc, offset, zip64, false);
  }

  #writeLocalHeader(name: Buffer, meta: ZipEntryMeta, size: number, crc: number, zip64: boolean, descriptor: boolean): void {
    const extra = (zip64 ? 20 : 0) + TIMESTAMP_BYTES;
    let at = this.#reserve(LOCAL_HEADER_BYTES + name.byteLength + extra);
    const b = this.#block;
    this.#dos(meta.mtimeMs);
    b.writeUInt32LE(SIG_LOCAL, at);
    b.writeUInt16LE(zip64 ? VERSION_ZIP64 : VERSION_DEFAULT, at + 4);
    b.writeUInt16LE(FLAG_UTF8 | (descriptor ? FLAG_DESCRIPTOR : 0), at + 6);
    b.writeUInt16LE(0, at + 8); // stored
    b.writeUInt16LE(this.#dosTime, at + 10);
    b.writeUInt16LE(this.#dosDate, at + 12);
    // With a data descriptor, CRC and sizes are zero here (and in the Zip64 field: APPNOTE 4.4.4).
    b.writeUInt32LE(descriptor ? 0 : crc, at + 14);
    const size32 = zip64 ? MAX32 : descriptor ? 0 : size;
    b.writeUInt32LE(size32, at + 18);
    b.writeUInt32LE(size32, at + 22);
    b.writeUInt16LE(name.byteLength, at + 26);
    b.writeUInt16LE(extra, at + 28);
    at += LOCAL_HEADER_BYTES;
    name.copy(b, at);
    at += name.byteLength;
    if (zip64) {
      // The local Zip64 field holds both sizes, always (APPNOTE 4.5.3).
      b.writeUInt16LE(EXTRA_ZIP64, at);
      b.writeUInt16LE(16, at + 2);
      writeUInt64(b, descriptor ? 0 : size, at + 4);
      writeUInt64(b, descriptor ? 0 : size, at + 12);
      at += 20;
    }
    writeTimestamp(b, at, meta.mtimeMs);
  }

  /** Serialize an entry's central record now, so only its bytes are kept, not the entry. */
  #writeCentral(name: Buffer, meta: ZipEntryMeta, size: number, crc: number, offset: number, localZip64: boolean, descriptor: boolean): void {
    const bigSize = this.#force || size >= MAX32;
    const bigOffset = this.#force || offset >= MAX32;
    const zip64Bytes = (bigSize ? 16 : 0) + (bigOffset ? 8 : 0);
    const extra = (zip64Bytes > 0 ? 4 + zip64Bytes : 0) + TIMESTAMP_BYTES;
    const length = CENTRAL_HEADER_BYTES + name.byteLength + extra;
    if (this.#centralUsed + length > this.#centralBlock.byteLength) {
      if (this.#centralUsed > 0) this.#central.push(this.#centralBlock.subarray(0, this.#centralUsed));
      this.#centralBlock = Buffer.allocUnsafe(Math.max(CENTRAL_BLOCK_BYTES, length));
      this.#centralUsed = 0;
    }
    const b = this.#centralBlock;
    let at = this.#centralUsed;
    const isDirectory = (meta.mode & S_IFMT) === S_IFDIR;
    b.writeUInt32LE(SIG_CENTRAL, at);
    b.writeUInt16LE(VERSION_MADE_BY, at + 4);
    b.writeUInt16LE(localZip64 || zip64Bytes > 0 ? VERSION_ZIP64 : VERSION_DEFAULT, at + 6);
    b.writeUInt16LE(FLAG_UTF8 | (descriptor ? FLAG_DESCRIPTOR : 0), at + 8);
    b.writeUInt16LE(0, at + 10);
    b.writeUInt16LE(this.#dosTime, at + 12);
    b.writeUInt16LE(this.#dosDate, at + 14);
    b.writeUInt32LE(crc, at + 16);
    b.writeUInt32LE(bigSize ? MAX32 : size, at + 20);
    b.writeUInt32LE(bigSize ? MAX32 : size, at + 24);
    b.writeUInt16LE(name.byteLength, at + 28);
    b.writeUInt16LE(extra, at + 30);
    b.writeUInt16LE(0, at + 32); // comment length
    b.writeUInt16LE(0, at + 34); // disk number start
    b.writeUInt16LE(0, at + 36); // internal attributes
    // The MS-DOS directory bit beside st_mode, for readers that do not know Unix modes.
    b.writeUInt32LE((((meta.mode & MAX16) << 16) | (isDirectory ? 0x10 : 0)) >>> 0, at + 38);
    b.writeUInt32LE(bigOffset ? MAX32 : offset, at + 42);
    at += CENTRAL_HEADER_BYTES;
    name.copy(b, at);
    at += name.byteLength;
    if (zip64Bytes > 0) {
      // Only the fields marked 0xFFFFFFFF above, in APPNOTE order.
      b.writeUInt16LE(EXTRA_ZIP64, at);
      b.writeUInt16LE(zip64Bytes, at + 2);
      at += 4;
      if (bigSize) {
        writeUInt64(b, size, at);
        writeUInt64(b, size, at + 8);
        at += 16;
      }
      if (bigOffset) {
        writeUInt64(b, offset, at);
        at += 8;
      }
    }
    // The central form of the extended timestamp holds the mtime only, whatever the flags.
    writeTimestamp(b, at, meta.mtimeMs);
    this.#centralUsed += length;
    this.#centralBytes += length;
    this.#entries += 1;
  }

  /** Entry data: large pieces go to the sink as they are (unless `copy`), small ones are gathered. */
  #writeData(data: Uint8Array, copy = false): void {
    const n = data.byteLength;
    if (n === 0) return;
    if (n >= PASS_THROUGH_BYTES && !copy) {
      this.#seal();
      this.#queue.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, n));
      this.#offset += n;
      return;
    }
    const at = this.#reserve(n);
    this.#block.set(data, at);
  }

  /** Room for `n` bytes in the output block; returns where they go and counts them as written. */
  #reserve(n: number): number {
    if (this.#used + n > this.#block.byteLength) {
      this.#seal();
      const retired = this.#block;
      this.#block = n <= OUTPUT_BLOCK_BYTES ? (this.#spare.pop() ?? Buffer.allocUnsafe(OUTPUT_BLOCK_BYTES)) : Buffer.allocUnsafe(n);
      if (!this.#held.has(retired.buffer)) this.#keep(retired);
      this.#start = 0;
      this.#used = 0;
    }
    const at = this.#used;
    this.#used += n;
    this.#offset += n;
    return at;
  }

  /**
   * Queue what the block holds for the sink. The rest of the block stays in use: later
   * bytes go after the queued slice, which is never written again.
   */
  #seal(): void {
    if (this.#used > this.#start) {
      this.#queue.push(this.#block.subarray(this.#start, this.#used));
      this.#held.set(this.#block.buffer, (this.#held.get(this.#block.buffer) ?? 0) + 1);
      this.#start = this.#used;
    }
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const chunk = this.#queue.shift() as Buffer;
      const pending = this.#sink(chunk, this.#held.has(chunk.buffer) ? this.#releaser(chunk.buffer) : noop);
      if (pending !== undefined) await pending;
    }
  }

  /** Called by the sink once for a slice of an output block: the block is reusable when none is left. */
  #releaser(memory: ArrayBufferLike): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#held.get(memory) ?? 1) - 1;
      if (left > 0) {
        this.#held.set(memory, left);
        return;
      }
      this.#held.delete(memory);
      // The block still being filled is not spare: it is kept when the writer moves on.
      if (memory !== this.#block.buffer) this.#keep(Buffer.from(memory));
    };
  }

  #keep(block: Buffer): void {
    if (block.byteLength === OUTPUT_BLOCK_BYTES && this.#spare.length < SPARE_BLOCKS) this.#spare.push(block);
  }

  #dos(mtimeMs: number): void {
    const second = Math.floor(mtimeMs / 1000);
    if (second === this.#dosSecond) return;
    this.#dosSecond = second;
    [this.#dosTime, this.#dosDate] = dosDateTime(mtimeMs);
  }
}

const noop = (): void => undefined;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** The meta with type bits in its mode: unzip takes the whole st_mode from a Unix-made entry. */
function typed<M extends ZipEntryMeta>(meta: M, type: number): M {
  return (meta.mode & S_IFMT) === 0 ? { ...meta, mode: meta.mode | type } : meta;
}

/**
 * A name as stored, UTF-8. Names come from a scan that already confined them; refusing
 * anything that could land outside the extraction directory here means the writer is never
 * the weak link if a caller's check slips.
 */
function encodeName(name: string, directory: boolean): Buffer {
  const refuse = (why: string) => new KetterError(ErrorCode.UNSAFE_ARCHIVE_ENTRY, `refusing zip entry name ${JSON.stringify(name)}: ${why}`);
  if (typeof name !== 'string' || name === '') throw refuse('empty');
  if (name.includes('\0')) throw refuse('contains NUL');
  if (name.includes('\\')) throw refuse('contains a backslash');
  if (name.startsWith('/')) throw refuse('absolute');
  let body = name;
  if (body.endsWith('/')) {
    if (!directory) throw refuse('a file name cannot end with /');
    body = body.slice(0, -1);
  }
  for (const segment of body.split('/')) {
    if (segment === '..') throw refuse("contains a '..' segment");
    if (segment === '' || segment === '.') throw refuse('empty or "." segment');
  }
  // A lone surrogate would be written as U+FFFD: the entry would not name the file.
  if (/[\uD800-\uDFFF]/.test(body) && /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(body)) throw refuse('not valid Unicode');
  const encoded = Buffer.from(directory ? `${body}/` : body, 'utf8');
  if (encoded.byteLength > MAX16) throw refuse('longer than 65,535 bytes');
  return encoded;
}

/** DOS time and date in local time, as Info-ZIP writes them, clamped to what the format holds. */
function dosDateTime(mtimeMs: number): [time: number, date: number] {
  const d = new Date(mtimeMs);
  const year = d.getFullYear();
  if (!Number.isFinite(year) || year < 1980) return [0, (1 << 5) | 1];
  if (year > 2107) return [(23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31];
  return [(d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1), ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate()];
}

/**
 * The extended timestamp: 4-byte Unix seconds, signed before 1970 (as Info-ZIP reads it),
 * clamped to what 32 bits hold.
 */
function writeTimestamp(b: Buffer, at: number, mtimeMs: number): void {
  const seconds = Number.isFinite(mtimeMs) ? Math.min(Math.max(Math.floor(mtimeMs / 1000), -0x80000000), MAX32) : 0;
  b.writeUInt16LE(EXTRA_TIMESTAMP, at);
  b.writeUInt16LE(5, at + 2);
  b.writeUInt8(1, at + 4); // flags: modification time present
  b.writeUInt32LE(seconds >>> 0, at + 5);
}

function writeUInt64(b: Buffer, value: number, at: number): void {
  b.writeUInt32LE(value % 0x100000000, at);
  b.writeUInt32LE(Math.floor(value / 0x100000000), at + 4);
}
