import { appendFileSync, symlinkSync, utimesSync } from 'node:fs';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { KetterError, plan, scan, transfer, runTransfer, type KetterEvent } from '@ketter/core';
import { FaultyAdapter } from '@ketter/core/testing';
import { exists, expectValidEvents, failure, hashTree, leftovers, makeEnv, sha256, snapshot, writeTree, type TestEnv } from './support/env.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.cleanup();
});

const SESSION = {
  'Mézcla final/voz 01 ñ.wav': 'a'.repeat(3000),
  'Mézcla final/日本語.wav': 'b'.repeat(10),
  'Mézcla final/sub dir/.hidden': 'c',
  'Mézcla final/empty.txt': '',
};

describe('DIRECT lifecycle', () => {
  test('a directory source lands at destination/<basename>/… byte for byte, mtimes kept, every event valid', async () => {
    await writeTree(env.srcDir, SESSION);
    const mtime = new Date('2024-02-03T04:05:06.789Z');
    utimesSync(join(env.srcDir, 'Mézcla final/voz 01 ñ.wav'), mtime, mtime);
    const result = await transfer(
      { mode: 'copy', source: { portal: env.src, path: 'Mézcla final' }, destination: { portal: env.dst, path: 'incoming/today' } },
      { store: env.store, onEvent: env.onEvent, strategy: 'direct' },
    );
    expect(result).toMatchObject({ status: 'succeeded', strategy: 'DIRECT', filesCopied: 4, bytesCopied: 3011 });
    expect(result.destination).toEqual({ portal: 'dst', path: 'incoming/today/Mézcla final' });
    expect(await hashTree(join(env.dstDir, 'incoming/today/Mézcla final'))).toEqual(await hashTree(join(env.srcDir, 'Mézcla final')));
    const copied = await stat(join(env.dstDir, 'incoming/today/Mézcla final/voz 01 ñ.wav'));
    expect(copied.mtimeMs).toBe(mtime.getTime());
    expect(await leftovers(join(env.dstDir, 'incoming/today'))).toEqual([]);
    expect(await exists(join(env.srcDir, 'Mézcla final/empty.txt'))).toBe(true);

    const job = await env.store.getJob(result.jobId);
    expect(job?.status).toBe('succeeded');
    expectValidEvents(job?.events ?? []);
    const types = (job?.events ?? []).map((e) => e.type);
    expect(types[0]).toBe('job.created');
    expect(types.filter((t) => t === 'file.verified')).toHaveLength(4);
    expect(types.indexOf('job.committed')).toBeGreaterThan(types.lastIndexOf('file.verified'));
    expect(types.at(-1)).toBe('job.succeeded');
    expect(env.events.some((e) => e.type === 'job.progress')).toBe(true);
  });

  test('a file source lands at destination/<basename>', async () => {
    await writeTree(env.srcDir, { 'reel 1/Final Mix ç.wav': 'x'.repeat(100_000) });
    const result = await transfer(
      { mode: 'copy', source: { portal: env.src, path: 'reel 1/Final Mix ç.wav' }, destination: { portal: env.dst, path: '' } },
      { store: env.store },
    );
    expect(result.destination.path).toBe('Final Mix ç.wav');
    expect(sha256(await readFile(join(env.dstDir, 'Final Mix ç.wav')))).toBe(sha256('x'.repeat(100_000)));
    expect(await leftovers(env.dstDir)).toEqual([]);
  });

  test('a large file is verified while it is copied; a corrupted write of it is caught', async () => {
    const big = Buffer.alloc(80 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    await writeTree(env.srcDir, { 'reel/picture.mov': big });
    const ok = await transfer(
      { mode: 'copy', source: { portal: env.src, path: 'reel/picture.mov' }, destination: { portal: env.dst, path: 'good' } },
      { store: env.store, onEvent: env.onEvent },
    );
    const verified = env.events.find((e) => e.type === 'file.verified');
    expect(verified).toMatchObject({ method: 'reread', sourceHash: sha256(big), destinationHash: sha256(big) });
    expect(sha256(await readFile(join(env.dstDir, 'good/picture.mov')))).toBe(sha256(big));
    expect(ok.bytesCopied).toBe(big.length);

    // Every write of it, including preflight's writability probe of the staging name.
    const faulty = new FaultyAdapter(env.dst.adapter, [{ op: 'openWrite', kind: 'corrupt', afterBytes: 50 * 1024 * 1024, times: Infinity }]);
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'reel/picture.mov' }, destination: { portal: env.portalOver(faulty), path: 'bad' } },
        { store: env.store },
      ),
    );
    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(faulty.fired).toHaveLength(1);
    expect(await leftovers(join(env.dstDir, 'bad'))).toEqual([]);
    expect(sha256(await readFile(join(env.srcDir, 'reel/picture.mov')))).toBe(sha256(big));
  });

  test('DESTINATION_EXISTS touches nothing', async () => {
    await writeTree(env.srcDir, SESSION);
    await writeTree(env.dstDir, { 'Mézcla final/voz 01 ñ.wav': 'older take', 'Mézcla final/notes.txt': 'keep me' });
    const before = await snapshot(env.dstDir);
    const error = await failure(
      transfer({ mode: 'move', source: { portal: env.src, path: 'Mézcla final' }, destination: { portal: env.dst, path: '' } }, { store: env.store }),
    );
    expect(error.code).toBe('DESTINATION_EXISTS');
    expect(await snapshot(env.dstDir)).toEqual(before);
    expect(await hashTree(join(env.srcDir, 'Mézcla final'))).toEqual(await hashTree(join(env.srcDir, 'Mézcla final')));
    const job = await env.store.getJob(error.jobId as string);
    expect(job?.status).toBe('failed');
    expect(job?.events.map((e) => e.type)).toContain('preflight.failed');
  });

  test('SOURCE_NOT_FOUND creates no destination and is recorded', async () => {
    const error = await failure(
      transfer({ mode: 'copy', source: { portal: env.src, path: 'nope' }, destination: { portal: env.dst, path: 'new/dir' } }, { store: env.store }),
    );
    expect(error.code).toBe('SOURCE_NOT_FOUND');
    expect(await exists(join(env.dstDir, 'new'))).toBe(false);
    expect((await env.store.getJob(error.jobId as string))?.error?.code).toBe('SOURCE_NOT_FOUND');
  });

  test('a destination path through a link out of its portal is refused, after nothing was made, with no rollback noise', async () => {
    await writeTree(env.srcDir, SESSION);
    const before = await hashTree(join(env.srcDir, 'Mézcla final'));
    symlinkSync(env.srcDir, join(env.dstDir, 'elsewhere'));
    const error = await failure(
      transfer({ mode: 'move', source: { portal: env.src, path: 'Mézcla final' }, destination: { portal: env.dst, path: 'elsewhere/in' } }, { store: env.store }),
    );
    expect(['PATH_NOT_ALLOWED', 'SYMLINK_NOT_ALLOWED']).toContain(error.code);
    // The destination was never resolved: there was nothing to roll back, and no report of trying.
    expect(error.message).not.toContain('rollback');
    expect(await hashTree(join(env.srcDir, 'Mézcla final'))).toEqual(before);
    const job = await env.store.getJob(error.jobId as string);
    expect(job?.status).toBe('failed');
  });

  test('a corrupted write ends in CHECKSUM_MISMATCH, staging removed, source intact', async () => {
    await writeTree(env.srcDir, { 'take/a.wav': 'a'.repeat(50_000), 'take/b.wav': 'b'.repeat(70_000) });
    const before = await hashTree(join(env.srcDir, 'take'));
    const faulty = new FaultyAdapter(env.dst.adapter, [{ op: 'openWrite', path: /b\.wav$/, kind: 'corrupt' }]);
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'take' }, destination: { portal: env.portalOver(faulty), path: 'out' } },
        { store: env.store },
      ),
    );
    expect(error.code).toBe('CHECKSUM_MISMATCH');
    expect(await hashTree(join(env.srcDir, 'take'))).toEqual(before);
    expect(await exists(join(env.dstDir, 'out'))).toBe(false);
  });

  test('MOVE deletes the source only after verification and commit', async () => {
    await writeTree(env.srcDir, SESSION);
    const expected = await hashTree(join(env.srcDir, 'Mézcla final'));
    const result = await transfer(
      { mode: 'move', source: { portal: env.src, path: 'Mézcla final' }, destination: { portal: env.dst, path: '' } },
      { store: env.store, onEvent: env.onEvent },
    );
    expect(result.sourcesKept).toEqual([]);
    expect(await exists(join(env.srcDir, 'Mézcla final'))).toBe(false);
    expect(await hashTree(join(env.dstDir, 'Mézcla final'))).toEqual(expected);
    const types = env.events.map((e) => e.type);
    const firstDelete = types.indexOf('source.deleted');
    expect(firstDelete).toBeGreaterThan(types.indexOf('job.committed'));
    expect(types.indexOf('job.committed')).toBeGreaterThan(types.lastIndexOf('file.verified'));
  });

  test('a source file modified during MOVE gives SOURCE_CHANGED and nothing is deleted', async () => {
    await writeTree(env.srcDir, { 'take/a.wav': 'a'.repeat(1000), 'take/b.wav': 'b'.repeat(1000) });
    let touched = false;
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: '' } },
        {
          store: env.store,
          concurrency: 1,
          onEvent: (e: KetterEvent) => {
            if (e.type === 'file.copied' && !touched) {
              touched = true;
              // An editor saves over the file that was just copied.
              appendFileSync(join(env.srcDir, 'take', e.path), 'late edit');
            }
          },
        },
      ),
    );
    expect(error.code).toBe('SOURCE_CHANGED');
    expect(await exists(join(env.srcDir, 'take/a.wav'))).toBe(true);
    expect(await exists(join(env.srcDir, 'take/b.wav'))).toBe(true);
    expect(await exists(join(env.dstDir, 'take'))).toBe(false);
    expect(await leftovers(env.dstDir)).toEqual([]);
  });

  test('cancellation by AbortSignal rolls back and records job.cancelled', async () => {
    await writeTree(env.srcDir, Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`many/f${i}.bin`, 'z'.repeat(5000)])));
    const controller = new AbortController();
    const error = await failure(
      transfer(
        { mode: 'move', source: { portal: env.src, path: 'many' }, destination: { portal: env.dst, path: 'out' } },
        { store: env.store, concurrency: 2, signal: controller.signal, onEvent: (e) => e.type === 'file.copied' && controller.abort() },
      ),
    );
    expect(error.code).toBe('CANCELLED');
    expect(await exists(join(env.dstDir, 'out'))).toBe(false);
    expect(Object.keys(await hashTree(join(env.srcDir, 'many')))).toHaveLength(50);
    const job = await env.store.getJob(error.jobId as string);
    expect(job?.status).toBe('cancelled');
    expect(job?.events.at(-1)?.type).toBe('job.cancelled');
  });

  test('a transient read fault is retried with backoff and recorded', async () => {
    await writeTree(env.srcDir, { 'take/a.wav': 'a'.repeat(10_000) });
    const faulty = new FaultyAdapter(env.src.adapter, [{ op: 'openRead', path: /a\.wav$/, kind: 'fail', times: 1 }]);
    const result = await transfer(
      { mode: 'copy', source: { portal: env.portalOver(faulty, 'src'), path: 'take' }, destination: { portal: env.dst, path: '' } },
      { store: env.store, onEvent: env.onEvent, retry: { baseDelayMs: 1 } },
    );
    expect(result.status).toBe('succeeded');
    const retry = env.events.find((e) => e.type === 'retry.scheduled');
    expect(retry).toMatchObject({ path: 'a.wav', attempt: 1, maxAttempts: 3 });
    expect(env.events.find((e) => e.type === 'file.copied')).toMatchObject({ attempt: 2 });
  });

  test('a permanent fault fails fast without retry', async () => {
    await writeTree(env.srcDir, { 'take/a.wav': 'a' });
    const denied = new KetterError('PERMISSION_DENIED', 'denied');
    const faulty = new FaultyAdapter(env.src.adapter, [{ op: 'openRead', kind: 'fail', error: denied, times: Infinity }]);
    const error = await failure(
      transfer(
        { mode: 'copy', source: { portal: env.portalOver(faulty, 'src'), path: 'take' }, destination: { portal: env.dst, path: '' } },
        { store: env.store, onEvent: env.onEvent },
      ),
    );
    expect(error.code).toBe('PERMISSION_DENIED');
    expect(env.events.some((e) => e.type === 'retry.scheduled')).toBe(false);
    expect(await leftovers(env.dstDir)).toEqual([]);
  });

  test('source and destination overlapping is refused', async () => {
    await writeTree(env.srcDir, { 'take/a.wav': 'a' });
    const error = await failure(
      transfer({ mode: 'copy', source: { portal: env.src, path: 'take' }, destination: { portal: env.src, path: 'take/inner' } }, { store: env.store }),
    );
    expect(error.code).toBe('SOURCE_DEST_OVERLAP');
    expect(await exists(join(env.srcDir, 'take/inner'))).toBe(false);
  });

  test('skip-identical succeeds without copying when the destination already matches', async () => {
    await writeTree(env.srcDir, SESSION);
    const request = { mode: 'copy' as const, source: { portal: env.src, path: 'Mézcla final' }, destination: { portal: env.dst, path: '' } };
    await transfer(request, { store: env.store });
    const before = await snapshot(env.dstDir);
    const again = await transfer({ ...request, onConflict: 'skip-identical' }, { store: env.store });
    expect(again).toMatchObject({ skipped: true, filesCopied: 0 });
    expect(await snapshot(env.dstDir)).toEqual(before);
    await writeFile(join(env.dstDir, 'Mézcla final/empty.txt'), 'different now');
    const error = await failure(transfer({ ...request, onConflict: 'skip-identical' }, { store: env.store }));
    expect(error.code).toBe('DESTINATION_EXISTS');
  });

  test('runTransfer runs a DIRECT plan and refuses a ZIP_FIRST one', async () => {
    await writeTree(env.srcDir, { 'take/a.wav': 'a', 'take/b.wav': 'b' });
    const manifest = await scan(env.src, 'take');
    const request = { mode: 'copy' as const, source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: '' } };
    const result = await runTransfer(plan(manifest), { request, store: env.store });
    expect(result.filesCopied).toBe(2);
    await expect(runTransfer(plan(manifest, { strategy: 'zip' }), { request, store: env.store })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
  });

  test('a source that cannot be read fails with PERMISSION_DENIED and leaves nothing', async () => {
    if (process.getuid?.() === 0) {
      // root reads anything; the unprivileged case runs in the CLI suite.
      await writeTree(env.srcDir, { 'take/a.wav': 'a' });
      const faulty = new FaultyAdapter(env.dst.adapter, [
        { op: 'mkdir', kind: 'fail', error: new KetterError('PERMISSION_DENIED', 'denied'), times: Infinity },
      ]);
      const error = await failure(
        transfer({ mode: 'copy', source: { portal: env.src, path: 'take' }, destination: { portal: env.portalOver(faulty), path: 'x' } }, { store: env.store }),
      );
      expect(error.code).toBe('PERMISSION_DENIED');
      expect(await exists(join(env.dstDir, 'x'))).toBe(false);
      return;
    }
    await writeTree(env.srcDir, { 'take/a.wav': 'a' });
    await chmod(join(env.srcDir, 'take/a.wav'), 0);
    await expect(
      transfer({ mode: 'copy', source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: '' } }, { store: env.store }),
    ).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
  });
});
