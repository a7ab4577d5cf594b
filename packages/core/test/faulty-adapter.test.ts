import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import type { Adapter } from '../src/adapter.js';
import { ErrorCode, KetterError, isTransient } from '../src/errors.js';
import { createHasher } from '../src/hash/hasher.js';
import { describeAdapterConformance } from '../src/testing/adapter-suite.js';
import { FaultyAdapter } from '../src/testing/faulty-adapter.js';

let base: string;
let fs: FsAdapter;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'ketter-faulty-'));
  fs = new FsAdapter({ root: base });
  await fs.connect();
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function readAll(adapter: Adapter, path: string): Promise<{ data: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const part of adapter.openRead(path, { highWaterMark: 64 * 1024 }) as AsyncIterable<Buffer>) parts.push(part);
    return { data: Buffer.concat(parts) };
  } catch (error) {
    return { data: Buffer.concat(parts), error };
  }
}

function write(adapter: Adapter, path: string, data: Buffer): Promise<void> {
  // Several chunks, so stream faults land inside the data rather than at its edges.
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += 100_000) chunks.push(data.subarray(i, i + 100_000));
  return pipeline(Readable.from(chunks), adapter.openWrite(path));
}

function diffOffsets(a: Buffer, b: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

describe('delegation', () => {
  test('same kind, id, root and capabilities; optional methods only where the inner adapter has them', async () => {
    const faulty = new FaultyAdapter(fs);
    expect([faulty.kind, faulty.id, faulty.root]).toEqual([fs.kind, fs.id, fs.root]);
    expect(faulty.capabilities).toBe(fs.capabilities);
    expect(typeof faulty.statfs).toBe('function');
    expect(typeof faulty.sync).toBe('function');
    expect('hash' in faulty).toBe(false);
    expect('extract' in faulty).toBe(false);

    const bare: Adapter = {
      kind: 'bare',
      id: 'bare',
      root: fs.root,
      capabilities: { ...fs.capabilities, statfs: false, fsync: false, setTimes: false, setMode: false },
      connect: () => fs.connect(),
      close: () => fs.close(),
      stat: (p) => fs.stat(p),
      readlink: (p) => fs.readlink(p),
      list: (p, o) => fs.list(p, o),
      openRead: (p, o) => fs.openRead(p, o),
      openWrite: (p, o) => fs.openWrite(p, o),
      mkdir: (p) => fs.mkdir(p),
      rename: (a, b) => fs.rename(a, b),
      unlink: (p) => fs.unlink(p),
      rmdir: (p) => fs.rmdir(p),
      removeTree: (p) => fs.removeTree(p),
    };
    const wrapped = new FaultyAdapter(bare);
    for (const method of ['statfs', 'sync', 'setTimes', 'setMode', 'hash', 'extract']) expect(method in wrapped).toBe(false);
  });

  test('without faults, data passes unchanged and nothing is logged', async () => {
    const faulty = new FaultyAdapter(fs);
    const data = randomBytes(300_000);
    await write(faulty, 'a.bin', data);
    expect((await readAll(faulty, 'a.bin')).data.equals(data)).toBe(true);
    expect(faulty.fired).toEqual([]);
  });
});

describe('fail', () => {
  test('throws a transient IO_ERROR once by default, then the call works again', async () => {
    await writeFile(join(base, 'a.txt'), 'a');
    const faulty = new FaultyAdapter(fs, [{ op: 'stat', path: 'a.txt', kind: 'fail' }]);
    const error = await faulty.stat('a.txt').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KetterError);
    expect(error).toMatchObject({ code: 'IO_ERROR', path: 'a.txt' });
    expect(isTransient(error)).toBe(true);
    expect((await faulty.stat('a.txt'))?.kind).toBe('file');
    expect(faulty.fired).toMatchObject([{ op: 'stat', kind: 'fail', path: 'a.txt' }]);
    expect(faulty.firedCount).toBe(1);
  });

  test('a given error, matched by RegExp, every time; other paths untouched', async () => {
    await mkdir(join(base, 'd'));
    const denied = new KetterError(ErrorCode.PERMISSION_DENIED, 'nope');
    const faulty = new FaultyAdapter(fs, [{ op: 'mkdir', path: /\.partial/, kind: 'fail', error: denied, times: Infinity }]);
    for (let i = 0; i < 3; i++) await expect(faulty.mkdir(`d/.x.partial/${i}`)).rejects.toBe(denied);
    await faulty.mkdir('d/final');
    expect(await fs.stat('d/.x.partial')).toBeNull();
    expect((await fs.stat('d/final'))?.kind).toBe('directory');
    expect(faulty.firedCount).toBe(3);
  });

  test('a predicate, and a rename matched on either side leaves both paths as they were', async () => {
    await writeFile(join(base, 'from'), 'f');
    const faulty = new FaultyAdapter(fs).add({ op: 'rename', path: (p) => p.startsWith('to'), kind: 'fail', times: 2 });
    await expect(faulty.rename('from', 'to')).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.rename('from', 'to-2')).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(await readFile(join(base, 'from'), 'utf8')).toBe('f');
    await faulty.rename('from', 'to');
    expect(await readFile(join(base, 'to'), 'utf8')).toBe('f');
    expect(faulty.fired.map((f) => f.path)).toEqual(['to', 'to-2']);
  });

  test('sync, statfs, unlink, rmdir, removeTree, setTimes, setMode and list fail when asked', async () => {
    await mkdir(join(base, 'd'));
    await writeFile(join(base, 'd/f'), 'x');
    const ops = ['sync', 'statfs', 'unlink', 'rmdir', 'removeTree', 'setTimes', 'setMode', 'list'] as const;
    const faulty = new FaultyAdapter(fs, ops.map((op) => ({ op, kind: 'fail' as const })));
    await expect(faulty.sync!(['d/f'])).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.statfs!('d')).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.unlink('d/f')).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.rmdir('d')).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.removeTree('d')).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.setTimes!('d/f', 0)).rejects.toMatchObject({ code: 'IO_ERROR' });
    await expect(faulty.setMode!('d/f', 0o600)).rejects.toMatchObject({ code: 'IO_ERROR' });
    const listing = (async () => {
      for await (const _ of faulty.list('d')) void _;
    })();
    await expect(listing).rejects.toMatchObject({ code: 'IO_ERROR' });
    expect(faulty.fired.map((f) => f.op)).toEqual(ops);
    // Nothing was done by the failed calls.
    expect(await readFile(join(base, 'd/f'), 'utf8')).toBe('x');
  });

  test('openRead fails after afterBytes: the bytes before arrive, then the error', async () => {
    const data = randomBytes(1024 * 1024);
    await writeFile(join(base, 'big.wav'), data);
    const faulty = new FaultyAdapter(fs, [{ op: 'openRead', kind: 'fail', afterBytes: 100_000 }]);
    const { data: got, error } = await readAll(faulty, 'big.wav');
    expect(error).toMatchObject({ name: 'KetterError', code: 'IO_ERROR', path: 'big.wav' });
    expect(got.length).toBe(100_000);
    expect(got.equals(data.subarray(0, 100_000))).toBe(true);
    // Fired once: the next read is whole.
    expect((await readAll(faulty, 'big.wav')).data.equals(data)).toBe(true);
  });

  test('openRead fail at byte 0 of an empty file still fails', async () => {
    await writeFile(join(base, 'empty'), '');
    const faulty = new FaultyAdapter(fs, [{ op: 'openRead', kind: 'fail' }]);
    expect((await readAll(faulty, 'empty')).error).toMatchObject({ code: 'IO_ERROR' });
  });

  test('openWrite fails after afterBytes: the pipeline rejects, the file holds at most that much', async () => {
    const data = randomBytes(500_000);
    const faulty = new FaultyAdapter(fs, [{ op: 'openWrite', kind: 'fail', afterBytes: 250_000 }]);
    await expect(write(faulty, 'out.wav', data)).rejects.toMatchObject({ code: 'IO_ERROR', path: 'out.wav' });
    const onDisk = await readFile(join(base, 'out.wav'));
    expect(onDisk.length).toBeLessThanOrEqual(250_000);
    expect(onDisk.equals(data.subarray(0, onDisk.length))).toBe(true);
    expect(faulty.firedCount).toBe(1);
  });

  test('errors of the wrapped write stream still surface (exclusive create)', async () => {
    await writeFile(join(base, 'taken'), 'x');
    const faulty = new FaultyAdapter(fs, [{ op: 'openWrite', kind: 'corrupt' }]);
    await expect(write(faulty, 'taken', Buffer.from('data'))).rejects.toMatchObject({ code: 'DESTINATION_EXISTS' });
    expect(await readFile(join(base, 'taken'), 'utf8')).toBe('x');
  });
});

describe('delay', () => {
  test('a delayed call finishes after an undelayed one started later', async () => {
    await writeFile(join(base, 'slow'), 's');
    await writeFile(join(base, 'fast'), 'f');
    const faulty = new FaultyAdapter(fs, [{ op: 'stat', path: 'slow', kind: 'delay', delayMs: 300 }]);
    const order: string[] = [];
    await Promise.all([
      faulty.stat('slow').then((s) => order.push(`slow:${s?.kind}`)),
      faulty.stat('fast').then((s) => order.push(`fast:${s?.kind}`)),
    ]);
    expect(order).toEqual(['fast:file', 'slow:file']);
    expect(faulty.fired).toMatchObject([{ op: 'stat', kind: 'delay', path: 'slow' }]);
  });

  test('delayed streams still carry every byte', async () => {
    const data = randomBytes(200_000);
    const faulty = new FaultyAdapter(fs, [
      { op: 'openWrite', kind: 'delay', delayMs: 20, afterBytes: 150_000 },
      { op: 'openRead', kind: 'delay', delayMs: 20 },
    ]);
    await write(faulty, 'd.bin', data);
    expect((await readAll(faulty, 'd.bin')).data.equals(data)).toBe(true);
    expect(faulty.fired.map((f) => `${f.op}:${f.kind}`)).toEqual(['openWrite:delay', 'openRead:delay']);
  });
});

describe('truncate', () => {
  test('openRead ends early and cleanly, in the middle of the first chunk by default', async () => {
    const data = randomBytes(300_000);
    await writeFile(join(base, 't.wav'), data);
    const faulty = new FaultyAdapter(fs, [{ op: 'openRead', kind: 'truncate' }]);
    const { data: got, error } = await readAll(faulty, 't.wav');
    expect(error).toBeUndefined();
    expect(got.length).toBe(32 * 1024);
    expect(got.equals(data.subarray(0, got.length))).toBe(true);
  });

  test('openWrite drops the bytes past the cut while the writer sees success', async () => {
    const data = randomBytes(400_000);
    const faulty = new FaultyAdapter(fs, [{ op: 'openWrite', kind: 'truncate', afterBytes: 123_456 }]);
    await write(faulty, 'short.wav', data);
    const onDisk = await readFile(join(base, 'short.wav'));
    expect(onDisk.equals(data.subarray(0, 123_456))).toBe(true);
    expect(faulty.fired).toMatchObject([{ op: 'openWrite', kind: 'truncate', path: 'short.wav' }]);
  });

  test('a cut past the end of the data never fires', async () => {
    await writeFile(join(base, 'small'), 'tiny');
    const faulty = new FaultyAdapter(fs, [{ op: 'openRead', kind: 'truncate', afterBytes: 1000 }]);
    expect((await readAll(faulty, 'small')).data.toString()).toBe('tiny');
    expect(faulty.fired).toEqual([]);
  });
});

describe('corrupt', () => {
  test('openRead flips exactly one byte of what is read; the file is unchanged', async () => {
    const data = randomBytes(256 * 1024);
    await writeFile(join(base, 'c.wav'), data);
    const faulty = new FaultyAdapter(fs, [{ op: 'openRead', kind: 'corrupt', afterBytes: 70_000 }]);
    const { data: got } = await readAll(faulty, 'c.wav');
    expect(got.length).toBe(data.length);
    expect(diffOffsets(got, data)).toEqual([70_000]);
    expect((await readFile(join(base, 'c.wav'))).equals(data)).toBe(true);
  });

  test('openWrite flips one byte on disk and never the caller buffer', async () => {
    const data = randomBytes(300_000);
    const copy = Buffer.from(data);
    const faulty = new FaultyAdapter(fs, [{ op: 'openWrite', kind: 'corrupt' }]);
    await write(faulty, 'w.wav', data);
    expect(data.equals(copy)).toBe(true);
    const onDisk = await readFile(join(base, 'w.wav'));
    expect(diffOffsets(onDisk, data)).toEqual([50_000]);
    expect(createHash('sha256').update(onDisk).digest('hex')).not.toBe(createHash('sha256').update(data).digest('hex'));
  });

  test('hash returns a wrong digest for the matching path only', async () => {
    await writeFile(join(base, 'a'), 'A');
    await writeFile(join(base, 'b'), 'B');
    const local = async (path: string) => {
      const hasher = await createHasher('sha256');
      hasher.update(await readFile(join(base, path)));
      return hasher.digest();
    };
    const withHash = Object.assign(Object.create(null) as object, {
      kind: fs.kind,
      id: fs.id,
      root: fs.root,
      capabilities: { ...fs.capabilities, serverSideHash: ['sha256'] as const },
      connect: () => fs.connect(),
      close: () => fs.close(),
      stat: (p: string) => fs.stat(p),
      readlink: (p: string) => fs.readlink(p),
      list: (p: string) => fs.list(p),
      openRead: (p: string) => fs.openRead(p),
      openWrite: (p: string) => fs.openWrite(p),
      mkdir: (p: string) => fs.mkdir(p),
      rename: (a: string, b: string) => fs.rename(a, b),
      unlink: (p: string) => fs.unlink(p),
      rmdir: (p: string) => fs.rmdir(p),
      removeTree: (p: string) => fs.removeTree(p),
      hash: (paths: readonly string[]) => Promise.all(paths.map(local)),
    }) as Adapter;
    const faulty = new FaultyAdapter(withHash, [{ op: 'hash', path: 'b', kind: 'corrupt' }]);
    const [a, b] = await faulty.hash!(['a', 'b'], 'sha256');
    expect(a).toBe(await local('a'));
    expect(b).not.toBe(await local('b'));
    expect(b).toHaveLength(64);
    expect(faulty.fired).toMatchObject([{ op: 'hash', kind: 'corrupt', path: 'b' }]);
  });
});

describe('managing faults', () => {
  test('a kind an operation cannot have, or a non-positive count, is refused', () => {
    const faulty = new FaultyAdapter(fs);
    expect(() => faulty.add({ op: 'stat', kind: 'truncate' })).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => faulty.add({ op: 'mkdir', kind: 'corrupt' })).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => faulty.add({ op: 'stat', kind: 'fail', times: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });

  test('clear removes pending faults and keeps the log', async () => {
    await writeFile(join(base, 'a'), 'a');
    const faulty = new FaultyAdapter(fs, [{ op: 'stat', kind: 'fail', times: Infinity }]);
    await expect(faulty.stat('a')).rejects.toMatchObject({ code: 'IO_ERROR' });
    faulty.clear();
    expect((await faulty.stat('a'))?.kind).toBe('file');
    expect(faulty.firedCount).toBe(1);
  });
});

// With no faults the wrapper must be invisible: the whole adapter contract still holds.
describeAdapterConformance(
  { describe, test, expect, beforeEach, afterEach },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ketter-faulty-conformance-'));
    await mkdir(join(dir, 'root'));
    await mkdir(join(dir, 'outside'));
    await writeFile(join(dir, 'outside', 'secret.txt'), 'secret');
    const inner = new FsAdapter({ root: join(dir, 'root') });
    const adapter = new FaultyAdapter(inner);
    await adapter.connect();
    return {
      adapter,
      outside: await realpath(join(dir, 'outside')),
      symlink: (target, path) => symlink(target, join(adapter.root, path)),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
  { name: 'FaultyAdapter over fs, no faults', skip: { largeFile: true } },
);
