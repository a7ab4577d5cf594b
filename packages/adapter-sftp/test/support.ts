import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AdapterFixture } from '@ketter/core/testing';
import { SftpAdapter, type SftpAdapterOptions } from '../src/index.js';
import type { Sshd } from './sshd.js';

/** A temp dir with an empty `root/` and an `outside/secret.txt`; the sshd runs on this machine, so local paths are server paths. */
export async function makeRoots(): Promise<{ base: string; root: string; outside: string }> {
  const base = await realpath(await mkdtemp(join(tmpdir(), 'ketter-sftp-')));
  await mkdir(join(base, 'root'));
  await mkdir(join(base, 'outside'));
  await writeFile(join(base, 'outside', 'secret.txt'), 'not for ketter');
  return { base, root: join(base, 'root'), outside: join(base, 'outside') };
}

/** Options for the harness sshd: key auth as root, host key pinned by fingerprint. */
export function sshdOptions(sshd: Sshd, root: string, extra: Partial<SftpAdapterOptions> = {}): SftpAdapterOptions {
  return {
    host: sshd.host,
    port: sshd.port,
    username: 'root',
    root,
    hostKey: { fingerprint: sshd.hostKeys.map((k) => k.fingerprint) },
    auth: { privateKeyPath: sshd.userKeyPath },
    retry: { attempts: 5, baseDelayMs: 50, maxDelayMs: 500 },
    ...extra,
  };
}

/** A conformance fixture: a connected adapter over a fresh empty root. */
export async function sftpFixture(sshd: Sshd, extra: Partial<SftpAdapterOptions> = {}): Promise<AdapterFixture> {
  const { base, root, outside } = await makeRoots();
  const adapter = new SftpAdapter(sshdOptions(sshd, root, extra));
  await adapter.connect();
  return {
    adapter,
    outside,
    symlink: (target, path) => symlink(target, join(root, path)),
    cleanup: async () => {
      await adapter.close();
      await rm(base, { recursive: true, force: true });
    },
  };
}
