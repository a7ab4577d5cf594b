import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SftpAdapter, fingerprintOf, knownHostsName, parseKnownHosts } from '../src/index.js';
import { keygen, Sshd } from './sshd.js';
import { makeRoots, sshdOptions } from './support.js';

const run = promisify(execFile);

let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
beforeAll(async () => {
  sshd = await Sshd.start();
  roots = await makeRoots();
});
afterAll(async () => {
  await sshd?.stop();
  if (roots) await rm(roots.base, { recursive: true, force: true });
});

async function knownHostsFile(name: string, text: string): Promise<string> {
  const path = join(roots.base, name);
  await writeFile(path, text);
  return path;
}

async function connectWith(hostKey: ConstructorParameters<typeof SftpAdapter>[0]['hostKey'], auth?: ConstructorParameters<typeof SftpAdapter>[0]['auth']) {
  const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey, ...(auth ? { auth } : {}) }));
  try {
    await adapter.connect();
    expect((await adapter.stat(''))?.kind).toBe('directory');
  } finally {
    await adapter.close();
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; transient?: boolean }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('host key by fingerprint', () => {
  test('the right fingerprint connects; the ssh-keygen fingerprint equals ours', async () => {
    const ed = sshd.hostKeys.find((k) => k.type === 'ed25519')!;
    const blob = Buffer.from(ed.publicLine.split(' ')[1] as string, 'base64');
    expect(fingerprintOf(blob)).toBe(ed.fingerprint);
    await connectWith({ fingerprint: sshd.hostKeys.map((k) => k.fingerprint) });
  });

  test('a wrong fingerprint is refused with HOST_KEY_REJECTED naming expected and seen', async () => {
    const wrong = `SHA256:${'A'.repeat(43)}`;
    const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey: { fingerprint: wrong } }));
    const error = await rejection(adapter.connect());
    expect(error).toMatchObject({ name: 'KetterError', code: 'HOST_KEY_REJECTED', transient: false });
    expect(error.message).toContain(wrong);
    expect(sshd.hostKeys.some((k) => error.message.includes(k.fingerprint))).toBe(true);
    // Nothing is reachable through it afterwards: operations report why.
    await expect(adapter.stat('')).rejects.toMatchObject({ code: 'HOST_KEY_REJECTED' });
  });

  test('a rejected key stops the connection before any authentication is attempted', async () => {
    // An agent socket that only counts visitors: ssh2 asks the agent for keys when it authenticates.
    const socket = join(roots.base, 'counting-agent.sock');
    let visits = 0;
    const server: Server = createServer((c) => {
      visits++;
      c.destroy();
    });
    await new Promise<void>((r) => server.listen(socket, r));
    try {
      const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey: { fingerprint: `SHA256:${'B'.repeat(43)}` }, auth: { agent: socket } }));
      await expect(adapter.connect()).rejects.toMatchObject({ code: 'HOST_KEY_REJECTED' });
      expect(visits).toBe(0);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('the options refuse an accept-anything host key', () => {
    expect(() => new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey: {} as never }))).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey: { fingerprint: '*' } }))).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });
});

describe('host key from known_hosts', () => {
  test('an empty known_hosts refuses the unknown host, showing what the server presented', async () => {
    const file = await knownHostsFile('empty_known_hosts', '');
    const error = await rejection(connectWith({ knownHosts: file }));
    expect(error).toMatchObject({ code: 'HOST_KEY_REJECTED' });
    expect(error.message).toContain(`[127.0.0.1]:${sshd.port}`);
    expect(error.message).toMatch(/SHA256:/);
  });

  test('a missing known_hosts file is an unknown host, not a pass', async () => {
    await expect(connectWith({ knownHosts: join(roots.base, 'does-not-exist') })).rejects.toMatchObject({ code: 'HOST_KEY_REJECTED' });
  });

  test('the [127.0.0.1]:port form is accepted', async () => {
    await connectWith({ knownHosts: await knownHostsFile('plain', `# comment\n\n${sshd.knownHostsLines()}`) });
  });

  test('a hashed entry (ssh-keygen -H) is accepted', async () => {
    const file = await knownHostsFile('hashed', sshd.knownHostsLines(['ed25519']));
    await run('ssh-keygen', ['-H', '-f', file]);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^\|1\|/);
    expect(text).not.toContain('127.0.0.1');
    await connectWith({ knownHosts: file });
  });

  test('an entry for the same host on another port does not count', async () => {
    const line = sshd.knownHostsLines(['ed25519']).replace(`:${sshd.port} `, `:${sshd.port === 2222 ? 2223 : 2222} `);
    const plainHost = sshd.knownHostsLines(['ed25519']).replace(`[127.0.0.1]:${sshd.port}`, '127.0.0.1');
    await expect(connectWith({ knownHosts: await knownHostsFile('other-port', line + plainHost) })).rejects.toMatchObject({ code: 'HOST_KEY_REJECTED' });
  });

  test('only the ECDSA key known: the ECDSA host key is negotiated and accepted', async () => {
    await connectWith({ knownHosts: await knownHostsFile('ecdsa-only', sshd.knownHostsLines(['ecdsa'])) });
  });

  test('a changed key is refused, naming the expected and presented fingerprints', async () => {
    const other = join(roots.base, 'impostor');
    await keygen('ed25519', other);
    const pub = readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    const file = await knownHostsFile('changed', `[127.0.0.1]:${sshd.port} ${pub}\n`);
    const error = await rejection(connectWith({ knownHosts: file }));
    expect(error).toMatchObject({ code: 'HOST_KEY_REJECTED' });
    expect(error.message).toMatch(/CHANGED/);
    expect(error.message).toContain(fingerprintOf(Buffer.from(pub.split(' ')[1] as string, 'base64')));
    expect(error.message).toContain(sshd.hostKeys.find((k) => k.type === 'ed25519')!.fingerprint);
  });

  test('a key marked @revoked is refused even when also listed', async () => {
    const lines = sshd.knownHostsLines(['ed25519']);
    const file = await knownHostsFile('revoked', `${lines}@revoked ${lines}`);
    await expect(connectWith({ knownHosts: file })).rejects.toMatchObject({ code: 'HOST_KEY_REJECTED', message: expect.stringMatching(/revoked/) });
  });

  test('several files: the second one may hold the key', async () => {
    await connectWith({ knownHosts: [await knownHostsFile('none', ''), await knownHostsFile('some', sshd.knownHostsLines())] });
  });
});

describe('parseKnownHosts', () => {
  const ed = (): { type: string; blob: Buffer; b64: string } => {
    const [type, b64] = sshd.hostKeys.find((k) => k.type === 'ed25519')!.publicLine.split(' ') as [string, string];
    return { type, blob: Buffer.from(b64, 'base64'), b64 };
  };

  test('patterns: lists, wildcards, negation, case', () => {
    const { type, b64 } = ed();
    const [entry] = parseKnownHosts(`*.Studio.example,!qc.studio.example,10.0.0.? ${type} ${b64}\n`);
    expect(entry?.matches('ingest.studio.example')).toBe(true);
    expect(entry?.matches('qc.studio.example')).toBe(false);
    expect(entry?.matches('10.0.0.7')).toBe(true);
    expect(entry?.matches('10.0.0.77')).toBe(false);
    expect(entry?.matches('studio.example')).toBe(false);
  });

  test('hashed entries match the name OpenSSH looks up, for port 22 and others', async () => {
    const { type, b64 } = ed();
    const file = await knownHostsFile('hash-oracle', `sftp.studio.example ${type} ${b64}\n[sftp.studio.example]:2222 ${type} ${b64}\n`);
    await run('ssh-keygen', ['-H', '-f', file]);
    const entries = parseKnownHosts(readFileSync(file, 'utf8'));
    expect(entries).toHaveLength(2);
    expect(entries[0]?.matches(knownHostsName('SFTP.studio.example', 22))).toBe(true);
    expect(entries[0]?.matches(knownHostsName('sftp.studio.example', 2222))).toBe(false);
    expect(entries[1]?.matches(knownHostsName('sftp.studio.example', 2222))).toBe(true);
    expect(entries[1]?.matches(knownHostsName('other.example', 2222))).toBe(false);
  });

  test('corrupt and unknown-marker lines are skipped', () => {
    const { type, b64 } = ed();
    const entries = parseKnownHosts(`host ssh-rsa ${b64}\n@weird host ${type} ${b64}\nhost ${type}\nhost ${type} ${b64} comment words\n`);
    expect(entries).toHaveLength(1);
    expect(entries[0]?.keyType).toBe(type);
  });
});

describe('work started while connecting', () => {
  test('operations started before connect() settles wait for it; concurrent connect() calls share it', async () => {
    const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey: { fingerprint: sshd.hostKeys.map((k) => k.fingerprint) } }));
    try {
      const first = adapter.connect();
      const second = adapter.connect();
      // Issued before either connect settled: each waits instead of failing as "not connected".
      const [root, missing] = await Promise.all([adapter.stat(''), adapter.stat('no such file'), first, second]);
      expect(root?.kind).toBe('directory');
      expect(missing).toBeNull();
      expect(adapter.capabilities.fsync).toBe(true);
    } finally {
      await adapter.close();
    }
  });

  test('a connect that fails fails the operations waiting on it with its own error', async () => {
    const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { hostKey: { fingerprint: `SHA256:${'B'.repeat(43)}` } }));
    const connecting = adapter.connect();
    const waiting = adapter.stat('');
    expect(await rejection(connecting)).toMatchObject({ code: 'HOST_KEY_REJECTED' });
    expect(await rejection(waiting)).toMatchObject({ code: 'HOST_KEY_REJECTED' });
    // And so do operations started after it failed, rather than a bare "not connected".
    expect(await rejection(adapter.stat(''))).toMatchObject({ code: 'HOST_KEY_REJECTED' });
    await adapter.close();
  });
});
