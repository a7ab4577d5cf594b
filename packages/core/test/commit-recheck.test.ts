import { mkdirSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { KetterError, Portal, transfer, type ListEntry, type ListOptions } from '@ketter/core';
import { postWalk } from '../src/engine/local-lane.js';
import { LocalWalkError, walkLocalFiles } from '../src/engine/local-tree.js';
import { makeEnv, writeTree, type TestEnv } from './support/env.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.cleanup();
});

/**
 * A local destination that lets a test change the committed tree right after the commit's
 * rename, before the re-check; and counts its listings. With `local: false` it hides
 * `localPath`, as a network adapter would.
 */
class TamperingFsAdapter extends FsAdapter {
  lists = 0;
  constructor(
    root: string,
    private readonly tamper: (finalAbs: string) => void,
    local = true,
  ) {
    super({ root });
    if (!local) Object.defineProperty(this, 'localPath', { value: undefined });
  }
  override async rename(from: string, to: string): Promise<void> {
    await super.rename(from, to);
    if (from.includes('.ketter-')) this.tamper(join(this.root, to));
  }
  override list(path: string, options?: ListOptions): AsyncIterable<ListEntry> {
    this.lists += 1;
    return super.list(path, options);
  }
}

/** Forty small files in two folders: enough to go through the local lane. */
async function session(): Promise<void> {
  const files: Record<string, string> = {};
  for (let i = 0; i < 40; i++) files[`Session/${i % 2 ? 'Audio Files' : 'Bounced Files'}/take ${i}.wav`] = `take ${i} `.repeat(i + 1);
  await writeTree(env.srcDir, files);
}

async function run(tamper: (finalAbs: string) => void, local: boolean, strategy: 'direct' | 'zip' = 'direct'): Promise<{ error: KetterError; lists: number }> {
  const adapter = new TamperingFsAdapter(env.dstDir, tamper, local);
  await adapter.connect();
  const error = await transfer(
    { mode: 'copy', source: { portal: env.src, path: 'Session' }, destination: { portal: new Portal('dst', adapter), path: 'out' } },
    { store: env.store, onEvent: env.onEvent, strategy },
  ).then(
    () => {
      throw new Error('expected the re-check to fail the job');
    },
    (e: unknown) => e as KetterError,
  );
  return { error, lists: adapter.lists };
}

describe('the re-check after commit', () => {
  test('ZIP_FIRST is re-checked the same way', async () => {
    await session();
    const truncated = await run((finalAbs) => truncateSync(join(finalAbs, 'Audio Files/take 7.wav'), 3), true, 'zip');
    expect(truncated.error.message).toContain('out/Session/Audio Files/take 7.wav is 3 B');
    await env.cleanup();
    env = await makeEnv();
    await session();
    const removed = await run((finalAbs) => unlinkSync(join(finalAbs, 'Bounced Files/take 4.wav')), true, 'zip');
    expect(removed.error.message).toContain('out/Session/Bounced Files/take 4.wav missing');
  });

  for (const local of [true, false]) {
    const how = local ? 'listed on the lane workers' : 'listed through the adapter';
    test(`a file truncated after the rename is caught (${how})`, async () => {
      await session();
      const { error, lists } = await run((finalAbs) => truncateSync(join(finalAbs, 'Audio Files/take 7.wav'), 3), local);
      expect(error).toBeInstanceOf(KetterError);
      expect(error.code).toBe('IO_ERROR');
      expect(error.message).toContain('committed destination does not match what was verified');
      expect(error.message).toContain('out/Session/Audio Files/take 7.wav is 3 B');
      // The lane's workers do the listing when they are there; otherwise the adapter does.
      expect(lists).toBe(local ? 0 : 1);
      expect(env.events.find((e) => e.type === 'job.committed')).toBeUndefined();
      expect(env.events.at(-1)).toMatchObject({ type: 'job.failed', committed: true });
    });

    test(`a file removed, or replaced by a link to an equal file, is caught (${how})`, async () => {
      await session();
      const removed = await run((finalAbs) => unlinkSync(join(finalAbs, 'Bounced Files/take 4.wav')), local);
      expect(removed.error.message).toContain('out/Session/Bounced Files/take 4.wav missing');
      await env.cleanup();
      env = await makeEnv();
      await session();
      const linked = await run((finalAbs) => {
        const victim = join(finalAbs, 'Bounced Files/take 4.wav');
        writeFileSync(join(finalAbs, '..', 'decoy.wav'), 'take 4 '.repeat(5));
        unlinkSync(victim);
        symlinkSync('../../decoy.wav', victim);
      }, local);
      // Links are never followed: a link is not the file that was verified.
      expect(linked.error.message).toContain('out/Session/Bounced Files/take 4.wav missing');
    });
  }
});

/** Every file a walk hands over, by path; a path handed over twice fails the test. */
async function localFileSizes(absDir: string, relDir: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  await walkLocalFiles(absDir, relDir, (path, size) => {
    if (sizes.has(path)) throw new Error(`${path} listed twice`);
    sizes.set(path, size);
  });
  return sizes;
}

describe('walkLocalFiles', () => {
  test('lists every regular file of a wide, deep tree with its size, never through links', async () => {
    const root = join(env.root, 'tree');
    const want = new Map<string, number>();
    for (let d = 0; d < 7; d++) {
      let dir = `d${d}`;
      for (let depth = 0; depth < 4; depth++, dir = `${dir}/n${depth}`) {
        mkdirSync(join(root, dir), { recursive: true });
        for (let f = 0; f < 150; f++) {
          writeFileSync(join(root, dir, `f${f}.wav`), Buffer.alloc(f));
          want.set(`${dir}/f${f}.wav`, f);
        }
      }
    }
    writeFileSync(join(root, 'top.wav'), 'xyz');
    want.set('top.wav', 3);
    symlinkSync('d0', join(root, 'link-to-dir'));
    symlinkSync('top.wav', join(root, 'link-to-file'));
    const sizes = await localFileSizes(root, 'tree');
    expect(sizes.size).toBe(want.size);
    expect(new Map([...sizes].sort())).toEqual(new Map([...want].sort()));
  });

  test('a root that is a link to a directory, or a file, is refused rather than followed', async () => {
    mkdirSync(join(env.root, 'real'));
    writeFileSync(join(env.root, 'real', 'f.wav'), 'x');
    symlinkSync('real', join(env.root, 'link'));
    await expect(localFileSizes(join(env.root, 'link'), 'out/link')).rejects.toMatchObject({ code: 'ENOTDIR', path: 'out/link' });
    await expect(localFileSizes(join(env.root, 'real', 'f.wav'), 'out/f.wav')).rejects.toBeInstanceOf(LocalWalkError);
  });

  test('a directory that cannot be read is an errno-style error naming the root-relative path', async () => {
    const error = await localFileSizes(join(env.root, 'no such dir'), 'out/no such dir').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LocalWalkError);
    expect(error).toMatchObject({ code: 'ENOENT', path: 'out/no such dir' });
    expect((error as Error).message).not.toContain(env.root);
  });

  test('a visitor that throws fails the walk with its error, and the walk stops handing out folders', async () => {
    const root = join(env.root, 'many');
    for (let d = 0; d < 40; d++) {
      mkdirSync(join(root, `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) writeFileSync(join(root, `d${d}`, `f${f}.wav`), 'x');
    }
    let seen = 0;
    const refused = new Error('refused by the visitor');
    await expect(
      walkLocalFiles(root, 'many', () => {
        seen += 1;
        throw refused;
      }),
    ).rejects.toBe(refused);
    // The first throw ends it: nothing in flight or still to come reaches the visitor.
    expect(seen).toBe(1);
  });

  test('a directory larger than a page is listed whole, each file once, in pages of the budget', async () => {
    const root = join(env.root, 'wide');
    const want = new Map<string, number>();
    mkdirSync(join(root, 'Audio Files', 'nested'), { recursive: true });
    for (let f = 0; f < 1300; f++) {
      writeFileSync(join(root, 'Audio Files', `clip ${f}.wav`), Buffer.alloc(f % 17));
      want.set(`Audio Files/clip ${f}.wav`, f % 17);
    }
    for (let f = 0; f < 300; f++) {
      writeFileSync(join(root, 'Audio Files', 'nested', `n${f}.wav`), 'ab');
      want.set(`Audio Files/nested/n${f}.wav`, 2);
    }
    const sizes = await localFileSizes(root, 'wide');
    expect(new Map([...sizes].sort())).toEqual(new Map([...want].sort()));

    // The protocol underneath: a worker never holds more than a page of a large directory.
    const pages: { paths: string[]; pending: string[] }[] = [];
    const last = (await postWalk({ root: join(root, 'Audio Files'), dirs: [''], budget: 500 }, (page) => pages.push(page as never))) as {
      paths: string[];
      pending: string[];
    };
    // 1,601 entries (1,300 files, the folder "nested" and its 300 files): the worker goes on
    // into "nested" while its page has room, so a full page also falls inside that folder.
    expect(pages.map((p) => p.paths.length)).toEqual([500, 500, 500]);
    expect(pages.every((p) => p.pending.length === 0)).toBe(true);
    expect(last.paths).toHaveLength(101);
    expect(last.pending).toEqual([]);
    expect(new Set([...pages.flatMap((p) => p.paths), ...last.paths]).size).toBe(1601);
  });

  test('a visitor that throws inside a large directory is handed nothing after its throw', async () => {
    const root = join(env.root, 'one wide folder');
    mkdirSync(root);
    for (let f = 0; f < 2000; f++) writeFileSync(join(root, `f${f}.wav`), 'x');
    let seen = 0;
    const refused = new Error('refused by the visitor');
    await expect(
      walkLocalFiles(root, 'one wide folder', () => {
        seen += 1;
        if (seen === 300) throw refused;
      }),
    ).rejects.toBe(refused);
    expect(seen).toBe(300);
  });
});
