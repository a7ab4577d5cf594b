import { createHash } from 'node:crypto';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import type { ReadOptions } from '@ketter/core';
import { rereadHash } from '../src/engine/file-copy.js';

/*
 * A local file is re-read for its hash through two reused buffers, not the adapter's stream:
 * the proof must be the same whatever the file's size against those buffers.
 */

const MiB = 1024 * 1024;
/** The size of each buffer the re-read goes through (file-copy.ts). */
const BUFFER = 4 * MiB;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ketter-reread-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An FsAdapter whose streams must not be used: the re-read goes through the local path. */
class NoStreamsAdapter extends FsAdapter {
  streams = 0;
  override openRead(path: string, options?: ReadOptions) {
    this.streams += 1;
    return super.openRead(path, options);
  }
}

function bytes(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 7 + (i >> 13)) & 0xff;
  return b;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('re-reading a local file', () => {
  test.each([0, 1, 64 * 1024, MiB + 1, BUFFER - 1, BUFFER, BUFFER + 1, 2 * BUFFER, 2 * BUFFER + 3, 9 * MiB + 7])(
    '%i bytes: the hash and size of what is on disk',
    async (size) => {
      const adapter = new NoStreamsAdapter({ root: dir });
      const data = bytes(size, size % 251);
      await writeFile(join(dir, `f${size}`), data);
      const got = await rereadHash(adapter, `f${size}`, size, 'sha256');
      expect(got).toEqual({ hash: sha256(data), size });
      if (size > MiB) expect(adapter.streams).toBe(0);
    },
  );

  test('a file that is not the announced size reports what it holds, so the caller sees the difference', async () => {
    const adapter = new NoStreamsAdapter({ root: dir });
    const data = bytes(BUFFER + 100, 3);
    await writeFile(join(dir, 'grown'), data);
    // Announced smaller (and larger) than it is: every byte is still read and counted.
    expect(await rereadHash(adapter, 'grown', 2 * MiB, 'sha256')).toEqual({ hash: sha256(data), size: data.length });
    expect(await rereadHash(adapter, 'grown', 3 * BUFFER, 'sha256')).toEqual({ hash: sha256(data), size: data.length });
  });

  test('md5 too', async () => {
    const data = bytes(5 * MiB, 9);
    await writeFile(join(dir, 'md5'), data);
    const got = await rereadHash(new NoStreamsAdapter({ root: dir }), 'md5', data.length, 'md5');
    expect(got).toEqual({ hash: createHash('md5').update(data).digest('hex'), size: data.length });
  });

  test('a missing file is SOURCE_NOT_FOUND, naming the relative path only', async () => {
    const error = await rereadHash(new NoStreamsAdapter({ root: dir }), 'gone/take.mov', 2 * MiB, 'sha256').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SOURCE_NOT_FOUND', path: 'gone/take.mov' });
    expect(String((error as Error).message)).not.toContain(dir);
  });

  test('a link where a file should be is refused, never followed', async () => {
    await writeFile(join(dir, 'target'), bytes(2 * MiB, 1));
    await symlink(join(dir, 'target'), join(dir, 'link'));
    const error = await rereadHash(new NoStreamsAdapter({ root: dir }), 'link', 2 * MiB, 'sha256').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SYMLINK_NOT_ALLOWED', path: 'link' });
  });

  test('a cancellation during the re-read stops it with CANCELLED', async () => {
    const data = bytes(3 * BUFFER, 5);
    await writeFile(join(dir, 'long'), data);
    const controller = new AbortController();
    const reading = rereadHash(new NoStreamsAdapter({ root: dir }), 'long', data.length, 'sha256', controller.signal);
    controller.abort(new Error('operator cancelled'));
    await expect(reading).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
