import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { isTransient, JsonlStore, Portal, transfer, type KetterEvent } from '@ketter/core';
import { SftpAdapter } from '../src/index.js';
import { Sshd } from './sshd.js';
import { makeRoots, sshdOptions } from './support.js';

let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
let adapter: SftpAdapter;

beforeAll(async () => {
  sshd = await Sshd.start();
  roots = await makeRoots();
});
afterAll(async () => {
  await sshd?.stop();
  if (roots) await rm(roots.base, { recursive: true, force: true });
});
beforeEach(async () => {
  if (!sshd.running) await sshd.restart();
  adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { retry: { attempts: 4, baseDelayMs: 50, maxDelayMs: 200 } }));
  await adapter.connect();
});
afterEach(async () => {
  await adapter.close();
});

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('sshd killed (SIGKILL) mid-operation', () => {
  test('mid-read: CONNECTION_ERROR (transient); after restart the next read succeeds', async () => {
    const data = randomBytes(24 * 1024 * 1024);
    await writeFile(join(roots.root, 'big-read.bin'), data);
    const stream = adapter.openRead('big-read.bin', { highWaterMark: 256 * 1024 });
    let received = 0;
    const error = await rejection(
      (async () => {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          received += chunk.length;
          if (received >= 512 * 1024 && sshd.running) await sshd.kill();
        }
      })(),
    );
    expect(error).toMatchObject({ name: 'KetterError', code: 'CONNECTION_ERROR' });
    expect(isTransient(error)).toBe(true);
    expect(received).toBeLessThan(data.length);

    await sshd.restart();
    const again: Buffer[] = [];
    for await (const chunk of adapter.openRead('big-read.bin') as AsyncIterable<Buffer>) again.push(chunk);
    expect(Buffer.concat(again).equals(data)).toBe(true);
  });

  test('mid-write: CONNECTION_ERROR (transient); after restart a new write succeeds', async () => {
    let sent = 0;
    async function* slowSource(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 400; i++) {
        const chunk = randomBytes(128 * 1024);
        sent += chunk.length;
        if (sent >= 2 * 1024 * 1024 && sshd.running) await sshd.kill();
        yield chunk;
      }
    }
    const error = await rejection(pipeline(Readable.from(slowSource()), adapter.openWrite('big-write.bin')));
    expect(error).toMatchObject({ name: 'KetterError', code: 'CONNECTION_ERROR' });
    expect(isTransient(error)).toBe(true);

    await sshd.restart();
    const data = randomBytes(3 * 1024 * 1024 + 5);
    await pipeline(Readable.from([data]), adapter.openWrite('after-restart.bin'));
    const back: Buffer[] = [];
    for await (const chunk of adapter.openRead('after-restart.bin') as AsyncIterable<Buffer>) back.push(chunk);
    expect(Buffer.concat(back).equals(data)).toBe(true);
  });

  test('mid-list: CONNECTION_ERROR; after restart the listing completes', async () => {
    for (let d = 0; d < 30; d++) {
      await adapter.mkdir(`tree/d${d}`);
      for (let f = 0; f < 5; f++) await writeFile(join(roots.root, `tree/d${d}/f${f}`), 'x');
    }
    let seen = 0;
    const error = await rejection(
      (async () => {
        for await (const _ of adapter.list('tree')) {
          if (++seen === 10) await sshd.kill();
        }
      })(),
    );
    expect(error).toMatchObject({ code: 'CONNECTION_ERROR' });
    await sshd.restart();
    let total = 0;
    for await (const _ of adapter.list('tree')) total++;
    expect(total).toBe(30 * 6);
  });

  test('while idle: operations fail with CONNECTION_ERROR while sshd is down, and work once it is back', async () => {
    await sshd.kill();
    await expect(adapter.stat('')).rejects.toMatchObject({ code: 'CONNECTION_ERROR', transient: true });
    await sshd.restart();
    expect((await adapter.stat(''))?.kind).toBe('directory');
    // The capabilities decided at the first connect still hold.
    expect(adapter.capabilities.statfs).toBe(true);
  });

  test('after close(), operations are refused instead of reconnecting', async () => {
    await adapter.close();
    await expect(adapter.stat('')).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
  });
});

describe('through the engine', () => {
  test('sshd killed mid-upload of a large local file: the file is sent again from the start and lands verified', async () => {
    const localRoot = join(roots.base, 'local');
    await mkdir(localRoot, { recursive: true });
    const data = randomBytes(40 * 1024 * 1024 + 7);
    await writeFile(join(localRoot, 'reel 2.mov'), data);
    const source = new FsAdapter({ root: localRoot });
    await source.connect();
    const store = new JsonlStore({ dir: join(roots.base, 'store-upload') });
    await store.open();
    await mkdir(join(roots.root, 'upload'));
    // Kill the server once part of the staged file has arrived; bring it back at once.
    let killed = false;
    const watcher = setInterval(() => {
      void (async () => {
        if (killed) return;
        for (const name of await readdir(join(roots.root, 'upload')).catch(() => [])) {
          if (!name.endsWith('.partial')) continue;
          const size = (await stat(join(roots.root, 'upload', name)).catch(() => null))?.size ?? 0;
          if (size >= 8 * 1024 * 1024 && !killed) {
            killed = true;
            await sshd.kill();
            await sshd.restart();
          }
        }
      })();
    }, 5);
    const events: KetterEvent[] = [];
    try {
      const result = await transfer(
        { mode: 'copy', source: { portal: new Portal('local', source), path: 'reel 2.mov' }, destination: { portal: new Portal('remote', adapter), path: 'upload' } },
        { store, retry: { attempts: 5, baseDelayMs: 100, maxDelayMs: 500 }, onEvent: (e) => void events.push(e) },
      );
      expect(result.status).toBe('succeeded');
    } finally {
      clearInterval(watcher);
      await store.close();
      await source.close();
    }
    expect(killed).toBe(true);
    expect(events.some((e) => e.type === 'retry.scheduled' && e.error.code === 'CONNECTION_ERROR')).toBe(true);
    const landed = await readFile(join(roots.root, 'upload', 'reel 2.mov'));
    expect(createHash('sha256').update(landed).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect((await readdir(join(roots.root, 'upload'))).filter((n) => n !== 'reel 2.mov')).toEqual([]);
  });
});
