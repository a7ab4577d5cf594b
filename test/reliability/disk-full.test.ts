import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { JsonlStore, Portal, transfer, type KetterEvent, type Mode } from '@ketter/core';
import { assertTransferInvariants, snapshotTree, type TreeSnapshot } from '@ketter/core/testing';
import { Dice, failureOf, mulberry32, removeDir, tempRoot, writeTree } from './support.js';

const MiB = 1024 * 1024;

/** Mount a small tmpfs as the destination volume; the reason it cannot be done, if so. */
async function mountTmpfs(): Promise<{ root: string; mount: string } | string> {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const root = await tempRoot('disk-full');
  const mount = join(root, 'volume');
  await mkdir(mount);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mount], { stdio: 'pipe' });
  } catch (error) {
    await removeDir(root);
    return `mount -t tmpfs is not permitted here (${String((error as Error).message).split('\n')[0]})`;
  }
  return { root, mount };
}

const mounted = await mountTmpfs();
const skipReason = typeof mounted === 'string' ? mounted : null;

describe.skipIf(skipReason !== null)(`a full destination volume${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  const { root, mount } = typeof mounted === 'string' ? { root: '', mount: '' } : mounted;
  let store: JsonlStore;
  let srcFs: FsAdapter;
  let dstFs: FsAdapter;
  const srcDir = join(root, 'src');

  beforeAll(async () => {
    await mkdir(srcDir);
    store = new JsonlStore({ dir: join(root, 'store') });
    await store.open();
    srcFs = new FsAdapter({ root: srcDir });
    dstFs = new FsAdapter({ root: mount });
    await srcFs.connect();
    await dstFs.connect();
  });
  afterEach(async () => {
    // Empty the volume and the source between cases.
    for (const name of await readdir(mount)) await rm(join(mount, name), { recursive: true, force: true });
    for (const name of await readdir(srcDir)) await rm(join(srcDir, name), { recursive: true, force: true });
  });
  afterAll(async () => {
    await store?.close();
    try {
      execFileSync('umount', [mount], { stdio: 'pipe' });
    } finally {
      await removeDir(root);
    }
  });

  async function source(files: Record<string, Buffer>): Promise<TreeSnapshot> {
    await writeTree(join(srcDir, 'Reel 2'), files);
    return (await snapshotTree(join(srcDir, 'Reel 2'))) as TreeSnapshot;
  }

  const run = (mode: Mode, strategy: 'direct' | 'zip', onEvent?: (e: KetterEvent) => void) =>
    transfer(
      { mode, source: { portal: new Portal('src', srcFs), path: 'Reel 2' }, destination: { portal: new Portal('vol', dstFs), path: 'in' } },
      { store, strategy, ...(onEvent ? { onEvent } : {}) },
    );

  // DIRECT writes the tree once; ZIP_FIRST needs room for the archive and the tree at once.
  describe.each<[Mode, 'direct' | 'zip', number]>([
    ['copy', 'direct', 3 * MiB],
    ['move', 'direct', 3 * MiB],
    ['copy', 'zip', 1.5 * MiB],
    ['move', 'zip', 1.5 * MiB],
  ])('%s, %s', (mode, strategy, fileSize) => {
    test('space taken by someone else after preflight: INSUFFICIENT_SPACE mid-job, rolled back, nothing lost', async () => {
      const dice = new Dice(mulberry32(7));
      const before = await source({ 'a.mov': dice.bytes(fileSize), 'b.mov': dice.bytes(fileSize) });
      let filled = false;
      const error = await failureOf(
        run(mode, strategy, (event) => {
          if (event.type !== 'preflight.passed') return;
          // Preflight saw enough room; another writer now takes half the volume.
          writeFileSync(join(mount, 'someone else.bin'), Buffer.alloc(4 * MiB, 1));
          filled = true;
        }),
      );
      expect(filled).toBe(true);
      expect(error.code).toBe('INSUFFICIENT_SPACE');
      const job = await store.getJob(error.jobId as string);
      expect(job?.status).toBe('failed');
      expect(job?.events.some((e) => e.type === 'preflight.passed')).toBe(true);
      expect((await readdir(mount)).sort()).toEqual(['someone else.bin']);
      await assertTransferInvariants({ before, sourceDir: join(srcDir, 'Reel 2'), destinationDir: join(mount, 'in'), mode, outcome: 'failed' });
    });

    test('a source larger than the free space is refused at preflight, before any write', async () => {
      const dice = new Dice(mulberry32(8));
      const before = await source({ 'a.mov': dice.bytes(5 * MiB), 'b.mov': dice.bytes(4 * MiB) });
      const events: KetterEvent[] = [];
      const error = await failureOf(run(mode, strategy, (e) => void events.push(e)));
      expect(error.code).toBe('INSUFFICIENT_SPACE');
      expect(events.map((e) => e.type)).toContain('preflight.failed');
      expect(events.map((e) => e.type)).not.toContain('preflight.passed');
      expect(await readdir(mount)).toEqual([]);
      await assertTransferInvariants({ before, sourceDir: join(srcDir, 'Reel 2'), destinationDir: join(mount, 'in'), mode, outcome: 'failed' });
    });
  });
});
