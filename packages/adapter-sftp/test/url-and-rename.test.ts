import { readFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client, type SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SftpAdapter } from '../src/index.js';
import { Sshd } from './sshd.js';
import { makeRoots } from './support.js';

const run = promisify(execFile);
let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
let home: string;

beforeAll(async () => {
  sshd = await Sshd.start();
  roots = await makeRoots();
  // A fake home laid out like ~/.ssh: a hashed known_hosts and a default identity file.
  home = join(roots.base, 'home');
  await mkdir(join(home, '.ssh'), { recursive: true });
  await writeFile(join(home, '.ssh', 'known_hosts'), sshd.knownHostsLines());
  await run('ssh-keygen', ['-H', '-f', join(home, '.ssh', 'known_hosts')]);
  await copyFile(sshd.userKeyPath, join(home, '.ssh', 'id_ed25519'));
});
afterAll(async () => {
  await sshd?.stop();
  if (roots) await rm(roots.base, { recursive: true, force: true });
});

describe('SftpAdapter.fromUrl', () => {
  test('parses user, port and a percent-encoded path; root is /', () => {
    const { adapter, path } = SftpAdapter.fromUrl('sftp://ingest%40studio@Example.COM:2222/mnt/Mezcla%20final/%C3%B1', { home, auth: { agent: true } });
    expect(adapter.id).toBe('sftp://example.com:2222');
    expect(adapter.root).toBe('/');
    expect(path).toBe('mnt/Mezcla final/ñ');
    expect(SftpAdapter.fromUrl('sftp://h/', { home, auth: { agent: true } }).path).toBe('');
    expect(SftpAdapter.fromUrl('sftp://[::1]/x', { home, auth: { agent: true } }).adapter.id).toBe('sftp://[::1]:22');
  });

  test('a password in the URL is refused and not echoed', () => {
    let caught: unknown;
    try {
      SftpAdapter.fromUrl('sftp://user:hunter2secret@host/x', { home });
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'INVALID_REQUEST' });
    expect(String((caught as Error).message)).not.toContain('hunter2secret');
    expect(() => SftpAdapter.fromUrl('https://host/x', { home })).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });

  test('no agent and no identity file: INVALID_REQUEST saying so', () => {
    const saved = process.env.SSH_AUTH_SOCK;
    delete process.env.SSH_AUTH_SOCK;
    try {
      expect(() => SftpAdapter.fromUrl('sftp://root@host/x', { home: join(roots.base, 'empty-home') })).toThrow(
        expect.objectContaining({ code: 'INVALID_REQUEST' }),
      );
    } finally {
      if (saved !== undefined) process.env.SSH_AUTH_SOCK = saved;
    }
  });

  test('connects like OpenSSH: hashed known_hosts and ~/.ssh/id_ed25519', async () => {
    const saved = process.env.SSH_AUTH_SOCK;
    delete process.env.SSH_AUTH_SOCK;
    await writeFile(join(roots.root, 'from-url.txt'), 'via url');
    try {
      const { adapter, path } = SftpAdapter.fromUrl(`sftp://root@127.0.0.1:${sshd.port}${roots.root}/from-url.txt`, { home });
      await adapter.connect();
      try {
        expect(await adapter.stat(path)).toMatchObject({ kind: 'file', size: 7 });
      } finally {
        await adapter.close();
      }
    } finally {
      if (saved !== undefined) process.env.SSH_AUTH_SOCK = saved;
    }
  });

  test('a host missing from that known_hosts is refused', async () => {
    const other = join(roots.base, 'home2');
    await mkdir(join(other, '.ssh'), { recursive: true });
    await copyFile(sshd.userKeyPath, join(other, '.ssh', 'id_ed25519'));
    const { adapter } = SftpAdapter.fromUrl(`sftp://root@127.0.0.1:${sshd.port}/`, { home: other, hostKey: { knownHosts: join(other, '.ssh', 'known_hosts') } });
    await expect(adapter.connect()).rejects.toMatchObject({ code: 'HOST_KEY_REJECTED' });
  });
});

describe('OpenSSH plain SFTP rename (what the adapter relies on)', () => {
  // Straight ssh2, no adapter: the server itself must refuse to replace a target.
  async function withSftp(fn: (sftp: SFTPWrapper) => Promise<void>): Promise<void> {
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve).once('error', reject);
      client.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: readFileSync(sshd.userKeyPath), hostVerifier: () => true });
    });
    try {
      const sftp = await new Promise<SFTPWrapper>((resolve, reject) => client.sftp((e, s) => (e ? reject(e) : resolve(s))));
      await fn(sftp);
    } finally {
      client.end();
    }
  }
  const renameRaw = (sftp: SFTPWrapper, a: string, b: string): Promise<unknown> =>
    new Promise((resolve) => sftp.rename(a, b, (err) => resolve(err ?? null)));

  test('refuses to clobber a file, an empty directory and a full directory (status FAILURE)', async () => {
    const base = join(roots.root, 'raw');
    await mkdir(join(base, 'srcdir'), { recursive: true });
    await mkdir(join(base, 'emptydir'));
    await mkdir(join(base, 'fulldir'));
    await writeFile(join(base, 'fulldir', 'keep'), 'keep');
    await writeFile(join(base, 'a'), 'A');
    await writeFile(join(base, 'b'), 'B');
    await withSftp(async (sftp) => {
      expect(await renameRaw(sftp, join(base, 'a'), join(base, 'b'))).toMatchObject({ code: 4 });
      expect(await renameRaw(sftp, join(base, 'srcdir'), join(base, 'emptydir'))).toMatchObject({ code: 4 });
      expect(await renameRaw(sftp, join(base, 'srcdir'), join(base, 'fulldir'))).toMatchObject({ code: 4 });
      expect(await renameRaw(sftp, join(base, 'a'), join(base, 'emptydir'))).toMatchObject({ code: 4 });
      expect(await renameRaw(sftp, join(base, 'a'), join(base, 'c'))).toBeNull();
    });
    expect(await readFile(join(base, 'b'), 'utf8')).toBe('B');
    expect(await readFile(join(base, 'c'), 'utf8')).toBe('A');
    expect(await readFile(join(base, 'fulldir', 'keep'), 'utf8')).toBe('keep');
  });
});
