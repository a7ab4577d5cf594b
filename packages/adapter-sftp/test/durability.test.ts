import { createRequire } from 'node:module';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { SftpAdapter } from '../src/index.js';
import { Sshd } from './sshd.js';
import { makeRoots, sshdOptions } from './support.js';

// The adapter's own ssh2: every fsync@openssh.com request it sends is counted by handle.
const { SFTP } = createRequire(import.meta.url)('ssh2/lib/protocol/SFTP.js') as { SFTP: { prototype: Record<string, unknown> } };

let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
let fsyncs = 0;
const original = SFTP.prototype.ext_openssh_fsync as (...args: unknown[]) => unknown;

beforeAll(async () => {
  sshd = await Sshd.start();
  SFTP.prototype.ext_openssh_fsync = function (this: unknown, ...args: unknown[]) {
    fsyncs += 1;
    return original.apply(this, args);
  };
});
afterAll(async () => {
  SFTP.prototype.ext_openssh_fsync = original;
  await sshd?.stop();
});
beforeEach(async () => {
  roots = await makeRoots();
  fsyncs = 0;
});
afterEach(async () => {
  await rm(roots.base, { recursive: true, force: true });
});

async function connected(allowExec: boolean): Promise<SftpAdapter> {
  await mkdir(join(roots.root, allowExec ? 'x' : 's'), { recursive: true });
  const adapter = new SftpAdapter(sshdOptions(sshd, join(roots.root, allowExec ? 'x' : 's'), { allowExec }));
  await adapter.connect();
  return adapter;
}

test('on a host without commands, files are fsynced as they are written, and sync() then only syncs what was not', async () => {
  const adapter = await connected(false);
  try {
    expect(adapter.capabilities.fsync).toBe(true);
    await adapter.mkdir('staging');
    await adapter.writeFile('staging/a.wav', Buffer.from('take a'));
    const { Readable } = await import('node:stream');
    const { pipeline } = await import('node:stream/promises');
    await pipeline(Readable.from([Buffer.alloc(300_000, 7)]), adapter.openWrite('staging/b.wav'));
    expect(fsyncs).toBe(2); // one per file, sent with its close

    await adapter.sync?.(['staging/a.wav', 'staging/b.wav', 'staging']);
    expect(fsyncs).toBe(3); // only the directory: the files are already durable

    // The skip holds once, for the write the fsync went with: asked again, the file is synced.
    await adapter.sync?.(['staging/a.wav']);
    expect(fsyncs).toBe(4);
    expect(await readFile(join(roots.root, 's/staging/a.wav'), 'utf8')).toBe('take a');
  } finally {
    await adapter.close();
  }
});

test('where a remote sync will follow, files are not fsynced one by one as they are written', async () => {
  const adapter = await connected(true);
  try {
    await adapter.mkdir('staging');
    await adapter.writeFile('staging/a.wav', Buffer.from('take a'));
    expect(fsyncs).toBe(0);
  } finally {
    await adapter.close();
  }
});
