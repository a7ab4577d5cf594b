import { appendFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { transfer, type KetterEvent } from '@ketter/core';
import { exists, expectValidEvents, failure, hashTree, leftovers, makeEnv, snapshot, writeTree, type TestEnv } from './support/env.js';

/*
 * ZIP_FIRST reads larger local files into the archive through a few fixed buffers, each
 * reused once the destination has written it (or once the writer has copied a short piece).
 * A buffer reused too early would put another piece's bytes in the archive: every file
 * here has content that differs at every offset, and must come out identical.
 */

const MiB = 1024 * 1024;
/** What the packer reads through: 4 buffers of 4 MiB (pack.ts). */
const SLOT = 4 * MiB;

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.cleanup();
});

/** Bytes that differ from one offset to the next and from one file to the next. */
function patterned(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(((i >>> 2) * 2654435761 + seed * 40503) >>> 0, i > size - 4 ? size - 4 : i);
  return b;
}

function zipTo(dest: string, onEvent?: (e: KetterEvent) => void) {
  return transfer(
    { mode: 'copy', source: { portal: env.src, path: 'Reel' }, destination: { portal: env.dst, path: dest } },
    { store: env.store, strategy: 'zip', onEvent: (e) => (env.events.push(e), onEvent?.(e)) },
  );
}

describe('ZIP_FIRST: larger local files through reused buffers', () => {
  test('files of many sizes around the buffers come out byte-identical, as DIRECT leaves them', async () => {
    await writeTree(env.srcDir, {
      // More than all four buffers at once, so each is reused several times.
      'Reel/picture.mov': patterned(5 * SLOT + 12_345, 1),
      'Reel/exactly one buffer.wav': patterned(SLOT, 2),
      // A last piece under 64 KiB: copied by the writer rather than handed to the stream.
      'Reel/short tail.wav': patterned(SLOT + 65_535, 3),
      'Reel/just over small.wav': patterned(MiB + 1, 4),
      'Reel/stems/a.wav': patterned(3 * MiB + 7, 5),
      'Reel/stems/b.wav': patterned(2 * SLOT - 1, 6),
      'Reel/stems/small.txt': 'tiny',
    });
    const expected = await hashTree(join(env.srcDir, 'Reel'));
    const result = await zipTo('by-zip');
    expect(result).toMatchObject({ status: 'succeeded', strategy: 'ZIP_FIRST', filesCopied: 7 });
    expect(await hashTree(join(env.dstDir, 'by-zip', 'Reel'))).toEqual(expected);
    await transfer(
      { mode: 'copy', source: { portal: env.src, path: 'Reel' }, destination: { portal: env.dst, path: 'by-direct' } },
      { store: env.store, strategy: 'direct' },
    );
    expect(await snapshot(join(env.dstDir, 'by-zip'))).toEqual(await snapshot(join(env.dstDir, 'by-direct')));
    const verified = env.events.filter((e): e is Extract<KetterEvent, { type: 'file.verified' }> => e.type === 'file.verified');
    expect(verified).toHaveLength(7);
    for (const v of verified) expect(v.sourceHash).toBe(v.destinationHash);
  });

  test('a large file deleted before it is packed: SOURCE_NOT_FOUND naming it, rolled back', async () => {
    await writeTree(env.srcDir, { 'Reel/a.mov': patterned(3 * MiB, 1), 'Reel/b.mov': patterned(3 * MiB, 2) });
    const error = await failure(zipTo('out', (e) => e.type === 'preflight.passed' && unlinkSync(join(env.srcDir, 'Reel/b.mov'))));
    expect(error.code).toBe('SOURCE_NOT_FOUND');
    expect(error.path).toBe('Reel/b.mov');
    expect(error.message).not.toContain(env.root);
    expect(await exists(join(env.dstDir, 'out', 'Reel'))).toBe(false);
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
    expect(await exists(join(env.srcDir, 'Reel/a.mov'))).toBe(true);
    const job = await env.store.getJob(error.jobId as string);
    expect(job?.status).toBe('failed');
    expectValidEvents(job?.events ?? []);
  });

  test('a large file that grows before it is packed: SOURCE_CHANGED, rolled back', async () => {
    await writeTree(env.srcDir, { 'Reel/a.mov': patterned(6 * MiB, 1) });
    const error = await failure(zipTo('out', (e) => e.type === 'preflight.passed' && appendFileSync(join(env.srcDir, 'Reel/a.mov'), 'more')));
    expect(error.code).toBe('SOURCE_CHANGED');
    expect(await exists(join(env.dstDir, 'out', 'Reel'))).toBe(false);
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
  });

  test('cancelled while a large file is packed: CANCELLED, nothing left behind', async () => {
    await writeTree(env.srcDir, { 'Reel/a.mov': patterned(24 * MiB, 1) });
    const controller = new AbortController();
    const error = await failure(
      transfer(
        { mode: 'copy', source: { portal: env.src, path: 'Reel' }, destination: { portal: env.dst, path: 'out' } },
        { store: env.store, strategy: 'zip', signal: controller.signal, onEvent: (e) => e.type === 'preflight.passed' && controller.abort() },
      ),
    );
    expect(error.code).toBe('CANCELLED');
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
  });
});
