import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { JsonlStore, Portal, transfer, type KetterEvent, type ReadOptions } from '@ketter/core';
import { FsAdapter } from '@ketter/adapter-fs';
import { SftpAdapter } from '../src/index.js';
import { Sshd } from './sshd.js';
import { makeRoots, sshdOptions } from './support.js';

const run = promisify(execFile);
let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
let localRoot: string;
let store: JsonlStore;
let local: Portal;
let remote: Portal;
let remote2: Portal;

beforeAll(async () => {
  sshd = await Sshd.start();
});
afterAll(async () => {
  await sshd?.stop();
});
beforeEach(async () => {
  roots = await makeRoots();
  localRoot = join(roots.base, 'local');
  await mkdir(join(localRoot, 'session/Audio Files'), { recursive: true });
  await mkdir(join(roots.root, 'a'));
  await mkdir(join(roots.root, 'b'));
  for (let i = 0; i < 40; i++) await writeFile(join(localRoot, `session/Audio Files/take ${i}.wav`), randomBytes(1000 + i * 37));
  await writeFile(join(localRoot, 'session/big.bin'), randomBytes(5 * 1024 * 1024 + 3));
  await writeFile(join(localRoot, 'session/.hidden'), 'h');
  store = new JsonlStore({ dir: join(roots.base, 'store') });
  await store.open();
  const fs = new FsAdapter({ root: localRoot });
  await fs.connect();
  const a = new SftpAdapter(sshdOptions(sshd, join(roots.root, 'a'), { allowExec: true }));
  const b = new SftpAdapter(sshdOptions(sshd, join(roots.root, 'b')));
  await a.connect();
  await b.connect();
  local = new Portal('local', fs);
  remote = new Portal('remote', a);
  remote2 = new Portal('remote2', b);
});
afterEach(async () => {
  for (const p of [local, remote, remote2]) await p?.adapter.close();
  await store?.close();
  await rm(roots.base, { recursive: true, force: true });
});

/** `sha256sum` of every file below `dir`, as relative path → digest: an oracle independent of Ketter. */
async function sums(dir: string): Promise<Record<string, string>> {
  const { stdout } = await run('sh', ['-c', 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum', 'sums', dir], { maxBuffer: 1 << 24 });
  const out: Record<string, string> = {};
  for (const line of stdout.trim().split('\n')) {
    const [hash, ...name] = line.split('  ');
    out[name.join('  ').replace(/^\.\//, '')] = hash as string;
  }
  return out;
}

describe('transfers through the engine', () => {
  test('COPY local → SFTP', async () => {
    const result = await transfer({ mode: 'copy', source: { portal: local, path: 'session' }, destination: { portal: remote, path: '' } }, { store });
    expect(result.status).toBe('succeeded');
    expect(await sums(join(roots.root, 'a/session'))).toEqual(await sums(join(localRoot, 'session')));
  });

  test('COPY SFTP → local', async () => {
    await run('cp', ['-a', join(localRoot, 'session'), join(roots.root, 'a/incoming')]);
    await mkdir(join(localRoot, 'dest'));
    await transfer({ mode: 'copy', source: { portal: remote, path: 'incoming' }, destination: { portal: local, path: 'dest' } }, { store });
    expect(await sums(join(localRoot, 'dest/incoming'))).toEqual(await sums(join(roots.root, 'a/incoming')));
  });

  test('MOVE SFTP → SFTP (two portals on one server)', async () => {
    await run('cp', ['-a', join(localRoot, 'session'), join(roots.root, 'a/delivery')]);
    const before = await sums(join(roots.root, 'a/delivery'));
    const result = await transfer({ mode: 'move', source: { portal: remote, path: 'delivery' }, destination: { portal: remote2, path: '' } }, { store });
    expect(result.mode).toBe('move');
    expect(await sums(join(roots.root, 'b/delivery'))).toEqual(before);
    await expect(run('test', ['-e', join(roots.root, 'a/delivery')])).rejects.toBeTruthy();
  });

  test('MOVE local → SFTP of one file', async () => {
    const before = await sums(localRoot);
    await transfer({ mode: 'move', source: { portal: local, path: 'session/big.bin' }, destination: { portal: remote, path: '' } }, { store });
    expect((await sums(join(roots.root, 'a')))['big.bin']).toBe(before['session/big.bin']);
    await expect(run('test', ['-e', join(localRoot, 'session/big.bin')])).rejects.toBeTruthy();
  });

  test('an existing destination fails with DESTINATION_EXISTS and leaves it alone', async () => {
    await mkdir(join(roots.root, 'a/session'));
    await writeFile(join(roots.root, 'a/session/mine.txt'), 'mine');
    await expect(
      transfer({ mode: 'copy', source: { portal: local, path: 'session' }, destination: { portal: remote, path: '' } }, { store }),
    ).rejects.toMatchObject({ code: 'DESTINATION_EXISTS' });
    expect(Object.keys(await sums(join(roots.root, 'a/session')))).toEqual(['mine.txt']);
  });

  test('a large local file goes up through fixed buffers, checked by server hash or by read-back', async () => {
    // Counts the source's read streams: the fixed-buffer path reads the file itself.
    class CountingFsAdapter extends FsAdapter {
      streams = 0;
      override openRead(path: string, options?: ReadOptions) {
        this.streams += 1;
        return super.openRead(path, options);
      }
    }
    const source = new CountingFsAdapter({ root: localRoot });
    await source.connect();
    const from = new Portal('local', source);
    // 20 MiB: copied, then hashed on the server; 70 MiB over SFTP only: read back while it is written.
    await writeFile(join(localRoot, 'take 20.mov'), randomBytes(20 * 1024 * 1024 + 11));
    await writeFile(join(localRoot, 'take 70.mov'), randomBytes(70 * 1024 * 1024 + 5));
    const cases = [
      { file: 'take 20.mov', to: remote, dir: 'a', method: 'server' },
      { file: 'take 70.mov', to: remote2, dir: 'b', method: 'reread' },
    ];
    for (const c of cases) {
      const events: KetterEvent[] = [];
      const result = await transfer(
        { mode: 'copy', source: { portal: from, path: c.file }, destination: { portal: c.to, path: '' } },
        { store, onEvent: (e) => void events.push(e) },
      );
      expect(result.status).toBe('succeeded');
      const local = (await sums(localRoot))[c.file];
      expect((await sums(join(roots.root, c.dir)))[c.file]).toBe(local);
      expect(events.find((e) => e.type === 'file.verified')).toMatchObject({ method: c.method, sourceHash: local, destinationHash: local });
    }
    expect(source.streams).toBe(0);
  });
});
