import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, mkdirSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { Portal, SMALL_FILE_BYTES, transfer, type Adapter, type KetterError, type KetterEvent, type ReadOptions, type WriteOptions } from '@ketter/core';
import { FaultyAdapter } from '@ketter/core/testing';
import { exists, expectValidEvents, failure, hashTree, leftovers, makeEnv, sha256, snapshot, type TestEnv } from './support/env.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.cleanup();
});

/** An FsAdapter that counts the data calls made through it: files the lane moved never show up here. */
class CountingFsAdapter extends FsAdapter {
  reads = 0;
  writes = 0;
  override openRead(path: string, options?: ReadOptions) {
    this.reads += 1;
    return super.openRead(path, options);
  }
  override openWrite(path: string, options?: WriteOptions) {
    this.writes += 1;
    return super.openWrite(path, options);
  }
  override readFile(path: string, options?: { signal?: AbortSignal }) {
    this.reads += 1;
    return super.readFile(path, options);
  }
  override writeFile(path: string, data: Uint8Array, options?: { mode?: number; signal?: AbortSignal }) {
    this.writes += 1;
    return super.writeFile(path, data, options);
  }
}

async function countingPortals(): Promise<{ src: Portal; dst: Portal; srcAdapter: CountingFsAdapter; dstAdapter: CountingFsAdapter }> {
  const srcAdapter = new CountingFsAdapter({ root: env.srcDir });
  const dstAdapter = new CountingFsAdapter({ root: env.dstDir });
  await srcAdapter.connect();
  await dstAdapter.connect();
  return { src: new Portal('src', srcAdapter), dst: new Portal('dst', dstAdapter), srcAdapter, dstAdapter };
}

const SIZES = [0, 1, 100, 1023, 1024, 4096, 16_384, 65_537, 200_000];
const MODES = [0o644, 0o600, 0o755, 0o640, 0o666, 0o777, 0o444];
const NAMES = ['take', 'Mézcla final', 'voz ñ', '日本語 テイク', 'sub dir'];

function content(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let j = 0; j < size; j += 97) b[j] = (i * 31 + j) & 0xff;
  if (size > 0) b[size - 1] = i & 0xff;
  return b;
}

/** `n` files under `dir/<root>` in a few folders, with mixed sizes, modes and mtimes; returns their paths. */
function session(root: string, n: number, extra: Record<string, number> = {}): string[] {
  const paths: string[] = [];
  const base = Date.UTC(2024, 1, 3, 4, 5, 6);
  const write = (rel: string, i: number, size: number) => {
    const abs = join(env.srcDir, root, rel);
    mkdirSync(join(abs, '..'), { recursive: true });
    writeFileSync(abs, content(i, size));
    chmodSync(abs, MODES[i % MODES.length] as number);
    const t = new Date(base + i * 1001 + (i % 7));
    utimesSync(abs, t, t);
    paths.push(rel);
  };
  for (let i = 0; i < n; i++) {
    const folder = NAMES[i % NAMES.length] as string;
    const nested = i % 3 === 0 ? `${folder}/deeper ü` : folder;
    write(`${nested}/clip ${String(i).padStart(4, '0')} ç.wav`, i, SIZES[i % SIZES.length] as number);
  }
  let i = n;
  for (const [rel, size] of Object.entries(extra)) write(rel, i++, size);
  return paths;
}

/**
 * `root` landed under `into` byte for byte, with each file's mode and mtime, and nothing of
 * Ketter's left beside it. Resolves with the source's hashes by path.
 */
async function expectLandedAsSource(root: string, into: string, paths: readonly string[]): Promise<Record<string, string>> {
  const source = await hashTree(join(env.srcDir, root));
  expect(await hashTree(join(env.dstDir, into, root))).toEqual(source);
  for (const rel of paths) {
    const a = statSync(join(env.srcDir, root, rel));
    const b = statSync(join(env.dstDir, into, root, rel));
    expect({ rel, mode: b.mode & 0o777 }).toEqual({ rel, mode: a.mode & 0o777 });
    // Millisecond mtimes, as the adapter path sets them: a Date holds whole ms, and utimes
    // truncates to the µs, so a source at x.999999 ms can land a hair under x - 1 ms.
    expect(Math.abs(b.mtimeMs - a.mtimeMs), rel).toBeLessThanOrEqual(1.001);
  }
  expect(await leftovers(join(env.dstDir, into))).toEqual([]);
  return source;
}

describe('local fast lane', () => {
  test('2,000 small files: byte-identical, modes and mtimes kept, every file verified by sha256, no adapter data call', async () => {
    const paths = session('Session', 2000, { 'edge/exactly 1 MiB.wav': SMALL_FILE_BYTES, 'edge/just over 1 MiB.mov': SMALL_FILE_BYTES + 1 });
    const { src, dst, srcAdapter, dstAdapter } = await countingPortals();
    const result = await transfer(
      { mode: 'copy', source: { portal: src, path: 'Session' }, destination: { portal: dst, path: 'incoming' } },
      { store: env.store, onEvent: env.onEvent, strategy: 'direct' },
    );
    expect(result).toMatchObject({ status: 'succeeded', strategy: 'DIRECT', filesCopied: 2002 });

    // Only the file over 1 MiB went through the adapter's data calls; its re-read, like
    // every re-read of a local file, went through the local path.
    expect(srcAdapter.reads).toBe(1);
    expect(dstAdapter.writes).toBe(1);
    expect(dstAdapter.reads).toBe(0);

    const source = await expectLandedAsSource('Session', 'incoming', paths);
    expect(Object.keys(source)).toHaveLength(2002);

    expectValidEvents(env.events);
    const verified = env.events.filter((e): e is Extract<KetterEvent, { type: 'file.verified' }> => e.type === 'file.verified');
    const copied = env.events.filter((e): e is Extract<KetterEvent, { type: 'file.copied' }> => e.type === 'file.copied');
    expect(verified).toHaveLength(2002);
    expect(copied).toHaveLength(2002);
    for (const v of verified) {
      expect(v.method).toBe('reread');
      expect(v.algorithm).toBe('sha256');
      expect(v.sourceHash).toBe(v.destinationHash);
      expect(v.sourceHash).toBe(source[v.path]);
    }
    for (const c of copied) {
      expect(c.attempt).toBe(1);
      expect(c.sourceMtimeMs).toBe(statSync(join(env.srcDir, 'Session', c.path)).mtimeMs);
    }
    const types = env.events.map((e) => e.type);
    expect(types.indexOf('job.committed')).toBeGreaterThan(types.lastIndexOf('file.verified'));
    const job = await env.store.getJob(result.jobId);
    expect(job?.status).toBe('succeeded');
    expectValidEvents(job?.events ?? []);
    const progress = env.events.filter((e) => e.type === 'job.progress').at(-1);
    expect(progress).toMatchObject({ filesDone: 2002, bytesDone: result.bytesCopied });
  });

  test('MOVE through the lane deletes the sources after commit', async () => {
    session('Move me', 300);
    const expected = await hashTree(join(env.srcDir, 'Move me'));
    const result = await transfer(
      { mode: 'move', source: { portal: env.src, path: 'Move me' }, destination: { portal: env.dst, path: '' } },
      { store: env.store, onEvent: env.onEvent, strategy: 'direct' },
    );
    expect(result.sourcesKept).toEqual([]);
    expect(await exists(join(env.srcDir, 'Move me'))).toBe(false);
    expect(await hashTree(join(env.dstDir, 'Move me'))).toEqual(expected);
    const types = env.events.map((e) => e.type);
    expect(types.indexOf('source.deleted')).toBeGreaterThan(types.indexOf('job.committed'));
    expect(types.filter((t) => t === 'source.deleted').length).toBeGreaterThanOrEqual(300);
  });

  test('a one-file source with md5 takes the lane and is proven with md5', async () => {
    writeFileSync(join(env.srcDir, 'Final Mix ñ.wav'), content(7, 5000));
    const { src, dst, dstAdapter } = await countingPortals();
    await transfer(
      { mode: 'copy', algorithm: 'md5', source: { portal: src, path: 'Final Mix ñ.wav' }, destination: { portal: dst, path: 'out' } },
      { store: env.store, onEvent: env.onEvent, strategy: 'direct' },
    );
    const md5 = createHash('md5').update(content(7, 5000)).digest('hex');
    expect(env.events.find((e) => e.type === 'file.verified')).toMatchObject({ algorithm: 'md5', sourceHash: md5, destinationHash: md5, method: 'reread' });
    expect(sha256(await readFile(join(env.dstDir, 'out/Final Mix ñ.wav')))).toBe(sha256(content(7, 5000)));
    // Preflight's writability probe is the only write through the adapter.
    expect(dstAdapter.writes).toBe(1);
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
  });

  test('the lane and the adapter path leave identical files, modes and mtimes', async () => {
    session('Same', 120);
    // Written without utimes: nanosecond mtimes, as real files have.
    writeFileSync(join(env.srcDir, 'Same', 'fresh.wav'), content(1, 3000));
    const viaAdapter = env.portalOver(new FaultyAdapter(env.dst.adapter));
    await transfer({ mode: 'copy', source: { portal: env.src, path: 'Same' }, destination: { portal: env.dst, path: 'lane' } }, { store: env.store, strategy: 'direct' });
    await transfer({ mode: 'copy', source: { portal: env.src, path: 'Same' }, destination: { portal: viaAdapter, path: 'adapter' } }, { store: env.store, strategy: 'direct' });
    expect(await snapshot(join(env.dstDir, 'lane'))).toEqual(await snapshot(join(env.dstDir, 'adapter')));
    expect(await hashTree(join(env.dstDir, 'lane'))).toEqual(await hashTree(join(env.dstDir, 'adapter')));
    const source = await hashTree(join(env.srcDir, 'Same'));
    const modes = (dir: string) => Object.keys(source).map((rel) => statSync(join(env.dstDir, dir, 'Same', rel)).mode);
    expect(modes('lane')).toEqual(modes('adapter'));
  });

  test('FaultyAdapter keeps fault-injection tests on the adapter path', () => {
    const faulty = new FaultyAdapter(env.dst.adapter);
    expect(env.dst.adapter.localPath).toBeTypeOf('function');
    expect((faulty as Adapter).localPath).toBeUndefined();
  });
});

describe('local fast lane failures', () => {
  /** Run a COPY of `root` whose hook acts once, on the first event of `type`. */
  function copyWithHook(
    root: string,
    type: KetterEvent['type'],
    act: (e: KetterEvent) => void,
    extra: { signal?: AbortSignal; strategy?: 'direct' | 'zip' } = {},
  ) {
    let done = false;
    return transfer(
      { mode: 'copy', source: { portal: env.src, path: root }, destination: { portal: env.dst, path: 'out' } },
      {
        store: env.store,
        strategy: 'direct',
        ...extra,
        onEvent: (e) => {
          env.events.push(e);
          if (e.type === type && !done) {
            done = true;
            act(e);
          }
        },
      },
    );
  }

  async function expectRolledBack(error: KetterError): Promise<void> {
    expect(await exists(join(env.dstDir, 'out', 'take'))).toBe(false);
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
    // Messages name portal-relative paths only.
    expect(error.message).not.toContain(env.root);
    const job = await env.store.getJob(error.jobId as string);
    expect(job?.status).toBe(error.code === 'CANCELLED' ? 'cancelled' : 'failed');
    expectValidEvents(job?.events ?? []);
    expect(job?.events.map((e) => e.type)).toContain('staging.removed');
  }

  test('a source file deleted after the scan fails the job and rolls back', async () => {
    const paths = session('take', 200);
    const victim = paths.at(-1) as string;
    const before = await hashTree(join(env.srcDir, 'take'));
    const error = await failure(copyWithHook('take', 'preflight.passed', () => unlinkSync(join(env.srcDir, 'take', victim))));
    expect(['SOURCE_NOT_FOUND', 'SOURCE_CHANGED']).toContain(error.code);
    expect(error.path).toBe(`take/${victim}`);
    expect(error.portal).toBe('src');
    await expectRolledBack(error);
    delete before[victim];
    expect(await hashTree(join(env.srcDir, 'take'))).toEqual(before);
  });

  test('a source file that grew after the scan (mtime put back) is SOURCE_CHANGED', async () => {
    const paths = session('take', 200);
    const victim = join(env.srcDir, 'take', paths[150] as string);
    const error = await failure(
      copyWithHook('take', 'preflight.passed', () => {
        const st = statSync(victim);
        appendFileSync(victim, 'late edit');
        utimesSync(victim, st.atime, st.mtime);
      }),
    );
    expect(error.code).toBe('SOURCE_CHANGED');
    expect(error.path).toBe(`take/${paths[150]}`);
    await expectRolledBack(error);
  });

  test('a source file rewritten at the same size with a new mtime is SOURCE_CHANGED', async () => {
    const paths = session('take', 200);
    const rel = paths.find((p, i) => i >= 100 && statSync(join(env.srcDir, 'take', p)).size > 0) as string;
    const victim = join(env.srcDir, 'take', rel);
    const error = await failure(
      copyWithHook('take', 'preflight.passed', () => {
        const size = statSync(victim).size;
        writeFileSync(victim, Buffer.alloc(size, 0x5a));
        utimesSync(victim, new Date(), new Date(Date.UTC(2030, 0, 1)));
      }),
    );
    expect(error.code).toBe('SOURCE_CHANGED');
    expect(error.path).toBe(`take/${rel}`);
    await expectRolledBack(error);
  });

  describe('the ZIP_FIRST packer reading on the lane', () => {
    test('reads every small file without an adapter data call and lands them verified', async () => {
      session('Pack', 300);
      const expected = await hashTree(join(env.srcDir, 'Pack'));
      const { src, dst, srcAdapter } = await countingPortals();
      const result = await transfer(
        { mode: 'copy', source: { portal: src, path: 'Pack' }, destination: { portal: dst, path: 'out' } },
        { store: env.store, onEvent: env.onEvent, strategy: 'zip' },
      );
      expect(result).toMatchObject({ status: 'succeeded', strategy: 'ZIP_FIRST', filesCopied: 300 });
      expect(srcAdapter.reads).toBe(0);
      expect(await hashTree(join(env.dstDir, 'out', 'Pack'))).toEqual(expected);
      const copied = env.events.filter((e) => e.type === 'file.copied');
      expect(copied.map((e) => (e as { hash: string }).hash).sort()).toEqual(Object.values(expected).sort());
    });

    test('a file deleted after the scan fails the job on its path and rolls back', async () => {
      const paths = session('take', 200);
      const victim = paths.at(-1) as string;
      const error = await failure(copyWithHook('take', 'preflight.passed', () => unlinkSync(join(env.srcDir, 'take', victim)), { strategy: 'zip' }));
      expect(['SOURCE_NOT_FOUND', 'SOURCE_CHANGED']).toContain(error.code);
      expect(error.path).toBe(`take/${victim}`);
      expect(error.portal).toBe('src');
      await expectRolledBack(error);
    });

    test('a file rewritten at the same size with a new mtime is SOURCE_CHANGED', async () => {
      const paths = session('take', 200);
      const rel = paths.find((p, i) => i >= 100 && statSync(join(env.srcDir, 'take', p)).size > 0) as string;
      const victim = join(env.srcDir, 'take', rel);
      const error = await failure(
        copyWithHook(
          'take',
          'preflight.passed',
          () => {
            writeFileSync(victim, Buffer.alloc(statSync(victim).size, 0x5a));
            utimesSync(victim, new Date(), new Date(Date.UTC(2030, 0, 1)));
          },
          { strategy: 'zip' },
        ),
      );
      expect(error.code).toBe('SOURCE_CHANGED');
      expect(error.path).toBe(`take/${rel}`);
      await expectRolledBack(error);
    });

    test('a file that grew after the scan (mtime put back) is SOURCE_CHANGED', async () => {
      const paths = session('take', 200);
      const victim = join(env.srcDir, 'take', paths[150] as string);
      const error = await failure(
        copyWithHook(
          'take',
          'preflight.passed',
          () => {
            const st = statSync(victim);
            appendFileSync(victim, 'late edit');
            utimesSync(victim, st.atime, st.mtime);
          },
          { strategy: 'zip' },
        ),
      );
      expect(error.code).toBe('SOURCE_CHANGED');
      expect(error.path).toBe(`take/${paths[150]}`);
      await expectRolledBack(error);
    });
  });

  test('a source file replaced by a FIFO after the scan is SOURCE_CHANGED, and the copy does not block on it', async () => {
    const paths = session('take', 50);
    const rel = paths[20] as string;
    const victim = join(env.srcDir, 'take', rel);
    const error = await failure(
      copyWithHook('take', 'preflight.passed', () => {
        unlinkSync(victim);
        execFileSync('mkfifo', [victim]);
      }),
    );
    expect(error.code).toBe('SOURCE_CHANGED');
    expect(error.path).toBe(`take/${rel}`);
    await expectRolledBack(error);
  });

  test('a name already taken in staging is DESTINATION_EXISTS on the destination portal', async () => {
    const paths = session('take', 200);
    // Files are copied largest first; the last path has one of the smallest sizes.
    const rel = paths.filter((p) => !p.includes('/deeper')).at(-1) as string;
    let staging = '';
    const error = await failure(
      copyWithHook('take', 'preflight.passed', (e) => {
        staging = (e as Extract<KetterEvent, { type: 'preflight.passed' }>).staging;
        mkdirSync(join(env.dstDir, staging, rel, '..'), { recursive: true });
        writeFileSync(join(env.dstDir, staging, rel), 'squatter');
      }),
    );
    expect(error.code).toBe('DESTINATION_EXISTS');
    expect(error.portal).toBe('dst');
    expect(error.path).toBe(`${staging}/${rel}`);
    await expectRolledBack(error);
  });

  test('a staged folder replaced by a file fails the files still to come into it (IO_ERROR, destination path)', async () => {
    // 600 files of 50 kB go first (about ten batches); the 0-byte files of 'late/' are the last ones sent to the workers.
    const bigs = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`early/f${i}.bin`, 50_000]));
    const smalls = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`late/f${i}.bin`, 0]));
    session('take', 0, { ...bigs, ...smalls });
    const error = await failure(
      copyWithHook('take', 'file.copied', () => {
        const staging = (env.events.find((e) => e.type === 'preflight.passed') as Extract<KetterEvent, { type: 'preflight.passed' }>).staging;
        const late = join(env.dstDir, staging, 'late');
        rmSync(late, { recursive: true, force: true });
        writeFileSync(late, 'not a folder');
      }),
    );
    expect(error.code).toBe('IO_ERROR');
    expect(error.portal).toBe('dst');
    expect(error.path).toMatch(/^out\/\.ketter-.*\.partial\/late\/f\d+\.bin$/);
    expect((error.cause as { code?: string }).code).toBe('ENOTDIR');
    await expectRolledBack(error);
  });

  test('cancellation mid-lane stops the workers, rolls back and records job.cancelled', async () => {
    session('take', 2000);
    const before = await hashTree(join(env.srcDir, 'take'));
    const controller = new AbortController();
    let copied = 0;
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: 'out' } },
        {
          store: env.store,
          strategy: 'direct',
          signal: controller.signal,
          onEvent: (e) => {
            if (e.type === 'file.copied' && ++copied === 100) controller.abort();
          },
        },
      ),
    );
    expect(error.code).toBe('CANCELLED');
    expect(copied).toBeLessThan(2000);
    await expectRolledBack(error);
    expect(await exists(join(env.dstDir, 'out', 'take'))).toBe(false);
    expect(await hashTree(join(env.srcDir, 'take'))).toEqual(before);
    const job = await env.store.getJob(error.jobId as string);
    expect(job?.events.at(-1)?.type).toBe('job.cancelled');
  });

  test('files not yet sent to a worker are never written after a failure', async () => {
    const paths = session('take', 2000);
    // One of the largest files, so among the first sent to the workers.
    const victim = paths[8] as string;
    const error = await failure(copyWithHook('take', 'preflight.passed', () => unlinkSync(join(env.srcDir, 'take', victim))));
    expect(['SOURCE_NOT_FOUND', 'SOURCE_CHANGED']).toContain(error.code);
    // Far fewer than 2,000 copies were recorded: the lane stopped feeding the workers.
    expect(env.events.filter((e) => e.type === 'file.copied').length).toBeLessThan(1500);
    await expectRolledBack(error);
  });
});

describe('ZIP_FIRST extraction on the lane', () => {
  test('small files and one of several pieces: extracted by the workers, byte-identical, modes and mtimes kept, each verified', async () => {
    const paths = session('Session', 1500, { 'big/take 5 MiB.mov': 5 * 1024 * 1024 + 3, 'big/exactly 2 MiB.wav': 2 * 1024 * 1024 });
    const { src, dst, dstAdapter } = await countingPortals();
    const result = await transfer(
      { mode: 'copy', source: { portal: src, path: 'Session' }, destination: { portal: dst, path: 'incoming' } },
      { store: env.store, onEvent: env.onEvent, strategy: 'zip' },
    );
    expect(result).toMatchObject({ status: 'succeeded', strategy: 'ZIP_FIRST', filesCopied: 1502 });
    // At the destination the adapter wrote the archive (which was read back through its local
    // path to verify it); every file was written and read back by the workers.
    expect(dstAdapter.writes).toBe(1);
    expect(dstAdapter.reads).toBe(0);

    const source = await expectLandedAsSource('Session', 'incoming', paths);

    expectValidEvents(env.events);
    // Each file is recorded as the workers extract it; archive.extracted follows the last.
    const types = env.events.map((e) => e.type);
    expect(types.indexOf('file.copied')).toBeGreaterThan(types.indexOf('archive.packed'));
    expect(types.indexOf('archive.extracted')).toBeGreaterThan(types.lastIndexOf('file.verified'));
    const verified = env.events.filter((e): e is Extract<KetterEvent, { type: 'file.verified' }> => e.type === 'file.verified');
    expect(verified).toHaveLength(1502);
    for (const v of verified) {
      expect(v.method).toBe('reread');
      expect(v.sourceHash).toBe(v.destinationHash);
      expect(v.sourceHash).toBe(source[v.path]);
    }
  });

  test('an archive altered after its verification: the file read back differs, CHECKSUM_MISMATCH, rolled back', async () => {
    session('take', 300);
    const before = await hashTree(join(env.srcDir, 'take'));
    // A file whose bytes are easy to find in the archive: 200,000 bytes of its own pattern.
    const victim = Object.keys(before).find((rel) => statSync(join(env.srcDir, 'take', rel)).size === 200_000) as string;
    const bytes = readFileSync(join(env.srcDir, 'take', victim));
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: 'out' } },
        {
          store: env.store,
          strategy: 'zip',
          onEvent: (e) => {
            if (e.type !== 'archive.packed') return;
            const archive = join(env.dstDir, e.archive);
            const data = readFileSync(archive);
            const at = data.indexOf(bytes);
            expect(at).toBeGreaterThan(0);
            data[at + 100_000] = (data[at + 100_000] as number) ^ 0xff;
            writeFileSync(archive, data);
          },
        },
      ),
    );
    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(error.path).toContain(victim);
    expect(await exists(join(env.dstDir, 'out', 'take'))).toBe(false);
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
    expect(await hashTree(join(env.srcDir, 'take'))).toEqual(before);
  });

  test('cancelled once the archive is packed: CANCELLED, staging and archive removed, source intact', async () => {
    session('take', 500);
    const before = await hashTree(join(env.srcDir, 'take'));
    const controller = new AbortController();
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: 'out' } },
        {
          store: env.store,
          strategy: 'zip',
          signal: controller.signal,
          onEvent: (e) => {
            if (e.type === 'archive.packed') controller.abort();
          },
        },
      ),
    );
    expect(error.code).toBe('CANCELLED');
    expect(await exists(join(env.dstDir, 'out', 'take'))).toBe(false);
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
    expect(await hashTree(join(env.srcDir, 'take'))).toEqual(before);
  });

  const asRoot = process.getuid?.() === 0;
  test.skipIf(!asRoot)('a volume that fills up during extraction: INSUFFICIENT_SPACE on the destination, rolled back, source intact', async () => {
    const mount = join(env.dstDir, 'volume');
    mkdirSync(mount);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mount], { stdio: 'pipe' });
    } catch {
      return; // mounting is not permitted in this container: the reliability suite says so
    }
    try {
      session('take', 200, { 'big/take.mov': 3 * 1024 * 1024 });
      const before = await hashTree(join(env.srcDir, 'take'));
      const volume = new FsAdapter({ root: mount });
      await volume.connect();
      const filler = join(mount, 'filler.bin');
      const error = await failure(
        transfer(
          { mode: 'move', source: { portal: env.src, path: 'take' }, destination: { portal: new Portal('vol', volume), path: 'in' } },
          {
            store: env.store,
            strategy: 'zip',
            // Free space passed the preflight; something else takes it before extraction.
            onEvent: (e) => {
              if (e.type !== 'archive.packed') return;
              const free = Number(execFileSync('df', ['--output=avail', '-B1', mount], { encoding: 'utf8' }).split('\n')[1]);
              writeFileSync(filler, Buffer.alloc(Math.max(0, free - 512 * 1024)));
            },
          },
        ),
      );
      expect(await exists(filler)).toBe(true); // the job got past preflight and packing
      expect(error.code).toBe('INSUFFICIENT_SPACE');
      expect(error.portal).toBe('vol');
      expect(error.message).not.toContain(mount);
      unlinkSync(filler);
      expect(await exists(join(mount, 'in', 'take'))).toBe(false);
      expect(await leftovers(join(mount, 'in'))).toEqual([]);
      expect(await hashTree(join(env.srcDir, 'take'))).toEqual(before);
    } finally {
      execFileSync('umount', [mount]);
    }
  });
});
