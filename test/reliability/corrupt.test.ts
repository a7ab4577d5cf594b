import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { Portal, recover, transfer, type Mode } from '@ketter/core';
import { assertTransferInvariants, checkTransferInvariants, FaultyAdapter, snapshotTree, type TreeSnapshot } from '@ketter/core/testing';
import { failureOf, makeWorld, writeTree, type World } from './support.js';

let world: World;
beforeEach(async () => {
  world = await makeWorld('corrupt');
});
afterEach(async () => {
  await world.close();
});

const TAKE = {
  'Take 7/dialog.wav': Buffer.alloc(300_000, 7),
  'Take 7/music/stem A.wav': Buffer.alloc(50_000, 1),
  'Take 7/music/stem B.wav': Buffer.alloc(20_000, 2),
  'Take 7/notes.txt': 'slate 7',
  'Take 7/empty/': '',
};

async function prepare(): Promise<TreeSnapshot> {
  await writeTree(world.srcDir, TAKE);
  return (await snapshotTree(join(world.srcDir, 'Take 7'))) as TreeSnapshot;
}

describe.each<[Mode, 'direct' | 'zip']>([
  ['copy', 'direct'],
  ['move', 'direct'],
  ['copy', 'zip'],
  ['move', 'zip'],
])('a byte corrupted while staging (%s, %s)', (mode, strategy) => {
  test('fails with CHECKSUM_MISMATCH, rolls back, and loses nothing', async () => {
    const before = await prepare();
    // Every write of stem A flips one byte on its way to disk (the archive, for ZIP_FIRST, holds
    // it under another name: the fault then targets the archive's bytes of that file).
    const target = strategy === 'direct' ? /stem A\.wav$/ : /\.archive\.zip$/;
    const dst = new FaultyAdapter(world.dstFs, [{ op: 'openWrite', path: target, kind: 'corrupt', afterBytes: 40_000, times: Infinity }]);
    const error = await failureOf(
      transfer(
        { mode, source: { portal: new Portal('src', world.srcFs), path: 'Take 7' }, destination: { portal: new Portal('dst', dst), path: 'in' } },
        { store: world.store, strategy },
      ),
    );
    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(dst.fired.length).toBeGreaterThan(0);
    expect(await readdir(world.dstDir)).toEqual([]);
    const job = await world.store.getJob(error.jobId as string);
    expect(job?.status).toBe('failed');
    await assertTransferInvariants({ before, sourceDir: join(world.srcDir, 'Take 7'), destinationDir: join(world.dstDir, 'in'), mode, outcome: 'failed' });
  });
});

test('the invariant checker itself catches a partial final tree, a lost file and leftover staging', async () => {
  const before = await prepare();
  const sourceDir = join(world.srcDir, 'Take 7');
  // A "move" that lost a file: the source is gone and the destination lacks notes.txt.
  await writeTree(join(world.dstDir, 'Take 7'), { 'dialog.wav': TAKE['Take 7/dialog.wav'], 'extra.txt': 'x' });
  await writeTree(world.dstDir, { '.ketter-0000.partial/x': 'y' });
  const { rm } = await import('node:fs/promises');
  await rm(sourceDir, { recursive: true });
  const violations = await checkTransferInvariants({ before, sourceDir, destinationDir: world.dstDir, mode: 'move', outcome: 'failed' });
  const rules = new Set(violations.map((v) => v.rule));
  expect(rules).toEqual(new Set(['final-partial', 'final-extra', 'file-lost', 'staging-left']));
  await expect(assertTransferInvariants({ before, sourceDir, destinationDir: world.dstDir, mode: 'move', outcome: 'failed' })).rejects.toThrow(/file-lost/);
});

// A rollback that cannot finish leaves staging the failure record names; recovery removes it.
test('a staging path left by a failed rollback is removed by recovery', async () => {
  const before = await prepare();
  const dst = new FaultyAdapter(world.dstFs, [
    { op: 'openWrite', path: /stem A\.wav$/, kind: 'corrupt', times: Infinity },
    { op: 'removeTree', path: /\.ketter-/, kind: 'fail', times: Infinity },
  ]);
  const portal = new Portal('dst', dst);
  const error = await failureOf(
    transfer(
      { mode: 'move', source: { portal: new Portal('src', world.srcFs), path: 'Take 7' }, destination: { portal, path: 'in' } },
      { store: world.store, strategy: 'direct' },
    ),
  );
  expect(error.code).toBe('CHECKSUM_MISMATCH');
  dst.clear();
  await recover({ store: world.store, portals: { dst: new Portal('dst', world.dstFs) } });
  await assertTransferInvariants({ before, sourceDir: join(world.srcDir, 'Take 7'), destinationDir: join(world.dstDir, 'in'), mode: 'move', outcome: 'recovered' });
});

// Recovery gap: recover() picks up an ended job only when the staging path its
// preflight.passed names was never recorded as removed. When a ZIP_FIRST rollback removes
// the staging directory but cannot remove the archive, the job looks clean and its
// `.ketter-<id>.archive.zip` stays forever. Passes once recovery also checks the archive.
test('an archive left by a failed ZIP_FIRST rollback is removed by recovery', async () => {
  const before = await prepare();
  const dst = new FaultyAdapter(world.dstFs, [{ op: 'removeTree', path: /\.archive\.zip$/, kind: 'fail', times: Infinity }]);
  const error = await failureOf(
    transfer(
      { mode: 'move', source: { portal: new Portal('src', world.srcFs), path: 'Take 7' }, destination: { portal: new Portal('dst', dst), path: 'in' } },
      { store: world.store, strategy: 'zip' },
    ),
  );
  expect(error.code).toBe('IO_ERROR');
  await recover({ store: world.store, portals: { dst: new Portal('dst', world.dstFs) } });
  await assertTransferInvariants({ before, sourceDir: join(world.srcDir, 'Take 7'), destinationDir: join(world.dstDir, 'in'), mode: 'move', outcome: 'recovered' });
});
