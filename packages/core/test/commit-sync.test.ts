import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { Portal, transfer } from '@ketter/core';
import { SYNC_PIECE } from '../src/engine/commit.js';
import { makeEnv, type TestEnv } from './support/env.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.cleanup();
});

/** A local destination that records every `sync()` call, and whether staging was still in place. */
class RecordingFsAdapter extends FsAdapter {
  calls: { paths: string[]; staged: boolean }[] = [];
  renamed = false;
  override async sync(paths: readonly string[]): Promise<void> {
    this.calls.push({ paths: [...paths], staged: !this.renamed });
    await super.sync(paths);
  }
  override async rename(from: string, to: string): Promise<void> {
    await super.rename(from, to);
    if (from.includes('.ketter-')) this.renamed = true;
  }
}

test('a tree larger than one sync piece is made durable whole, in pieces, before the rename', async () => {
  const nFiles = SYNC_PIECE + 100;
  for (let d = 0; d < 4; d++) {
    const dir = join(env.srcDir, 'Session', `reel ${d}`);
    mkdirSync(dir, { recursive: true });
    for (let i = d; i < nFiles; i += 4) writeFileSync(join(dir, `clip ${i}.wav`), `clip ${i}`);
  }
  const adapter = new RecordingFsAdapter({ root: env.dstDir });
  await adapter.connect();
  const result = await transfer(
    { mode: 'copy', source: { portal: env.src, path: 'Session' }, destination: { portal: new Portal('dst', adapter), path: 'out' } },
    { store: env.store, strategy: 'direct' },
  );
  expect(result.filesCopied).toBe(nFiles);

  const before = adapter.calls.filter((c) => c.staged);
  expect(before.length).toBeGreaterThan(1);
  for (const call of before) expect(call.paths.length).toBeLessThanOrEqual(SYNC_PIECE);
  const synced = before.flatMap((c) => c.paths);
  const staging = synced[synced.length - 1] as string;
  expect(staging).toMatch(/^out\/\.ketter-.*\.partial$/);
  // Every file and folder of the staged tree, and staging itself, once each.
  expect(synced.length).toBe(nFiles + 4 + 1);
  expect(new Set(synced).size).toBe(synced.length);
  for (let d = 0; d < 4; d++) expect(synced).toContain(`${staging}/reel ${d}`);
  expect(synced).toContain(`${staging}/reel 3/clip ${nFiles - 1}.wav`);
  expect(synced.filter((p) => p.endsWith('.wav')).length).toBe(nFiles);
  // After the rename, the destination folder that now holds the new name.
  expect(adapter.calls.filter((c) => !c.staged).map((c) => c.paths)).toEqual([['out']]);
});
