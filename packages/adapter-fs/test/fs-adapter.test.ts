import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Portal } from '@ketter/core';
import { FsAdapter } from '@ketter/adapter-fs';
import { LIST_CONCURRENCY, listTree, type WalkFs } from '../src/list.js';
import { renameNoClobber } from '../src/rename.js';
import { syncAll } from '../src/sync.js';
import { adapterSource, bundleChild, collect, readText, runAsNobody, unprivilegedUnavailable, writeText } from './support.js';

let base: string;
let root: string;
let adapter: FsAdapter;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'ketter-fs-'));
  root = join(base, 'root');
  await mkdir(root);
  adapter = new FsAdapter({ root });
  await adapter.connect();
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});


/** The real filesystem, counting the lstat calls a walk makes. */
function countingLstats(): { fs: WalkFs; lstats: () => number } {
  let calls = 0;
  return {
    fs: {
      readdir: (path, callback) => fs.readdir(path, 'utf8', callback),
      lstat: (path, callback) => {
        calls++;
        fs.lstat(path, callback);
      },
    },
    lstats: () => calls,
  };
}
describe('connect and identity', () => {
  test('a missing root or a file as root is INVALID_REQUEST naming the root', async () => {
    const missing = new FsAdapter({ root: join(base, 'nope') });
    await expect(missing.connect()).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringContaining(join(base, 'nope')) });
    await writeFile(join(base, 'file'), 'x');
    const file = new FsAdapter({ root: join(base, 'file') });
    await expect(file.connect()).rejects.toMatchObject({ code: 'INVALID_REQUEST', message: expect.stringContaining(join(base, 'file')) });
  });

  test('the root is the real path after connect, and locks are keyed fs:<absolute path>', async () => {
    await symlink(root, join(base, 'via-link'));
    const linked = new FsAdapter({ root: join(base, 'via-link/') });
    await linked.connect();
    expect(linked.root).toBe(adapter.root);
    expect(linked.kind).toBe('fs');
    expect(new Portal('p', linked).lockKey('a/b')).toBe(`fs:${adapter.root}/a/b`);
    expect(new Portal('p', linked).lockKey('')).toBe(`fs:${adapter.root}`);
  });

  test('the constructor does no I/O and refuses an empty root', () => {
    expect(() => new FsAdapter({ root: join(base, 'does/not/exist') })).not.toThrow();
    expect(() => new FsAdapter({ root: '' })).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });
});

describe('rename', () => {
  test('a file moves by link and unlink: one name, one link count, same inode', async () => {
    await writeText(adapter, 'a.wav', 'audio');
    const before = await stat(join(root, 'a.wav'));
    await adapter.rename('a.wav', 'b.wav');
    const after = await stat(join(root, 'b.wav'));
    expect(after.ino).toBe(before.ino);
    expect(after.nlink).toBe(1);
    expect(await adapter.stat('a.wav')).toBeNull();
  });

  test.each(['EPERM', 'ENOTSUP', 'EXDEV', 'EMLINK'])('falls back to check-then-rename when link() fails with %s', async (code) => {
    const refuse = async () => {
      throw Object.assign(new Error(`link refused (${code})`), { code });
    };
    await writeFile(join(root, 'from'), 'payload');
    await writeFile(join(root, 'taken'), 'keep');
    await expect(renameNoClobber(join(root, 'from'), join(root, 'taken'), 'from', 'taken', refuse)).rejects.toMatchObject({
      code: 'DESTINATION_EXISTS',
    });
    expect(await readFile(join(root, 'taken'), 'utf8')).toBe('keep');
    await renameNoClobber(join(root, 'from'), join(root, 'to'), 'from', 'to', refuse);
    expect(await readFile(join(root, 'to'), 'utf8')).toBe('payload');
    await expect(lstat(join(root, 'from'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('a link() failure that is a real refusal is reported, not papered over', async () => {
    const denied = async () => {
      throw Object.assign(new Error('denied'), { code: 'EACCES' });
    };
    await writeFile(join(root, 'from'), 'payload');
    await expect(renameNoClobber(join(root, 'from'), join(root, 'to'), 'from', 'to', denied)).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    expect(await readFile(join(root, 'from'), 'utf8')).toBe('payload');
    await expect(lstat(join(root, 'to'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('a symlink is renamed as a link, its target untouched', async () => {
    await writeText(adapter, 'target', 't');
    await symlink('target', join(root, 'link'));
    await adapter.rename('link', 'moved');
    expect((await adapter.stat('moved'))?.kind).toBe('symlink');
    expect(await adapter.readlink('moved')).toBe('target');
    expect(await readText(adapter, 'target')).toBe('t');
  });
});

describe('listing', () => {
  /** The real fs, except that `gone` (relative to the listed directory) vanishes after its parent was read. */
  const vanishing = (gone: string): WalkFs => ({
    readdir: (path, callback) => fs.readdir(path, 'utf8', callback),
    lstat: (path, callback) => {
      if (path.endsWith(`/${gone}`)) fs.lstat(join(path, '..', 'no such entry'), callback);
      else fs.lstat(path, callback);
    },
  });

  test('an entry that vanishes mid-walk fails the listing instead of hiding its directory', async () => {
    await mkdir(join(root, 'd', 'sub'), { recursive: true });
    await writeFile(join(root, 'd', 'sub', 'f.wav'), 'x');
    const error = await collect(listTree(join(root, 'd'), 'd', { fs: vanishing('sub') })).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'KetterError', code: 'SOURCE_CHANGED', path: 'd/sub' });
  });

  test('a directory replaced by a file mid-walk fails the listing', async () => {
    await mkdir(join(root, 'd', 'sub'), { recursive: true });
    const swapping: WalkFs = {
      readdir: (path, callback) => (path.endsWith('/sub') ? fs.readdir(join(root, 'file'), 'utf8', callback) : fs.readdir(path, 'utf8', callback)),
      lstat: (path, callback) => fs.lstat(path, callback),
    };
    await writeFile(join(root, 'file'), 'x');
    await expect(collect(listTree(join(root, 'd'), 'd', { fs: swapping }))).rejects.toMatchObject({ code: 'SOURCE_CHANGED', path: 'd/sub' });
  });

  test('every entry of a wide and deep tree is listed once, whatever the concurrency', async () => {
    const want: string[] = [];
    for (let d = 0; d < 6; d++) {
      let dir = `d${d}`;
      for (let depth = 0; depth < 3; depth++, dir = `${dir}/n${depth}`) {
        await mkdir(join(root, 't', dir), { recursive: true });
        want.push(`directory:${dir}`);
        for (let f = 0; f < 40; f++) {
          await writeFile(join(root, 't', dir, `f${f}`), 'x'.repeat(f));
          want.push(`file:${dir}/f${f}`);
        }
      }
    }
    for (const concurrency of [1, 3, 64]) {
      const entries = await collect(listTree(join(root, 't'), 't', { concurrency }));
      expect(entries.map((e) => `${e.kind}:${e.path}`).sort()).toEqual([...want].sort());
      expect(entries.find((e) => e.path === 'd2/n1/n2/f7')).toMatchObject({ kind: 'file', size: 7 });
    }
  });

  test('a consumer that stops early ends the walk', async () => {
    // More entries than the walk hands over per batch (256), so some are still to be lstat'ed.
    await mkdir(join(root, 'e'));
    for (let f = 0; f < 600; f++) await writeFile(join(root, 'e', `f${f}`), 'x');
    const { fs: counting, lstats } = countingLstats();
    for await (const entry of listTree(join(root, 'e'), 'e', { fs: counting, concurrency: 2 })) {
      expect(entry.kind).toBe('file');
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(lstats()).toBeLessThan(400);
  });

  test('the walk runs only a bounded distance ahead of a slow consumer', async () => {
    await mkdir(join(root, 'wide'));
    for (let f = 0; f < 6000; f++) fs.writeFileSync(join(root, 'wide', `f${f}`), '');
    const { fs: counting, lstats } = countingLstats();
    let seen = 0;
    for await (const entry of listTree(join(root, 'wide'), 'wide', { fs: counting })) {
      expect(entry.kind).toBe('file');
      if (++seen === 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        // Paused at 4096 entries found and not taken, plus the calls that were in flight.
        expect(lstats()).toBeLessThanOrEqual(4096 + LIST_CONCURRENCY + 256);
      }
    }
    expect(seen).toBe(6000);
  });

  test('a root whose own path holds a newline and escapes still lists', async () => {
    const odd = join(base, 'odd\n%0A root');
    await mkdir(join(odd, 'in\nner'), { recursive: true });
    await writeFile(join(odd, 'in\nner', 'f%25.wav'), 'x');
    const oddAdapter = new FsAdapter({ root: odd });
    await oddAdapter.connect();
    expect((await collect(oddAdapter.list(''))).map((e) => e.path).sort()).toEqual(['in\nner', 'in\nner/f%25.wav']);
  });
});

describe('statfs, sync, removal', () => {
  test('statfs of a path that does not exist yet reports its nearest existing ancestor', async () => {
    await adapter.mkdir('dest');
    const { freeBytes } = await adapter.statfs('dest/not/yet/there.wav');
    expect(freeBytes).toBeGreaterThan(0);
    await writeText(adapter, 'file', 'x');
    expect((await adapter.statfs('file/below-a-file')).freeBytes).toBeGreaterThan(0);
  });

  test('sync handles more paths than its concurrency bound', async () => {
    await adapter.mkdir('many');
    const paths = Array.from({ length: 100 }, (_, i) => `many/${i}.wav`);
    await Promise.all(paths.map((p) => writeText(adapter, p, p)));
    await adapter.sync([...paths, 'many', '']);
  });

  test('without coreutils sync -f, many paths are fsynced one by one, and a failure names its path', async () => {
    await adapter.mkdir('many');
    const paths = Array.from({ length: 40 }, (_, i) => `many/${i}.wav`);
    await Promise.all(paths.map((p) => writeText(adapter, p, p)));
    const path = process.env.PATH;
    process.env.PATH = join(base, 'no-such-bin');
    try {
      await syncAll([...paths, 'many'], (rel) => join(root, rel));
      await expect(syncAll([...paths, 'many/gone.wav'], (rel) => join(root, rel))).rejects.toMatchObject({
        code: 'SOURCE_NOT_FOUND',
        path: 'many/gone.wav',
      });
    } finally {
      process.env.PATH = path;
    }
  });

  test('removeTree refuses the root itself', async () => {
    await writeText(adapter, 'f', 'x');
    await expect(adapter.removeTree('')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    expect(await readText(adapter, 'f')).toBe('x');
  });

  test('list of a file is INVALID_REQUEST; stat of a FIFO is other', async () => {
    await writeText(adapter, 'f', 'x');
    await expect(collect(adapter.list('f'))).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    const made = spawnSync('mkfifo', [join(root, 'pipe')]);
    if (made.status === 0) expect((await adapter.stat('pipe'))?.kind).toBe('other');
  });

  test('an aborted listing stops with CANCELLED', async () => {
    await adapter.mkdir('d/e');
    await writeText(adapter, 'd/e/f', 'x');
    const controller = new AbortController();
    controller.abort();
    await expect(collect(adapter.list('d', { signal: controller.signal }))).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  test('an aborted write stops with CANCELLED', async () => {
    const controller = new AbortController();
    const source = Readable.from(
      (async function* () {
        yield Buffer.alloc(1024);
        controller.abort(new Error('operator pressed Ctrl-C'));
        yield Buffer.alloc(1024);
      })(),
    );
    await expect(pipeline(source, adapter.openWrite('w.bin', { signal: controller.signal }))).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});

const unprivileged = unprivilegedUnavailable();

describe('as an unprivileged user', () => {
  test.skipIf(unprivileged !== null)(`PERMISSION_DENIED for unreadable directories and files${unprivileged ? ` (skipped: ${unprivileged})` : ''}`, async () => {
    // nobody must be able to reach the root, but not what is locked inside it.
    await chmod(base, 0o755);
    await mkdir(join(root, 'open/locked'), { recursive: true });
    await writeFile(join(root, 'open/locked/inner.wav'), 'inner');
    await chmod(join(root, 'open/locked'), 0o700);
    await writeFile(join(root, 'open/readable.wav'), 'ok');
    await writeFile(join(root, 'secret.wav'), 'secret', { mode: 0o600 });
    await chmod(join(root, 'secret.wav'), 0o600);
    const child = join(base, 'child.cjs');
    await bundleChild(
      `
      import { Readable } from 'node:stream';
      import { pipeline } from 'node:stream/promises';
      import { FsAdapter } from ${JSON.stringify(adapterSource)};
      (async () => {
        const adapter = new FsAdapter({ root: process.argv[2] });
        await adapter.connect();
        const results: Record<string, unknown> = {};
        const attempt = async (name: string, fn: () => Promise<unknown>) => {
          try { results[name] = { ok: await fn() }; }
          catch (e: any) { results[name] = { code: e.code, path: e.path, name: e.name }; }
        };
        await attempt('list', async () => { for await (const _ of adapter.list('')) {} });
        await attempt('listOpen', async () => { for await (const _ of adapter.list('open')) {} });
        await attempt('read', async () => { for await (const _ of adapter.openRead('secret.wav')) {} });
        await attempt('readOk', async () => { let n = 0; for await (const c of adapter.openRead('open/readable.wav')) n += c.length; return n; });
        await attempt('stat', () => adapter.stat('open/locked/inner.wav'));
        await attempt('write', () => pipeline(Readable.from([Buffer.from('x')]), adapter.openWrite('new.wav')));
        await attempt('mkdir', () => adapter.mkdir('open/new-dir'));
        process.stdout.write(JSON.stringify(results));
      })();
      `,
      child,
    );
    await chmod(child, 0o644);
    const run = runAsNobody(child, [root]);
    expect(run.stderr).toBe('');
    const results = JSON.parse(run.stdout) as Record<string, { code?: string; path?: string; name?: string; ok?: unknown }>;
    expect(results.list).toEqual({ code: 'PERMISSION_DENIED', path: 'open/locked', name: 'KetterError' });
    expect(results.listOpen).toMatchObject({ code: 'PERMISSION_DENIED', path: 'open/locked' });
    expect(results.read).toEqual({ code: 'PERMISSION_DENIED', path: 'secret.wav', name: 'KetterError' });
    expect(results.readOk).toEqual({ ok: 2 });
    expect(results.stat).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(results.write).toMatchObject({ code: 'PERMISSION_DENIED', path: 'new.wav' });
    expect(results.mkdir).toMatchObject({ code: 'PERMISSION_DENIED' });
  });
});

/** Mount a 1 MiB tmpfs at `dir`; null on success, else why not. */
function mountSmallTmpfs(dir: string): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
  return result.status === 0 ? null : `mount not permitted: ${(result.stderr || String(result.error)).trim()}`;
}

describe('a full volume', () => {
  test('ENOSPC maps to INSUFFICIENT_SPACE; statfs sees the small volume; cross-device rename fails cleanly', async (ctx) => {
    const small = join(root, 'small');
    await mkdir(small);
    const why = mountSmallTmpfs(small);
    if (why !== null) return ctx.skip(why);
    try {
      const { freeBytes } = await adapter.statfs('small/not/yet');
      expect(freeBytes).toBeLessThanOrEqual(1024 * 1024);
      const chunk = Buffer.alloc(256 * 1024, 7);
      const tooBig = Readable.from(Array.from({ length: 8 }, () => chunk));
      await expect(pipeline(tooBig, adapter.openWrite('small/big.wav'))).rejects.toMatchObject({
        name: 'KetterError',
        code: 'INSUFFICIENT_SPACE',
        path: 'small/big.wav',
      });
      // link() across devices fails with EXDEV, the fallback rename too: the source stays.
      await writeText(adapter, 'outer.wav', 'outer');
      await expect(adapter.rename('outer.wav', 'small/outer.wav')).rejects.toMatchObject({ name: 'KetterError' });
      expect(await readText(adapter, 'outer.wav')).toBe('outer');
    } finally {
      spawnSync('umount', [small]);
    }
  });
});
