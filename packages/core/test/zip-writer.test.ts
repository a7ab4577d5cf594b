import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ZipSizeMismatchError, ZipWriter, type ZipWriterOptions } from '../src/zip/zip-writer.js';

/*
 * Archives are written to real files and read back by two independent readers: yauzl, and
 * Info-ZIP `unzip` (the tool a server-side extraction runs) when this machine has it. A
 * small parser here checks what neither reader exposes: local headers, data descriptors and
 * the end records.
 */

const HAS_UNZIP = spawnSync('unzip', ['-v']).status === 0;
const UNZIP_ENV = { ...process.env, LC_ALL: 'C.UTF-8' };
let unzipNoted = false;
/** Runs the `unzip` checks, or says once that they are skipped. */
function withUnzip(check: () => Promise<void> | void): Promise<void> | void {
  if (HAS_UNZIP) return check();
  if (!unzipNoted) {
    unzipNoted = true;
    console.warn('zip-writer tests: Info-ZIP unzip is not installed; its checks are skipped (yauzl checks still run)');
  }
}

let dir: string;
let counter = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ketter-zip-writer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const FILE = 0o100000;
const DIR = 0o040000;

/** Write an archive to a file in the tmp dir through a sink that honours the stream's backpressure. */
async function writeZip(build: (zip: ZipWriter) => Promise<void>, options: ZipWriterOptions = {}): Promise<{ path: string; bytes: number; entries: number }> {
  const path = join(dir, `a${counter++}.zip`);
  const out = createWriteStream(path, { highWaterMark: 256 * 1024 });
  const zip = new ZipWriter((chunk) => (out.write(chunk) ? undefined : new Promise<void>((resolve) => out.once('drain', resolve))), options);
  await build(zip);
  const summary = await zip.end();
  out.end();
  await finished(out);
  expect((await stat(path)).size).toBe(summary.bytes);
  return { path, ...summary };
}

async function* chunks(data: Buffer, sizes: number[]): AsyncIterable<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < data.length) {
    const n = sizes[i++ % sizes.length] as number;
    yield data.subarray(at, at + n);
    at += n;
  }
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff;
  return b;
}

/** Byte equality without vitest's element-by-element diff (minutes on megabytes). */
function expectBytes(actual: Buffer | null | undefined, expected: Buffer, label = ''): void {
  expect(actual, label).toBeInstanceOf(Buffer);
  expect(actual!.length, label).toBe(expected.length);
  expect(actual!.equals(expected), `${label}: same bytes`).toBe(true);
}

interface ReadEntry {
  entry: yauzl.Entry;
  data: Buffer | null;
}

/** Every entry as yauzl sees it (with its data unless `withData` is false). */
async function readWithYauzl(path: string, withData = true): Promise<{ entryCount: number; entries: ReadEntry[] }> {
  // From memory: reading the file entry by entry costs ~80 µs of I/O per entry.
  const archive = await readFile(path);
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromBuffer(archive, { lazyEntries: true, strictFileNames: true, validateEntrySizes: true }, (e, z) => (e ? reject(e) : resolve(z))),
  );
  const entries: ReadEntry[] = [];
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', () => resolve());
    zip.on('entry', (entry: yauzl.Entry) => {
      if (!withData || entry.fileName.endsWith('/')) {
        entries.push({ entry, data: null });
        zip.readEntry();
        return;
      }
      zip.openReadStream(entry, (e, stream) => {
        if (e) return reject(e);
        const parts: Buffer[] = [];
        stream.on('data', (c: Buffer) => parts.push(c));
        stream.on('error', reject);
        stream.on('end', () => {
          entries.push({ entry, data: Buffer.concat(parts) });
          zip.readEntry();
        });
      });
    });
    zip.readEntry();
  });
  zip.close();
  return { entryCount: zip.entryCount, entries };
}

/** Extra fields of a header, by id. */
function extraFields(b: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let at = 0; at + 4 <= b.length; ) {
    const id = b.readUInt16LE(at);
    const n = b.readUInt16LE(at + 2);
    out.set(id, b.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/** The local header at `offset`, parsed independently of the writer. */
function localHeader(archive: Buffer, offset: number) {
  expect(archive.readUInt32LE(offset)).toBe(0x04034b50);
  const nameLength = archive.readUInt16LE(offset + 26);
  const extraLength = archive.readUInt16LE(offset + 28);
  const extras = extraFields(archive.subarray(offset + 30 + nameLength, offset + 30 + nameLength + extraLength));
  return {
    version: archive.readUInt16LE(offset + 4),
    flags: archive.readUInt16LE(offset + 6),
    method: archive.readUInt16LE(offset + 8),
    crc: archive.readUInt32LE(offset + 14),
    compressed: archive.readUInt32LE(offset + 18),
    uncompressed: archive.readUInt32LE(offset + 22),
    name: archive.subarray(offset + 30, offset + 30 + nameLength).toString('utf8'),
    extras,
    dataStart: offset + 30 + nameLength + extraLength,
  };
}

/** Unix seconds of an extended-timestamp field (flags byte, then the mtime). */
function utSeconds(field: Buffer | undefined): number | undefined {
  if (field === undefined) return undefined;
  expect(field[0]! & 1).toBe(1);
  return field.readUInt32LE(1);
}

/**
 * The classic end record (the writer adds no comment) and, if present, the Zip64 record.
 * `archive` may be the archive's tail only, starting at offset `base`.
 */
function endRecords(archive: Buffer, base = 0) {
  const eocd = archive.length - 22;
  expect(archive.readUInt32LE(eocd)).toBe(0x06054b50);
  const classic = {
    entries: archive.readUInt16LE(eocd + 10),
    cdSize: archive.readUInt32LE(eocd + 12),
    cdOffset: archive.readUInt32LE(eocd + 16),
  };
  const locator = eocd - 20;
  if (locator < 0 || archive.readUInt32LE(locator) !== 0x07064b50) return { classic, zip64: null };
  const record = Number(archive.readBigUInt64LE(locator + 8));
  expect(archive.readUInt32LE(record - base)).toBe(0x06064b50);
  return {
    classic,
    zip64: {
      entries: Number(archive.readBigUInt64LE(record - base + 32)),
      cdSize: Number(archive.readBigUInt64LE(record - base + 40)),
      cdOffset: Number(archive.readBigUInt64LE(record - base + 48)),
      record,
    },
  };
}

/** The DOS date and time of an entry, ignoring its extended timestamp (yauzl ≥ 3.2; @types/yauzl predates the option). */
function dosTime(entry: yauzl.Entry | undefined): Date | undefined {
  return (entry as unknown as { getLastModDate(options: { forceDosFormat: boolean }): Date } | undefined)?.getLastModDate({ forceDosFormat: true });
}

function unzip(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('unzip', args, { encoding: 'utf8', env: UNZIP_ENV, maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `unzip -t` passes, then extract into a fresh directory; returns it. */
async function unzipInto(path: string): Promise<string> {
  const t = unzip(['-t', path]);
  expect(t.stderr).toBe('');
  expect(t.stdout).toMatch(/No errors detected/);
  expect(t.status).toBe(0);
  const into = await mkdtemp(join(dir, 'x-'));
  const x = unzip(['-q', path, '-d', into]);
  expect(x.stderr).toBe('');
  expect(x.status).toBe(0);
  return into;
}

// An odd second with a sub-second part: a DOS time would land 1 s early, in local time.
const ODD_MTIME = Date.UTC(2024, 2, 9, 13, 37, 41, 789);
const EVEN_MTIME = Date.UTC(2019, 10, 30, 6, 5, 2, 0);

describe('ZipWriter: format', () => {
  test('an empty archive is a lone end record both readers accept', async () => {
    const { path, bytes, entries } = await writeZip(async () => {});
    expect({ bytes, entries }).toEqual({ bytes: 22, entries: 0 });
    const archive = await readFile(path);
    expect(endRecords(archive)).toEqual({ classic: { entries: 0, cdSize: 0, cdOffset: 0 }, zip64: null });
    expect((await readWithYauzl(path)).entries).toEqual([]);
    await withUnzip(() => {
      const t = unzip(['-t', path]);
      // Info-ZIP reports an empty archive as a warning (exit 1), not an error.
      expect(`${t.stdout}${t.stderr}`).toMatch(/zipfile is empty/);
      expect(t.status).toBe(1);
    });
  });

  test('files and directories: UTF-8 names, modes, CRC, times in both the local header and the central record', async () => {
    const files = {
      'Session/Audio Files/take 1.wav': { data: bytes(1000, 1), mode: 0o644, mtimeMs: ODD_MTIME },
      'Session/Mézcla/ñ é.wav': { data: Buffer.from('accents'), mode: 0o600, mtimeMs: EVEN_MTIME },
      'Session/run.sh': { data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755, mtimeMs: ODD_MTIME + 3_600_000 },
      'Session/empty': { data: Buffer.alloc(0), mode: 0o640, mtimeMs: EVEN_MTIME },
      'Session/big.bin': { data: bytes(300_000, 2), mode: 0o644, mtimeMs: ODD_MTIME },
    };
    const dirs = {
      Session: { mode: 0o755, mtimeMs: EVEN_MTIME },
      'Session/Audio Files': { mode: 0o750, mtimeMs: ODD_MTIME },
      'Session/Mézcla': { mode: 0o700, mtimeMs: EVEN_MTIME },
    };
    // `bytes` before an add is where the entry's local header goes (the packer records it).
    const offsets: number[] = [];
    const { path, entries } = await writeZip(async (zip) => {
      for (const [name, d] of Object.entries(dirs)) {
        offsets.push(zip.bytes);
        await zip.addDirectory(name, { mtimeMs: d.mtimeMs, mode: DIR | d.mode });
      }
      let i = 0;
      for (const [name, f] of Object.entries(files)) {
        // Half with a CRC computed elsewhere (as the lane's workers do), half computed by the writer.
        const given = i++ % 2 === 0 ? { crc32: crc32(f.data) } : {};
        offsets.push(zip.bytes);
        await zip.addBytes(name, f.data, { mtimeMs: f.mtimeMs, mode: FILE | f.mode, ...given });
      }
    });
    expect(entries).toBe(8);
    const archive = await readFile(path);
    const { entries: read } = await readWithYauzl(path);
    expect(read.map((r) => r.entry.fileName)).toEqual([...Object.keys(dirs).map((d) => `${d}/`), ...Object.keys(files)]);
    expect(read.map((r) => r.entry.relativeOffsetOfLocalHeader)).toEqual(offsets);
    for (const { entry, data } of read) {
      const isDir = entry.fileName.endsWith('/');
      const want = isDir ? dirs[entry.fileName.slice(0, -1) as keyof typeof dirs] : files[entry.fileName as keyof typeof files];
      expect(entry.generalPurposeBitFlag & 0x800).toBe(0x800);
      expect(entry.compressionMethod).toBe(0);
      expect(entry.versionMadeBy >> 8).toBe(3);
      expect(entry.externalFileAttributes >>> 16).toBe((isDir ? DIR : FILE) | want.mode);
      // yauzl reads the central record's extended timestamp; DOS time is local and in 2 s steps.
      expect(entry.getLastModDate().getTime()).toBe(Math.floor(want.mtimeMs / 1000) * 1000);
      expect(dosTime(entry)?.getTime()).toBe(Math.floor(want.mtimeMs / 2000) * 2000);
      const local = localHeader(archive, entry.relativeOffsetOfLocalHeader);
      expect(local.name).toBe(entry.fileName);
      expect(local.flags & 0x0808).toBe(0x800); // UTF-8, no data descriptor
      expect(local.method).toBe(0);
      expect(utSeconds(local.extras.get(0x5455))).toBe(Math.floor(want.mtimeMs / 1000));
      if (!isDir) {
        const f = want as (typeof files)[keyof typeof files];
        expectBytes(data, f.data, entry.fileName);
        expect(entry.crc32).toBe(crc32(f.data));
        expect({ crc: local.crc, compressed: local.compressed, uncompressed: local.uncompressed }).toEqual({
          crc: crc32(f.data),
          compressed: f.data.length,
          uncompressed: f.data.length,
        });
        expectBytes(archive.subarray(local.dataStart, local.dataStart + f.data.length), f.data, 'in place');
      }
    }
    expect(endRecords(archive).zip64).toBeNull();

    await withUnzip(async () => {
      const into = await unzipInto(path);
      for (const [name, f] of Object.entries(files)) {
        const p = join(into, name);
        expectBytes(await readFile(p), f.data, name);
        const st = await stat(p);
        expect(st.mode & 0o7777).toBe(f.mode);
        // unzip restores the mtime from the local header's extended timestamp, to the second.
        expect(st.mtimeMs).toBe(Math.floor(f.mtimeMs / 1000) * 1000);
      }
      for (const [name, d] of Object.entries(dirs)) {
        const st = await stat(join(into, name));
        expect(st.isDirectory()).toBe(true);
        expect(st.mode & 0o7777).toBe(d.mode);
        expect(st.mtimeMs).toBe(Math.floor(d.mtimeMs / 1000) * 1000);
      }
      expect((await readdir(into, { recursive: true })).sort()).toEqual(
        [...Object.keys(dirs), ...Object.keys(files)].sort(),
      );
    });
  });

  test('DOS times are clamped to 1980–2107; the extended timestamp keeps the real second', async () => {
    const old = Date.UTC(1975, 5, 1, 12, 0, 1, 500);
    const { path } = await writeZip(async (zip) => {
      await zip.addBytes('old.txt', Buffer.from('old'), { mtimeMs: old, mode: FILE | 0o644 });
      await zip.addBytes('far.txt', Buffer.from('far'), { mtimeMs: Date.UTC(2150, 0, 1), mode: FILE | 0o644 });
    });
    const { entries } = await readWithYauzl(path);
    const [a, b] = entries.map((e) => e.entry);
    expect(dosTime(a)?.getTime()).toBe(new Date(1980, 0, 1, 0, 0, 0).getTime());
    expect(a?.getLastModDate().getTime()).toBe(Math.floor(old / 1000) * 1000);
    expect(dosTime(b)?.getTime()).toBe(new Date(2107, 11, 31, 23, 59, 58).getTime());
  });

  test('modes without type bits get those of what was added', async () => {
    const { path } = await writeZip(async (zip) => {
      await zip.addDirectory('d', { mtimeMs: ODD_MTIME, mode: 0o750 });
      await zip.addBytes('d/f', Buffer.from('f'), { mtimeMs: ODD_MTIME, mode: 0o640 });
      await zip.addStream('d/s', chunks(Buffer.from('s'), [1]), { mtimeMs: ODD_MTIME, mode: 0o604, expectedSize: 1 });
    });
    const { entries } = await readWithYauzl(path);
    expect(entries.map((e) => (e.entry.externalFileAttributes >>> 16).toString(8))).toEqual(['40750', '100640', '100604']);
    // The MS-DOS directory attribute too, for readers that ignore Unix modes.
    expect(entries.map((e) => e.entry.externalFileAttributes & 0x10)).toEqual([0x10, 0, 0]);
  });

  test('streamed entries: data descriptors with their signature, CRC and sizes; the bytes as given', async () => {
    const big = bytes(3 * 1024 * 1024 + 17, 3);
    const mid = bytes(70_001, 4);
    const { path } = await writeZip(async (zip) => {
      await zip.addBytes('before.txt', Buffer.from('before'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
      // Chunk sizes on both sides of the writer's pass-through threshold.
      expect(await zip.addStream('big.bin', chunks(big, [1_000_000, 100, 65_536, 3]), { mtimeMs: ODD_MTIME, mode: FILE | 0o640, expectedSize: big.length })).toBe(big.length);
      expect(await zip.addStream('mid.bin', chunks(mid, [4096]), { mtimeMs: EVEN_MTIME, mode: FILE | 0o600, expectedSize: mid.length })).toBe(mid.length);
      expect(await zip.addStream('none.bin', chunks(Buffer.alloc(0), [1]), { mtimeMs: EVEN_MTIME, mode: FILE | 0o644, expectedSize: 0 })).toBe(0);
      await zip.addBytes('after.txt', Buffer.from('after'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
    });
    const archive = await readFile(path);
    const { entries } = await readWithYauzl(path);
    const want: Record<string, Buffer> = { 'before.txt': Buffer.from('before'), 'big.bin': big, 'mid.bin': mid, 'none.bin': Buffer.alloc(0), 'after.txt': Buffer.from('after') };
    expect(entries.map((e) => e.entry.fileName)).toEqual(Object.keys(want));
    for (const { entry, data } of entries) {
      const expected = want[entry.fileName] as Buffer;
      expectBytes(data, expected, entry.fileName);
      const local = localHeader(archive, entry.relativeOffsetOfLocalHeader);
      const streamed = entry.fileName.endsWith('.bin');
      expect(local.flags & 0x8).toBe(streamed ? 0x8 : 0);
      expect(entry.generalPurposeBitFlag & 0x8).toBe(streamed ? 0x8 : 0);
      expect(utSeconds(local.extras.get(0x5455))).toBe(Math.floor(entry.getLastModDate().getTime() / 1000));
      if (!streamed) continue;
      expect({ crc: local.crc, compressed: local.compressed, uncompressed: local.uncompressed }).toEqual({ crc: 0, compressed: 0, uncompressed: 0 });
      const d = local.dataStart + expected.length;
      expect(archive.readUInt32LE(d)).toBe(0x08074b50);
      expect(archive.readUInt32LE(d + 4)).toBe(crc32(expected));
      expect(archive.readUInt32LE(d + 8)).toBe(expected.length);
      expect(archive.readUInt32LE(d + 12)).toBe(expected.length);
      expect(entry.crc32).toBe(crc32(expected));
    }
    await withUnzip(async () => {
      const into = await unzipInto(path);
      for (const [name, data] of Object.entries(want)) expectBytes(await readFile(join(into, name)), data, name);
      expect((await stat(join(into, 'big.bin'))).mode & 0o777).toBe(0o640);
      expect((await stat(join(into, 'big.bin'))).mtimeMs).toBe(Math.floor(ODD_MTIME / 1000) * 1000);
    });
  });

  test('a stream shorter or longer than announced throws ZipSizeMismatchError, and the writer stays failed', async () => {
    const short = new ZipWriter(() => undefined);
    await short.addBytes('ok.txt', Buffer.from('ok'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
    const shortError = await short.addStream('short.bin', chunks(bytes(1000, 1), [300]), { mtimeMs: ODD_MTIME, mode: FILE | 0o644, expectedSize: 1001 }).catch((e: unknown) => e);
    expect(shortError).toBeInstanceOf(ZipSizeMismatchError);
    expect(shortError).toMatchObject({ entry: 'short.bin', expected: 1001, actual: 1000 });
    await expect(short.addBytes('later.txt', Buffer.from('x'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 })).rejects.toBe(shortError);
    await expect(short.end()).rejects.toBe(shortError);

    let read = 0;
    async function* endless(): AsyncIterable<Uint8Array> {
      for (;;) {
        read += 1;
        yield Buffer.alloc(100);
      }
    }
    const long = new ZipWriter(() => undefined);
    const longError = await long.addStream('long.bin', endless(), { mtimeMs: ODD_MTIME, mode: FILE | 0o644, expectedSize: 250 }).catch((e: unknown) => e);
    expect(longError).toMatchObject({ name: 'ZipSizeMismatchError', expected: 250, actual: 300 });
    expect(read).toBe(3); // stopped at the first byte too many
  });

  test('forceZip64: every size, offset and count in Zip64 form, readable by yauzl and unzip', async () => {
    const streamed = bytes(200_000, 5);
    const { path } = await writeZip(
      async (zip) => {
        await zip.addDirectory('d/', { mtimeMs: EVEN_MTIME, mode: DIR | 0o755 });
        await zip.addBytes('d/a.txt', Buffer.from('alpha'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
        await zip.addStream('d/s.bin', chunks(streamed, [70_000, 10]), { mtimeMs: ODD_MTIME, mode: FILE | 0o600, expectedSize: streamed.length });
        await zip.addBytes('d/ñ.txt', Buffer.from('eñe'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
      },
      { forceZip64: true },
    );
    const archive = await readFile(path);
    const ends = endRecords(archive);
    expect(ends.classic).toEqual({ entries: 0xffff, cdSize: 0xffffffff, cdOffset: 0xffffffff });
    expect(ends.zip64).toMatchObject({ entries: 4 });
    expect(ends.zip64!.cdOffset + ends.zip64!.cdSize).toBe(ends.zip64!.record);
    const { entries } = await readWithYauzl(path);
    expect(entries.map((e) => e.entry.fileName)).toEqual(['d/', 'd/a.txt', 'd/s.bin', 'd/ñ.txt']);
    expect(entries[1]?.data?.toString()).toBe('alpha');
    expectBytes(entries[2]?.data, streamed);
    expect(entries[3]?.data?.toString()).toBe('eñe');
    for (const { entry } of entries) {
      expect(entry.versionNeededToExtract).toBe(45);
      const local = localHeader(archive, entry.relativeOffsetOfLocalHeader);
      expect(local.version).toBe(45);
      expect(local.compressed).toBe(0xffffffff);
      expect(local.uncompressed).toBe(0xffffffff);
      const z = local.extras.get(0x0001);
      expect(z?.length).toBe(16);
      const size = entry.fileName === 'd/s.bin' ? 0 : entry.uncompressedSize; // a descriptor follows: zero here
      expect([Number(z!.readBigUInt64LE(0)), Number(z!.readBigUInt64LE(8))]).toEqual([size, size]);
      if (entry.fileName === 'd/s.bin') {
        // Zip64 local header: the descriptor has 8-byte sizes.
        const d = local.dataStart + streamed.length;
        expect(archive.readUInt32LE(d)).toBe(0x08074b50);
        expect(archive.readUInt32LE(d + 4)).toBe(crc32(streamed));
        expect([Number(archive.readBigUInt64LE(d + 8)), Number(archive.readBigUInt64LE(d + 16))]).toEqual([streamed.length, streamed.length]);
        expect(archive.readUInt32LE(d + 24)).toBe(0x04034b50); // the next entry's local header
      }
    }
    await withUnzip(async () => {
      const into = await unzipInto(path);
      expectBytes(await readFile(join(into, 'd/s.bin')), streamed);
      expect((await readFile(join(into, 'd/ñ.txt'))).toString()).toBe('eñe');
      expect((await stat(join(into, 'd/a.txt'))).mtimeMs).toBe(Math.floor(ODD_MTIME / 1000) * 1000);
    });
  });

  test('a real Zip64 archive: a 5 GiB streamed entry and an entry past 4 GiB (streamed through, never stored)', async () => {
    const GiB = 1024 * 1024 * 1024;
    const zeros = Buffer.alloc(8 * 1024 * 1024);
    const hugeSize = 5 * GiB;
    // Everything but the huge entry's data is kept, where it lands; the data is known zeros.
    const kept: Array<{ at: number; data: Buffer }> = [];
    let at = 0;
    const zip = new ZipWriter((chunk) => {
      if (chunk !== zeros) kept.push({ at, data: Buffer.from(chunk) });
      at += chunk.length;
    });
    async function* huge(): AsyncIterable<Uint8Array> {
      for (let n = 0; n < hugeSize; n += zeros.length) yield zeros;
    }
    await zip.addBytes('before.txt', Buffer.from('before'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
    expect(await zip.addStream('huge.bin', huge(), { mtimeMs: ODD_MTIME, mode: FILE | 0o644, expectedSize: hugeSize })).toBe(hugeSize);
    await zip.addBytes('after.txt', Buffer.from('after'), { mtimeMs: EVEN_MTIME, mode: FILE | 0o600 });
    await zip.addDirectory('d', { mtimeMs: EVEN_MTIME, mode: DIR | 0o755 });
    const { bytes: total } = await zip.end();
    expect(total).toBe(at);
    expect(total).toBeGreaterThan(hugeSize);

    const bytesAt = (start: number, end: number): Buffer => {
      const out = Buffer.alloc(end - start);
      for (const k of kept) {
        const from = Math.max(start, k.at);
        const to = Math.min(end, k.at + k.data.length);
        if (from < to) k.data.copy(out, from - start, from - k.at, to - k.at);
      }
      return out;
    };
    class SparseReader extends yauzl.RandomAccessReader {
      override _readStreamForRange(start: number, end: number) {
        return Readable.from([bytesAt(start, end)]);
      }
    }
    const z = await new Promise<yauzl.ZipFile>((resolve, reject) =>
      yauzl.fromRandomAccessReader(new SparseReader(), total, { lazyEntries: true, autoClose: false, validateEntrySizes: true }, (e, f) => (e ? reject(e) : resolve(f))),
    );
    const entries: yauzl.Entry[] = [];
    await new Promise<void>((resolve, reject) => {
      z.on('entry', (e: yauzl.Entry) => {
        entries.push(e);
        z.readEntry();
      });
      z.on('end', () => resolve());
      z.on('error', reject);
      z.readEntry();
    });
    expect(entries.map((e) => [e.fileName, e.uncompressedSize, e.versionNeededToExtract])).toEqual([
      ['before.txt', 6, 20],
      ['huge.bin', hugeSize, 45],
      ['after.txt', 5, 45], // its offset needs Zip64
      ['d/', 0, 45],
    ]);
    let crc = 0;
    for (let n = 0; n < hugeSize; n += zeros.length) crc = crc32(zeros, crc);
    expect(entries[1]?.crc32).toBe(crc);
    const after = entries[2] as yauzl.Entry;
    expect(after.relativeOffsetOfLocalHeader).toBeGreaterThan(hugeSize);
    const afterData = await new Promise<Buffer>((resolve, reject) =>
      z.openReadStream(after, (e, stream) => {
        if (e) return reject(e);
        const parts: Buffer[] = [];
        stream.on('data', (c: Buffer) => parts.push(c));
        stream.on('end', () => resolve(Buffer.concat(parts)));
        stream.on('error', reject);
      }),
    );
    expect(afterData.toString()).toBe('after');
    z.close();
    // The huge entry's local header announces Zip64 (sizes to follow), its descriptor has 8-byte sizes.
    const hugeOffset = entries[1]!.relativeOffsetOfLocalHeader;
    const local = localHeader(bytesAt(hugeOffset, hugeOffset + 200), 0);
    expect(local).toMatchObject({ version: 45, flags: 0x808, crc: 0, compressed: 0xffffffff, uncompressed: 0xffffffff });
    expect(local.extras.get(0x0001)).toEqual(Buffer.alloc(16));
    const d = hugeOffset + local.dataStart + hugeSize;
    const descriptor = bytesAt(d, d + 24);
    expect(descriptor.readUInt32LE(0)).toBe(0x08074b50);
    expect(descriptor.readUInt32LE(4)).toBe(crc);
    expect([Number(descriptor.readBigUInt64LE(8)), Number(descriptor.readBigUInt64LE(16))]).toEqual([hugeSize, hugeSize]);
    // The small entry before it stays classic, in its local header too.
    expect(localHeader(bytesAt(0, 100), 0)).toMatchObject({ version: 20, compressed: 6, uncompressed: 6 });
    const ends = endRecords(bytesAt(total - 98, total), total - 98);
    expect(ends.classic).toEqual({ entries: 0xffff, cdSize: 0xffffffff, cdOffset: 0xffffffff });
    expect(ends.zip64).toMatchObject({ entries: 4 });
    expect(ends.zip64!.cdOffset).toBeGreaterThan(hugeSize);
    expect(ends.zip64!.cdOffset + ends.zip64!.cdSize).toBe(ends.zip64!.record);
  }, 120_000);

  test('65,535 entries and more take the Zip64 end records; 65,534 do not', async () => {
    const names = (n: number) => Array.from({ length: n }, (_, i) => `f/${i.toString(36)}`);
    const pack = (n: number) =>
      writeZip(async (zip) => {
        await zip.addDirectory('f', { mtimeMs: EVEN_MTIME, mode: DIR | 0o755 });
        const one = Buffer.from('x');
        for (const name of names(n - 1)) await zip.addBytes(name, one, { mtimeMs: EVEN_MTIME, mode: FILE | 0o644 });
      });
    const below = await pack(0xfffe);
    expect(endRecords(await readFile(below.path))).toMatchObject({ classic: { entries: 0xfffe }, zip64: null });
    expect((await readWithYauzl(below.path, false)).entryCount).toBe(0xfffe);

    // Exactly 65,535: the classic count field would hold it, but 0xFFFF is the Zip64 marker.
    const at = await pack(0xffff);
    expect(endRecords(await readFile(at.path))).toMatchObject({ classic: { entries: 0xffff }, zip64: { entries: 0xffff } });
    expect((await readWithYauzl(at.path, false)).entryCount).toBe(0xffff);

    const many = await pack(70_000);
    const ends = endRecords(await readFile(many.path));
    expect(ends.classic.entries).toBe(0xffff);
    expect(ends.zip64?.entries).toBe(70_000);
    const read = await readWithYauzl(many.path, false);
    expect(read.entryCount).toBe(70_000);
    expect(read.entries.map((e) => e.entry.fileName).join('\n') === ['f/', ...names(69_999)].join('\n')).toBe(true);
    await withUnzip(() => {
      const t = unzip(['-t', '-qq', many.path]);
      expect(t.stderr).toBe('');
      expect(t.status).toBe(0);
    });
  });

  test('200,000 entries cost linear time and little memory', async () => {
    let bytes = 0;
    const zip = new ZipWriter((chunk) => {
      bytes += chunk.length;
    });
    const one = Buffer.from('x');
    const name = (i: number) => `some folder/clip_${String(i).padStart(6, '0')}.wav`;
    const heapBefore = process.memoryUsage().heapUsed;
    const started = performance.now();
    for (let i = 0; i < 200_000; i++) await zip.addBytes(name(i), one, { mtimeMs: ODD_MTIME + i, mode: FILE | 0o644 });
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    const summary = await zip.end();
    const seconds = (performance.now() - started) / 1000;
    // ~0.4 s here; a scan over earlier entries for each new one would take about a minute.
    expect(seconds).toBeLessThan(10);
    // Each entry: a local header (30 B, the name, a 9-byte timestamp field), 1 B of data, a
    // central record (46 B, the name, the timestamp field); then the Zip64 and classic end records.
    const n = Buffer.byteLength(name(0));
    expect(summary).toEqual({ entries: 200_000, bytes: 200_000 * (30 + n + 9 + 1 + 46 + n + 9) + 56 + 20 + 22 });
    expect(bytes).toBe(summary.bytes);
    // The central directory is kept as serialized bytes (~17 MB), not as objects per entry.
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
  });
});

describe('ZipWriter: contract', () => {
  test('backpressure: a slow sink holds every add, one sink call at a time, and memory stays bounded', async () => {
    const BLOCK = 1024 * 1024;
    let inSink = 0;
    let maxInSink = 0;
    let accepted = 0;
    const received: Buffer[] = [];
    // A destination that takes a chunk every few milliseconds, through a stream with a small buffer.
    const out = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, done) {
        setTimeout(() => {
          received.push(Buffer.from(chunk));
          accepted += chunk.length;
          done();
        }, 2);
      },
    });
    let maxBuffered = 0;
    const zip = new ZipWriter((chunk) => {
      inSink += 1;
      maxInSink = Math.max(maxInSink, inSink);
      const more = out.write(chunk);
      maxBuffered = Math.max(maxBuffered, out.writableLength);
      if (more) {
        inSink -= 1;
        return;
      }
      return new Promise<void>((resolve) =>
        out.once('drain', () => {
          inSink -= 1;
          resolve();
        }),
      );
    });
    const payload = bytes(8 * 1024 * 1024, 9);
    const checkBound = () => {
      // Whatever the writer has produced but the destination has not taken: its block and
      // one large piece at most, plus the stream's own buffer.
      expect(zip.bytes - accepted).toBeLessThanOrEqual(BLOCK + 512 * 1024 + out.writableLength + 64 * 1024);
    };
    await zip.addStream('stream.bin', chunks(payload, [512 * 1024, 1000]), { mtimeMs: ODD_MTIME, mode: FILE | 0o644, expectedSize: payload.length });
    checkBound();
    for (let i = 0; i < 40; i++) {
      await zip.addBytes(`small/${i}`, payload.subarray(i * 100_000, i * 100_000 + 90_000), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
      checkBound();
    }
    // While the sink holds a chunk, the add that produced it does not resolve.
    const waiting: Array<() => void> = [];
    const held = new ZipWriter(() => new Promise<void>((resolve) => waiting.push(resolve)));
    let done = false;
    const adding = held.addBytes('x.bin', Buffer.alloc(200_000), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 }).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    expect(waiting).toHaveLength(1); // the header; the data is not handed over before the sink took it
    await expect(held.addBytes('y', Buffer.alloc(1), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 })).rejects.toThrow(/in progress/);
    let calls = 0;
    while (!done) {
      waiting.shift()?.();
      calls += 1;
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(calls).toBe(2); // header, then the 200,000 bytes as given
    await adding;

    await zip.end();
    out.end();
    await finished(out);
    expect(maxInSink).toBe(1);
    expect(maxBuffered).toBeLessThanOrEqual(64 * 1024 + BLOCK);
    // And what went through is a whole, readable archive.
    const path = join(dir, 'slow.zip');
    const file = createWriteStream(path);
    file.end(Buffer.concat(received));
    await finished(file);
    const { entries } = await readWithYauzl(path);
    expect(entries).toHaveLength(41);
    expectBytes(entries[0]?.data, payload);
    expectBytes(entries[40]?.data, payload.subarray(39 * 100_000, 39 * 100_000 + 90_000));
  });

  test('released blocks are filled again, and never before the sink released every slice of them', async () => {
    // A sink holding chunks, as a stream's buffer does, and releasing them in bursts (as a
    // write of several queued chunks at once does): what it was handed must be unchanged
    // until it releases it.
    const HOLD = 6;
    const held: Array<{ chunk: Buffer; copy: Buffer; release: () => void }> = [];
    const received: Buffer[] = [];
    const memories = new Set<ArrayBufferLike>();
    let changed = 0;
    const letGo = () => {
      const oldest = held.shift();
      if (!oldest) return;
      if (!oldest.chunk.equals(oldest.copy)) changed += 1;
      oldest.release();
      oldest.release(); // twice: counted once
    };
    const zip = new ZipWriter((chunk, release) => {
      memories.add(chunk.buffer);
      received.push(Buffer.from(chunk));
      held.push({ chunk, copy: Buffer.from(chunk), release });
      if (held.length > HOLD) while (held.length > 0) letGo();
    });
    const files = Array.from({ length: 1500 }, (_, i) => bytes(i % 100 === 99 ? 200_000 : 16 * 1024 + (i % 7), 100 + i));
    for (const [i, data] of files.entries()) {
      // Copied in, as the packer adds small files read into memory it lends again; now and
      // then a larger one handed over as is, which hands over a block only partly filled.
      await zip.addBytes(`f/${i}`, data, { mtimeMs: ODD_MTIME, mode: FILE | 0o644, copy: data.byteLength < 100_000 });
    }
    await zip.end();
    while (held.length > 0) letGo();
    expect(changed).toBe(0);
    // ~25 MiB of output through a handful of blocks: those held, those spare, the one
    // filled (and the 15 larger files, handed over as they are).
    expect(zip.bytes).toBeGreaterThan(25 * 1024 * 1024);
    expect(memories.size).toBeLessThanOrEqual(HOLD + 8 + 15);

    const path = join(dir, 'reused.zip');
    const file = createWriteStream(path);
    file.end(Buffer.concat(received));
    await finished(file);
    const { entries } = await readWithYauzl(path);
    expect(entries).toHaveLength(files.length);
    for (const [i, e] of entries.entries()) expectBytes(e.data, files[i] as Buffer, e.entry.fileName);
  });

  test('a sink that never releases keeps every block: nothing it holds is written over', async () => {
    const held: Array<{ chunk: Buffer; copy: Buffer }> = [];
    const zip = new ZipWriter((chunk) => {
      held.push({ chunk, copy: Buffer.from(chunk) });
    });
    for (let i = 0; i < 400; i++) await zip.addBytes(`f/${i}`, bytes(16 * 1024, 3000 + i), { mtimeMs: ODD_MTIME, mode: FILE | 0o644, copy: true });
    await zip.end();
    expect(held.filter((h) => !h.chunk.equals(h.copy))).toHaveLength(0);
    expect(new Set(held.map((h) => h.chunk.buffer)).size).toBeGreaterThanOrEqual(6);
  });

  test('copy: the caller may reuse its memory once the add resolves, whatever the size', async () => {
    // A sink that keeps what it is given, as a stream's buffer does until the disk takes it.
    const held: Buffer[] = [];
    const zip = new ZipWriter((chunk) => {
      held.push(chunk);
    });
    const reused = Buffer.alloc(1024 * 1024);
    const originals: Buffer[] = [];
    // Below and above the size handed to the sink as given, and a whole output block.
    for (const [i, size] of [1000, 64 * 1024, 300_000, 1024 * 1024].entries()) {
      const data = bytes(size, 20 + i);
      originals.push(data);
      data.copy(reused);
      await zip.addBytes(`copied/${i}`, reused.subarray(0, size), { mtimeMs: ODD_MTIME, mode: FILE | 0o644, copy: true });
      reused.fill(0xee); // the caller's next use of its buffer
    }
    // Without it, data of 64 KiB or more is handed over as is: the caller's change shows.
    const shared = bytes(100_000, 30);
    const before = Buffer.from(shared);
    await zip.addBytes('shared', shared, { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
    shared.fill(0xee);
    await zip.end();

    const path = join(dir, 'copied.zip');
    const file = createWriteStream(path);
    file.end(Buffer.concat(held));
    await finished(file);
    const { entries } = await readWithYauzl(path, false);
    expect(entries.map((e) => e.entry.fileName)).toEqual(['copied/0', 'copied/1', 'copied/2', 'copied/3', 'shared']);
    const archive = await readFile(path);
    for (const [i, data] of originals.entries()) {
      const entry = entries[i]?.entry as { relativeOffsetOfLocalHeader: number; crc32: number };
      const local = localHeader(archive, entry.relativeOffsetOfLocalHeader);
      expectBytes(archive.subarray(local.dataStart, local.dataStart + data.length), data);
      expect(entry.crc32).toBe(crc32(data));
    }
    const last = localHeader(archive, (entries[4]?.entry as { relativeOffsetOfLocalHeader: number }).relativeOffsetOfLocalHeader);
    // The CRC was taken before the change; the bytes are the changed ones.
    expect(archive.subarray(last.dataStart, last.dataStart + 100_000).equals(before)).toBe(false);
  });

  test('unsafe names are refused before anything is written; the writer stays usable', async () => {
    const { path } = await writeZip(async (zip) => {
      const meta = { mtimeMs: ODD_MTIME, mode: FILE | 0o644 };
      const bad = ['', '/etc/passwd', '../x', 'a/../../x', 'a/..', '..', 'a\\b', 'a\0b', 'a//b', './a', 'a/./b', 'dir/', '\ud800x'];
      for (const name of bad) {
        const before = zip.bytes;
        await expect(zip.addBytes(name, Buffer.from('evil'), meta), JSON.stringify(name)).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE_ENTRY' });
        await expect(zip.addStream(name, chunks(Buffer.from('evil'), [4]), { ...meta, expectedSize: 4 })).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE_ENTRY' });
        expect(zip.bytes).toBe(before);
      }
      for (const name of ['/abs', '../up', 'a\\b', 'a/../b']) {
        await expect(zip.addDirectory(name, { mtimeMs: ODD_MTIME, mode: DIR | 0o755 })).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE_ENTRY' });
      }
      await zip.addDirectory('ok/', { mtimeMs: ODD_MTIME, mode: DIR | 0o755 });
      await zip.addBytes('ok/..fine', Buffer.from('dots in a name are fine'), meta);
      expect(zip.entries).toBe(2);
    });
    const { entries } = await readWithYauzl(path);
    expect(entries.map((e) => e.entry.fileName)).toEqual(['ok/', 'ok/..fine']);
  });

  test('a failing sink fails the add and every later call with its error', async () => {
    const boom = new Error('disk gone');
    let calls = 0;
    const zip = new ZipWriter(async () => {
      calls += 1;
      throw boom;
    });
    // Gathered in the block: the sink is not called yet.
    await zip.addBytes('a', Buffer.from('a'), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 });
    expect(calls).toBe(0);
    await expect(zip.addBytes('b', Buffer.alloc(100_000), { mtimeMs: ODD_MTIME, mode: FILE | 0o644 })).rejects.toBe(boom);
    await expect(zip.addDirectory('c', { mtimeMs: ODD_MTIME, mode: DIR | 0o755 })).rejects.toBe(boom);
    await expect(zip.end()).rejects.toBe(boom);
    expect(calls).toBe(1);
  });
});
