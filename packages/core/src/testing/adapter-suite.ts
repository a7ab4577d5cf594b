import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type * as Vitest from 'vitest';
import type { Adapter } from '../adapter.js';
import type { ErrorCode } from '../errors.js';
import { createHasher } from '../hash/hasher.js';
import { Portal } from '../portal.js';
import { scan } from '../scan.js';
import { ZipWriter } from '../zip/zip-writer.js';

/** The parts of vitest the suite uses; pass `{ describe, test, expect, beforeEach, afterEach }`. */
export type TestApi = Pick<typeof Vitest, 'describe' | 'test' | 'expect' | 'beforeEach' | 'afterEach'>;

/** What the suite needs from the backend under test; the factory makes a fresh one per test. */
export interface AdapterFixture {
  /** Connected, over an empty root. */
  adapter: Adapter;
  /** Create a symlink inside the backend at `path` (root-relative) pointing to the raw `target`. */
  symlink?(target: string, path: string): Promise<void>;
  /** An absolute backend path outside the root that holds a file `secret.txt`, for escape attacks. */
  outside?: string;
  /** Remove everything the fixture made (the root, `outside`) and close the adapter. */
  cleanup(): Promise<void>;
}

/** Test groups an adapter can leave out, e.g. slow ones on a remote backend. */
export interface AdapterSuiteSkips {
  /** The multi-MiB round trip. */
  largeFile?: boolean;
  /** The concurrent writes. */
  concurrency?: boolean;
  /** Path confinement attacks through {@link Portal}. */
  confinement?: boolean;
  /** `scan()` over the adapter. */
  scan?: boolean;
}

export interface AdapterSuiteOptions {
  /** Shown in the suite title, e.g. `fs` or `sftp`. */
  name: string;
  skip?: AdapterSuiteSkips;
  /** Size of the large-file round trip (default 6 MiB and a few bytes, so chunks do not line up). */
  largeFileBytes?: number;
  /** How many files to write at once in the concurrency test (default 32). */
  concurrentWrites?: number;
}

type SkipFn = (note?: string) => never;

/**
 * Register the adapter conformance suite: every adapter must pass it, and it checks each
 * declared capability against behaviour. Backend differences are options, not copies of
 * the tests.
 *
 * @example
 * ```ts
 * import { describe, test, expect, beforeEach, afterEach } from 'vitest';
 * import { describeAdapterConformance } from '@ketter/core/testing';
 *
 * describeAdapterConformance({ describe, test, expect, beforeEach, afterEach }, async () => {
 *   const adapter = new MyAdapter({ root: await makeEmptyRoot() });
 *   await adapter.connect();
 *   return { adapter, cleanup: () => adapter.close() };
 * }, { name: 'my-backend' });
 * ```
 */
export function describeAdapterConformance(api: TestApi, factory: () => Promise<AdapterFixture>, options: AdapterSuiteOptions): void {
  const { describe, test, expect, beforeEach, afterEach } = api;
  const skip = options.skip ?? {};
  let fx: AdapterFixture;
  const ad = (): Adapter => fx.adapter;

  const expectCode = async (promise: Promise<unknown>, code: ErrorCode): Promise<void> => {
    await expect(promise).rejects.toMatchObject({ name: 'KetterError', code });
  };
  const needSymlinks = (skipTest: SkipFn): ((target: string, path: string) => Promise<void>) => {
    if (!fx.symlink) skipTest('the fixture cannot create symlinks');
    if (!ad().capabilities.symlinks) skipTest('the adapter does not report symlinks');
    return fx.symlink.bind(fx);
  };
  const needOutside = (skipTest: SkipFn): string => {
    if (fx.outside === undefined) skipTest('the fixture has no directory outside the root');
    return fx.outside;
  };

  describe(`adapter conformance: ${options.name}`, () => {
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx?.cleanup();
    });

    describe('identity', () => {
      test('declares kind, id, an absolute root and complete capabilities', () => {
        const a = ad();
        expect(a.kind).toMatch(/^[a-z0-9-]+$/);
        expect(typeof a.id).toBe('string');
        expect(a.id.length).toBeGreaterThan(0);
        expect(a.root.startsWith('/')).toBe(true);
        const c = a.capabilities;
        for (const key of ['statfs', 'fsync', 'serverSideExtract', 'setTimes', 'setMode', 'symlinks'] as const) {
          expect(typeof c[key]).toBe('boolean');
        }
        expect(Array.isArray(c.serverSideHash)).toBe(true);
        expect(c.mtimePrecisionMs).toBeGreaterThan(0);
      });

      test('the root stats as a directory and starts empty', async () => {
        expect((await ad().stat(''))?.kind).toBe('directory');
        expect(await collect(ad().list(''))).toEqual([]);
      });
    });

    describe('stat', () => {
      test('a file: kind, size, mtime and mode', async () => {
        await writeBytes(ad(), 'a.txt', 'hello');
        const st = await ad().stat('a.txt');
        expect(st).toMatchObject({ kind: 'file', size: 5 });
        expect(Number.isFinite(st?.mtimeMs)).toBe(true);
        expect(st?.mtimeMs).toBeGreaterThan(0);
        expect(st?.mode).toBeGreaterThanOrEqual(0);
        expect(st?.mode).toBeLessThanOrEqual(0o7777);
      });

      test('a directory', async () => {
        await ad().mkdir('d');
        expect((await ad().stat('d'))?.kind).toBe('directory');
      });

      test('missing paths are null, also below a missing parent or a file', async () => {
        await writeBytes(ad(), 'f', 'x');
        expect(await ad().stat('nope')).toBeNull();
        expect(await ad().stat('no/such/parent')).toBeNull();
        expect(await ad().stat('f/child')).toBeNull();
      });
    });

    describe('list', () => {
      const tree: Record<string, string | null> = {
        'session/a.wav': 'aaaa',
        'session/.hidden': 'h',
        'session/.dotdir/inner.txt': 'in',
        'session/with space.txt': 'spaces',
        'session/Mézcla final/voz 01 ñ.wav': 'voz',
        'session/日本語.wav': 'nihongo',
        // Odd but legal names: a listing that drops them loses files without a word.
        'session/line\nbreak\r.wav': 'nl',
        'session/100% [take 2] *.wav': 'pct',
        'session/nl\ndir/inner.wav': 'inner',
        'session/deep/er/est/file.bin': 'deep',
        'session/empty': null,
        'session/deep/empty too': null,
      };
      const build = async (): Promise<void> => {
        for (const [path, content] of Object.entries(tree)) {
          if (content === null) await ad().mkdir(path);
          else {
            await ad().mkdir(parentOf(path));
            await writeBytes(ad(), path, content);
          }
        }
      };

      test('recursive: files, directories, dotfiles, spaces, non-ASCII names, empty dirs', async () => {
        await build();
        const entries = await collect(ad().list('session'));
        const got = entries.map((e) => `${e.kind}:${e.path.normalize('NFC')}`).sort();
        const want = new Set<string>();
        for (const [path, content] of Object.entries(tree)) {
          const rel = path.slice('session/'.length);
          want.add(`${content === null ? 'directory' : 'file'}:${rel}`);
          for (let p = parentOf(rel); p !== ''; p = parentOf(p)) want.add(`directory:${p}`);
        }
        expect(got).toEqual([...want].sort());
        for (const e of entries) {
          expect(e.path.startsWith('/') || e.path.split('/').includes('..')).toBe(false);
          // What a listing names, the adapter must find again.
          expect((await ad().stat(`session/${e.path}`))?.kind).toBe(e.kind);
          if (e.kind === 'file') expect(e.size).toBe(Buffer.byteLength(tree[`session/${e.path.normalize('NFC')}`] ?? ''));
        }
      });

      test('paths are relative to the listed directory', async () => {
        await build();
        const paths = (await collect(ad().list('session/deep'))).map((e) => e.path).sort();
        expect(paths).toEqual(['empty too', 'er', 'er/est', 'er/est/file.bin']);
      });

      test('directories of more entries than one listing page: every entry exactly once', async () => {
        // Remote listings come in pages (about 100 entries from OpenSSH) and may be read
        // several pages and directories at a time; a lost or doubled page shows here.
        const want: string[] = [];
        for (let i = 0; i < 1250; i++) want.push(`big/f${String(i).padStart(4, '0')}`);
        for (let d = 0; d < 6; d++) for (let i = 0; i < 150; i++) want.push(`big/d${d}/g${i}`);
        for (let d = 0; d < 6; d++) await ad().mkdir(`paged/big/d${d}`);
        for (let at = 0; at < want.length; at += 64) {
          await Promise.all(want.slice(at, at + 64).map((p) => writeBytes(ad(), `paged/${p}`, p)));
        }
        const files = (await collect(ad().list('paged'))).filter((e) => e.kind === 'file');
        expect(files.map((e) => e.path).sort()).toEqual([...want].sort());
        for (const e of files) expect(e.size).toBe(Buffer.byteLength(e.path));
      }, 120_000);

      test('an empty directory lists nothing', async () => {
        await ad().mkdir('void');
        expect(await collect(ad().list('void'))).toEqual([]);
      });

      test('a missing directory fails with SOURCE_NOT_FOUND', async () => {
        await expectCode(collect(ad().list('nope')), 'SOURCE_NOT_FOUND');
      });

      test('symlinks are reported as symlinks and never followed', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await ad().mkdir('t/target/sub');
        await writeBytes(ad(), 't/target/sub/x.txt', 'x');
        await ad().mkdir('s');
        await link('../t/target', 's/to-dir');
        await link('nowhere', 's/broken');
        const entries = await collect(ad().list('s'));
        expect(entries.map((e) => [e.path, e.kind]).sort()).toEqual([
          ['broken', 'symlink'],
          ['to-dir', 'symlink'],
        ]);
      });
    });

    describe('read and write', () => {
      test('round trip of a small and an empty file', async () => {
        await writeBytes(ad(), 'small.txt', 'Ketter ✓');
        await writeBytes(ad(), 'empty', '');
        expect((await readBytes(ad(), 'small.txt')).toString('utf8')).toBe('Ketter ✓');
        expect((await readBytes(ad(), 'empty')).length).toBe(0);
        expect(await ad().stat('empty')).toMatchObject({ kind: 'file', size: 0 });
      });

      test.skipIf(skip.largeFile)('round trip of a multi-MiB file, streamed in chunks', async () => {
        const size = options.largeFileBytes ?? 6 * 1024 * 1024 + 12_345;
        const chunk = randomBytes(256 * 1024 + 7);
        const written = createHash('sha256');
        async function* source(): AsyncGenerator<Buffer> {
          for (let sent = 0; sent < size; sent += chunk.length) {
            const part = chunk.subarray(0, Math.min(chunk.length, size - sent));
            written.update(part);
            yield part;
          }
        }
        await pipeline(Readable.from(source()), ad().openWrite('big.bin', { highWaterMark: 1024 * 1024 }));
        expect((await ad().stat('big.bin'))?.size).toBe(size);
        const read = createHash('sha256');
        let total = 0;
        for await (const part of ad().openRead('big.bin', { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
          read.update(part);
          total += part.length;
        }
        expect(total).toBe(size);
        expect(read.digest('hex')).toBe(written.digest('hex'));
      });

      test('ranged reads: start and end (inclusive) bytes', async () => {
        const data = Buffer.from('0123456789abcdefghij');
        await writeBytes(ad(), 'r.bin', data);
        const range = async (start?: number, end?: number): Promise<string> =>
          Buffer.concat(await collect(ad().openRead('r.bin', { start, end }) as AsyncIterable<Buffer>)).toString();
        expect(await range(10, 14)).toBe('abcde');
        expect(await range(15)).toBe('fghij');
        expect(await range(undefined, 3)).toBe('0123');
        expect(await range(0, 0)).toBe('0');
        expect(await range(20)).toBe('');
        expect(await range(5, 4)).toBe('');
      });

      test('reading a missing file fails with SOURCE_NOT_FOUND', async () => {
        await expectCode(readBytes(ad(), 'missing.wav'), 'SOURCE_NOT_FOUND');
      });

      test('reading with an aborted signal fails with CANCELLED', async () => {
        await writeBytes(ad(), 'a.txt', 'abc');
        const controller = new AbortController();
        controller.abort(new Error('stop'));
        await expectCode(collect(ad().openRead('a.txt', { signal: controller.signal })), 'CANCELLED');
      });

      test('writing is an exclusive create: DESTINATION_EXISTS, the file untouched', async () => {
        await writeBytes(ad(), 'taken.txt', 'original');
        await expectCode(writeBytes(ad(), 'taken.txt', 'intruder'), 'DESTINATION_EXISTS');
        expect((await readBytes(ad(), 'taken.txt')).toString()).toBe('original');
      });

      test('writing below a missing directory fails', async () => {
        await expect(writeBytes(ad(), 'no/such/dir/f.txt', 'x')).rejects.toMatchObject({ name: 'KetterError' });
      });

      test.skipIf(skip.concurrency)('concurrent writes all land intact', async () => {
        const n = options.concurrentWrites ?? 32;
        await ad().mkdir('many');
        const contents = Array.from({ length: n }, (_, i) => Buffer.concat([Buffer.from(`file ${i}\n`), randomBytes(16 * 1024 + i)]));
        await Promise.all(contents.map((data, i) => writeBytes(ad(), `many/${i}.wav`, data)));
        const back = await Promise.all(contents.map((_, i) => readBytes(ad(), `many/${i}.wav`)));
        back.forEach((data, i) => expect(data.equals(contents[i] as Buffer)).toBe(true));
        expect((await collect(ad().list('many'))).length).toBe(n);
      });
    });

    describe('small-file fast path (readFile / writeFile, where the adapter has them)', () => {
      const needFastPath = (skipTest: SkipFn): { readFile: NonNullable<Adapter['readFile']>; writeFile: NonNullable<Adapter['writeFile']> } => {
        const { readFile, writeFile } = ad();
        if (!readFile || !writeFile) skipTest('the adapter has no readFile/writeFile');
        return { readFile: readFile.bind(ad()), writeFile: writeFile.bind(ad()) };
      };
      // Around the request sizes remote protocols use (32 KiB, 256 KiB) and the 1 MiB limit.
      const SIZES = [0, 1, 1000, 32 * 1024, 32 * 1024 + 1, 100_000, 256 * 1024 + 3, 1024 * 1024];

      test('bytes written by writeFile read back identical through readFile and the stream', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        for (const size of SIZES) {
          const data = randomBytes(size);
          await fast.writeFile(`f${size}.bin`, data);
          expect(Buffer.from(await fast.readFile(`f${size}.bin`)).equals(data)).toBe(true);
          expect((await readBytes(ad(), `f${size}.bin`)).equals(data)).toBe(true);
          expect((await ad().stat(`f${size}.bin`))?.size).toBe(size);
        }
      });

      test('readFile returns what the stream wrote, all of it', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        for (const size of SIZES) {
          const data = randomBytes(size);
          await writeBytes(ad(), `s${size}.bin`, data);
          expect(Buffer.from(await fast.readFile(`s${size}.bin`)).equals(data)).toBe(true);
        }
      });

      test('readFile with a size hint that is wrong still returns the whole file', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        for (const size of SIZES) {
          const data = randomBytes(size);
          await writeBytes(ad(), `h${size}.bin`, data);
          for (const sizeHint of [0, Math.max(0, size - 1), size, size + 1, 300 * 1024]) {
            const got = Buffer.from(await fast.readFile(`h${size}.bin`, { sizeHint }));
            expect({ size, sizeHint, equal: got.equals(data) }).toEqual({ size, sizeHint, equal: true });
          }
        }
      });

      test('writeFile is an exclusive create: DESTINATION_EXISTS, the file untouched', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        await writeBytes(ad(), 'taken.txt', 'original');
        await expectCode(fast.writeFile('taken.txt', Buffer.from('intruder')), 'DESTINATION_EXISTS');
        expect((await readBytes(ad(), 'taken.txt')).toString()).toBe('original');
      });

      test('writeFile gives the file the mode asked for', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        await fast.writeFile('script.sh', Buffer.from('#!/bin/sh\n'), { mode: 0o750 });
        await fast.writeFile('private.txt', Buffer.from('x'), { mode: 0o600 });
        expect(((await ad().stat('script.sh'))?.mode ?? 0) & 0o777).toBe(0o750);
        expect(((await ad().stat('private.txt'))?.mode ?? 0) & 0o777).toBe(0o600);
      });

      test('readFile of a missing file is SOURCE_NOT_FOUND; writeFile below a missing directory fails', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        await expectCode(fast.readFile('missing.wav'), 'SOURCE_NOT_FOUND');
        await expect(fast.writeFile('no/such/dir/f.txt', Buffer.from('x'))).rejects.toMatchObject({ name: 'KetterError' });
      });

      test('files written by writeFile can be synced and renamed like any other', async ({ skip: skipTest }) => {
        const fast = needFastPath(skipTest);
        await ad().mkdir('batch');
        await Promise.all(Array.from({ length: 20 }, (_, i) => fast.writeFile(`batch/${i}.wav`, Buffer.from(`take ${i}`))));
        if (ad().sync) await ad().sync?.([...Array.from({ length: 20 }, (_, i) => `batch/${i}.wav`), 'batch']);
        await ad().rename('batch', 'done');
        expect((await readBytes(ad(), 'done/7.wav')).toString()).toBe('take 7');
      });
    });

    describe('mkdir', () => {
      test('creates missing parents and accepts an existing directory', async () => {
        await ad().mkdir('x/y/z');
        expect((await ad().stat('x/y/z'))?.kind).toBe('directory');
        await ad().mkdir('x/y/z');
        await ad().mkdir('x');
        expect((await ad().stat('x/y'))?.kind).toBe('directory');
      });
    });

    describe('rename (atomic, no-clobber)', () => {
      test('a file moves to a free name', async () => {
        await writeBytes(ad(), 'from.txt', 'payload');
        await ad().mkdir('dir');
        await ad().rename('from.txt', 'dir/to.txt');
        expect(await ad().stat('from.txt')).toBeNull();
        expect((await readBytes(ad(), 'dir/to.txt')).toString()).toBe('payload');
      });

      test('a file onto an existing file: DESTINATION_EXISTS, both untouched', async () => {
        await writeBytes(ad(), 'a.txt', 'A');
        await writeBytes(ad(), 'b.txt', 'B');
        await expectCode(ad().rename('a.txt', 'b.txt'), 'DESTINATION_EXISTS');
        expect((await readBytes(ad(), 'a.txt')).toString()).toBe('A');
        expect((await readBytes(ad(), 'b.txt')).toString()).toBe('B');
      });

      test('a file onto an existing directory: DESTINATION_EXISTS', async () => {
        await writeBytes(ad(), 'a.txt', 'A');
        await ad().mkdir('d');
        await expectCode(ad().rename('a.txt', 'd'), 'DESTINATION_EXISTS');
        expect((await ad().stat('d'))?.kind).toBe('directory');
        expect((await readBytes(ad(), 'a.txt')).toString()).toBe('A');
      });

      test('a directory tree moves to a free name', async () => {
        await ad().mkdir('.stage/sub');
        await writeBytes(ad(), '.stage/sub/f.wav', 'wav');
        await ad().rename('.stage', 'final');
        expect(await ad().stat('.stage')).toBeNull();
        expect((await readBytes(ad(), 'final/sub/f.wav')).toString()).toBe('wav');
      });

      test('a directory onto an existing (even empty) directory: DESTINATION_EXISTS, both untouched', async () => {
        await ad().mkdir('src');
        await writeBytes(ad(), 'src/f.txt', 'f');
        await ad().mkdir('empty-dst');
        await expectCode(ad().rename('src', 'empty-dst'), 'DESTINATION_EXISTS');
        expect(await collect(ad().list('empty-dst'))).toEqual([]);
        await ad().mkdir('full-dst');
        await writeBytes(ad(), 'full-dst/keep.txt', 'keep');
        await expectCode(ad().rename('src', 'full-dst'), 'DESTINATION_EXISTS');
        expect((await collect(ad().list('full-dst'))).map((e) => e.path)).toEqual(['keep.txt']);
        expect((await readBytes(ad(), 'src/f.txt')).toString()).toBe('f');
      });

      test('a directory onto an existing file: DESTINATION_EXISTS', async () => {
        await ad().mkdir('src');
        await writeBytes(ad(), 'file', 'f');
        await expectCode(ad().rename('src', 'file'), 'DESTINATION_EXISTS');
        expect((await readBytes(ad(), 'file')).toString()).toBe('f');
      });

      test('a missing source fails with SOURCE_NOT_FOUND', async () => {
        await expectCode(ad().rename('ghost', 'anything'), 'SOURCE_NOT_FOUND');
      });
    });

    describe('removal', () => {
      test('unlink removes a file; a missing one is SOURCE_NOT_FOUND', async () => {
        await writeBytes(ad(), 'f', 'x');
        await ad().unlink('f');
        expect(await ad().stat('f')).toBeNull();
        await expectCode(ad().unlink('f'), 'SOURCE_NOT_FOUND');
      });

      test('unlink of a symlink removes the link, not its target', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await writeBytes(ad(), 'target.txt', 'kept');
        await link('target.txt', 'link');
        await ad().unlink('link');
        expect(await ad().stat('link')).toBeNull();
        expect((await readBytes(ad(), 'target.txt')).toString()).toBe('kept');
      });

      test('rmdir removes only an empty directory', async () => {
        await ad().mkdir('full/sub');
        await expect(ad().rmdir('full')).rejects.toMatchObject({ name: 'KetterError' });
        expect((await ad().stat('full/sub'))?.kind).toBe('directory');
        await ad().rmdir('full/sub');
        await ad().rmdir('full');
        expect(await ad().stat('full')).toBeNull();
        await expectCode(ad().rmdir('full'), 'SOURCE_NOT_FOUND');
      });

      test('removeTree removes a tree or a file, and succeeds when nothing is there', async () => {
        await ad().mkdir('tree/a/b');
        await writeBytes(ad(), 'tree/a/b/f', 'x');
        await writeBytes(ad(), 'tree/.dot', 'x');
        await writeBytes(ad(), 'lone', 'x');
        await ad().removeTree('tree');
        await ad().removeTree('lone');
        expect(await ad().stat('tree')).toBeNull();
        expect(await ad().stat('lone')).toBeNull();
        await ad().removeTree('tree');
      });

      test('removeTree does not follow a symlink inside the tree', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await ad().mkdir('keep');
        await writeBytes(ad(), 'keep/precious.wav', 'precious');
        await ad().mkdir('tree');
        await link('../keep', 'tree/link');
        await ad().removeTree('tree');
        expect(await ad().stat('tree')).toBeNull();
        expect((await readBytes(ad(), 'keep/precious.wav')).toString()).toBe('precious');
      });
    });

    describe('capabilities match behaviour', () => {
      test('an optional method is present exactly when its capability is declared', () => {
        const a = ad();
        const c = a.capabilities;
        expect(typeof a.statfs === 'function').toBe(c.statfs);
        expect(typeof a.sync === 'function').toBe(c.fsync);
        expect(typeof a.setTimes === 'function').toBe(c.setTimes);
        expect(typeof a.setMode === 'function').toBe(c.setMode);
        expect(typeof a.hash === 'function').toBe(c.serverSideHash.length > 0);
        expect(typeof a.extract === 'function').toBe(c.serverSideExtract);
      });

      test('statfs: a positive number of free bytes, also for a path not created yet', async ({ skip: skipTest }) => {
        const a = ad();
        if (!a.capabilities.statfs || !a.statfs) return skipTest('statfs not declared');
        await a.mkdir('d');
        for (const path of ['', 'd', 'd/not/yet']) {
          const { freeBytes } = await a.statfs(path);
          expect(Number.isFinite(freeBytes)).toBe(true);
          expect(freeBytes).toBeGreaterThan(0);
        }
      });

      test('fsync: sync accepts files, directories and the root', async ({ skip: skipTest }) => {
        const a = ad();
        if (!a.capabilities.fsync || !a.sync) return skipTest('fsync not declared');
        await a.mkdir('d/e');
        await writeBytes(a, 'd/e/f.wav', 'data');
        await a.sync(['d/e/f.wav', 'd/e', 'd', '']);
        await a.sync([]);
        expect((await readBytes(a, 'd/e/f.wav')).toString()).toBe('data');
        await expectCode(a.sync(['d/missing']), 'SOURCE_NOT_FOUND');
      });

      test('setTimes: mtime of files and directories kept within mtimePrecisionMs', async ({ skip: skipTest }) => {
        const a = ad();
        if (!a.capabilities.setTimes || !a.setTimes) return skipTest('setTimes not declared');
        const precision = a.capabilities.mtimePrecisionMs;
        const when = Date.UTC(2021, 2, 4, 5, 6, 7, 891);
        await a.mkdir('d');
        await writeBytes(a, 'd/f.wav', 'x');
        await a.setTimes('d/f.wav', when);
        await a.setTimes('d', when);
        for (const path of ['d/f.wav', 'd']) {
          const st = await ad().stat(path);
          expect(Math.abs((st?.mtimeMs ?? 0) - when)).toBeLessThan(precision);
        }
        // Listings report the same time as stat.
        const listed = (await collect(ad().list('d')))[0];
        expect(Math.abs((listed?.mtimeMs ?? 0) - when)).toBeLessThan(precision);
      });

      test('setMode: permission bits are kept', async ({ skip: skipTest }) => {
        const a = ad();
        if (!a.capabilities.setMode || !a.setMode) return skipTest('setMode not declared');
        await writeBytes(a, 'f', 'x');
        for (const mode of [0o640, 0o755, 0o600]) {
          await a.setMode('f', mode);
          expect(((await ad().stat('f'))?.mode ?? 0) & 0o777).toBe(mode);
        }
      });

      test('serverSideHash: each algorithm equals the local hash, in the order asked', async ({ skip: skipTest }) => {
        const a = ad();
        const algorithms = a.capabilities.serverSideHash;
        if (algorithms.length === 0 || !a.hash) return skipTest('no server-side hash declared');
        const files: Record<string, Buffer> = {
          'h/one.wav': randomBytes(70_000),
          'h/two words.wav': Buffer.from('second'),
          'h/empty': Buffer.alloc(0),
        };
        await ad().mkdir('h');
        for (const [path, data] of Object.entries(files)) await writeBytes(ad(), path, data);
        for (const algorithm of algorithms) {
          const expected: string[] = [];
          for (const data of Object.values(files)) {
            const hasher = await createHasher(algorithm);
            hasher.update(data);
            expected.push(hasher.digest());
          }
          expect(await a.hash(Object.keys(files), algorithm)).toEqual(expected);
          expect(await a.hash([...Object.keys(files)].reverse(), algorithm)).toEqual([...expected].reverse());
        }
      });

      test('serverSideExtract: a small zip unpacks into the directory', async ({ skip: skipTest }) => {
        const a = ad();
        if (!a.capabilities.serverSideExtract || !a.extract) return skipTest('no server-side extract declared');
        const parts: Buffer[] = [];
        const zip = new ZipWriter((chunk) => void parts.push(chunk));
        const meta = { mtimeMs: Date.now(), mode: 0o100644 };
        await zip.addBytes('a.txt', Buffer.from('alpha'), meta);
        await zip.addBytes('dir/b with space.txt', Buffer.from('beta'), meta);
        await zip.addBytes('Mézcla/ñ.wav', Buffer.from('gamma'), meta);
        await zip.end();
        await writeBytes(ad(), 'pack.zip', Buffer.concat(parts));
        await ad().mkdir('out');
        await a.extract('pack.zip', 'out');
        expect((await readBytes(ad(), 'out/a.txt')).toString()).toBe('alpha');
        expect((await readBytes(ad(), 'out/dir/b with space.txt')).toString()).toBe('beta');
        expect((await readBytes(ad(), 'out/Mézcla/ñ.wav')).toString()).toBe('gamma');
      });

      test('symlinks: stat reports a link as a symlink and readlink gives its raw target', async ({ skip: skipTest }) => {
        if (!ad().capabilities.symlinks) return skipTest('symlinks not declared');
        const link = needSymlinks(skipTest);
        await writeBytes(ad(), 'target.txt', 'x');
        await link('target.txt', 'rel-link');
        await link('does/not/exist', 'dangling');
        expect((await ad().stat('rel-link'))?.kind).toBe('symlink');
        expect((await ad().stat('dangling'))?.kind).toBe('symlink');
        expect(await ad().readlink('rel-link')).toBe('target.txt');
        expect(await ad().readlink('dangling')).toBe('does/not/exist');
      });
    });

    describe.skipIf(skip.confinement)('path confinement through Portal', () => {
      const portal = (): Portal => new Portal('t', ad());

      test.each([
        ['..'],
        ['../x'],
        ['a/../../x'],
        ['a/..'],
        ['/etc/passwd'],
        ['C:\\x'],
        ['c:/x'],
        ['\\\\server\\share'],
        ['a\\..\\..\\x'],
        ['a\0b'],
      ])('refuses %j with PATH_NOT_ALLOWED', async (input) => {
        await expectCode(portal().resolve(input), 'PATH_NOT_ALLOWED');
      });

      test('plain paths resolve as written, missing tails included', async () => {
        await ad().mkdir('a/b');
        expect(await portal().resolve('a/b')).toBe('a/b');
        expect(await portal().resolve('./a//b/./c/')).toBe('a/b/c');
        expect(await portal().resolve('')).toBe('');
      });

      test('a symlink to an absolute path outside, used as a directory: PATH_NOT_ALLOWED', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        const outside = needOutside(skipTest);
        await link(outside, 'abs-out');
        await expectCode(portal().resolve('abs-out/secret.txt'), 'PATH_NOT_ALLOWED');
        await expectCode(portal().resolve('abs-out'), 'PATH_NOT_ALLOWED');
      });

      test('a symlink climbing out with a relative target: PATH_NOT_ALLOWED', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await ad().mkdir('deep/er');
        await link('../..', 'rel-out');
        await link('../../..', 'deep/er/rel-out');
        await expectCode(portal().resolve('rel-out/secret.txt'), 'PATH_NOT_ALLOWED');
        await expectCode(portal().resolve('deep/er/rel-out/x/y'), 'PATH_NOT_ALLOWED');
      });

      test('a chain of symlinks that ends outside: PATH_NOT_ALLOWED', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        const outside = needOutside(skipTest);
        await ad().mkdir('d');
        await link('d/hop2', 'hop1');
        await link('../hop3', 'd/hop2');
        await link(outside, 'hop3');
        await expectCode(portal().resolve('hop1/secret.txt'), 'PATH_NOT_ALLOWED');
      });

      test('a symlink loop: PATH_NOT_ALLOWED', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await link('loop2', 'loop1');
        await link('loop1', 'loop2');
        await expectCode(portal().resolve('loop1/x'), 'PATH_NOT_ALLOWED');
      });

      test('a symlink staying inside the root, as a directory, resolves to the real path', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await ad().mkdir('real/dir');
        await writeBytes(ad(), 'real/dir/file.wav', 'x');
        await ad().mkdir('links');
        await link('../real/dir', 'links/rel');
        await link(`${ad().root.replace(/\/+$/, '')}/real/dir`, 'links/abs');
        expect(await portal().resolve('links/rel/file.wav')).toBe('real/dir/file.wav');
        expect(await portal().resolve('links/abs/file.wav')).toBe('real/dir/file.wav');
        expect(await portal().resolve('links/rel/new/name')).toBe('real/dir/new/name');
      });

      test('a symlink as the last segment: SYMLINK_NOT_ALLOWED', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await writeBytes(ad(), 'file.wav', 'x');
        await link('file.wav', 'alias.wav');
        await expectCode(portal().resolve('alias.wav'), 'SYMLINK_NOT_ALLOWED');
      });

      test.each([['．．'], ['%2e%2e'], ['...'], ['x..'], ['..x'], ['\u2024\u2024'], ['.\u200b.']])(
        'odd name %j stays inside the root as a literal name',
        async (name) => {
          const rel = `odd/${name}/f.txt`;
          expect(await portal().resolve(rel)).toBe(rel);
          await ad().mkdir(`odd/${name}`);
          await writeBytes(ad(), rel, 'inside');
          const listed = (await collect(ad().list('odd'))).map((e) => e.path.normalize('NFC')).sort();
          expect(listed).toEqual([name, `${name}/f.txt`].map((p) => p.normalize('NFC')).sort());
          expect((await readBytes(ad(), await portal().resolve(rel))).toString()).toBe('inside');
        },
      );
    });

    describe.skipIf(skip.scan)('scan over the adapter', () => {
      const buildTree = async (link: (target: string, path: string) => Promise<void>, target: string): Promise<void> => {
        await ad().mkdir('src/sub');
        await writeBytes(ad(), 'src/a.wav', 'aaaa');
        await writeBytes(ad(), 'src/sub/b.wav', 'bb');
        await link(target, 'src/sub/escape');
      };

      test('a tree holding a symlink that leaves the root fails with SYMLINK_NOT_ALLOWED', async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await buildTree(link, fx.outside ?? '../../..');
        const portal = new Portal('t', ad());
        await expectCode(scan(portal, await portal.resolve('src')), 'SYMLINK_NOT_ALLOWED');
      });

      test("with symlinks: 'skip' the link is left out and nothing behind it is read", async ({ skip: skipTest }) => {
        const link = needSymlinks(skipTest);
        await buildTree(link, fx.outside ?? '../../..');
        const portal = new Portal('t', ad());
        const manifest = await scan(portal, await portal.resolve('src'), { symlinks: 'skip' });
        expect(manifest.skippedSymlinks).toEqual(['sub/escape']);
        expect(Array.from(manifest.entries, (e) => e.path)).toEqual(['a.wav', 'sub', 'sub/b.wav']);
        expect(manifest).toMatchObject({ rootKind: 'directory', name: 'src', nFiles: 2, totalBytes: 6 });
      });

      test('a plain tree scans to the expected manifest', async () => {
        await ad().mkdir('src/sub/empty');
        await writeBytes(ad(), 'src/sub/x.wav', '12345');
        await writeBytes(ad(), 'src/.meta', '1');
        const portal = new Portal('t', ad());
        const manifest = await scan(portal, 'src');
        expect(Array.from(manifest.entries, (e) => `${e.kind}:${e.path}`)).toEqual(['file:.meta', 'directory:sub', 'directory:sub/empty', 'file:sub/x.wav']);
        expect(manifest).toMatchObject({ nFiles: 2, totalBytes: 6, skippedSymlinks: [] });
      });
    });
  });
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function writeBytes(adapter: Adapter, path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  await pipeline(Readable.from(bytes.length > 0 ? [bytes] : []), adapter.openWrite(path));
}

async function readBytes(adapter: Adapter, path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of adapter.openRead(path) as AsyncIterable<Buffer>) parts.push(part);
  return Buffer.concat(parts);
}

