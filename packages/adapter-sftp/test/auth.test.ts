import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { SftpAdapter } from '../src/index.js';
import { keygen, Sshd } from './sshd.js';
import { makeRoots, sshdOptions } from './support.js';

const run = promisify(execFile);

let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
const envNames: string[] = [];

beforeAll(async () => {
  sshd = await Sshd.start({ passwordAuthentication: true });
  roots = await makeRoots();
});
afterAll(async () => {
  await sshd?.stop();
  if (roots) await rm(roots.base, { recursive: true, force: true });
});
afterEach(() => {
  for (const name of envNames.splice(0)) delete process.env[name];
});

/** Put a secret in a fresh environment variable and return its name. */
function secretEnv(value: string): string {
  const name = `KETTER_TEST_SECRET_${randomBytes(4).toString('hex').toUpperCase()}`;
  process.env[name] = value;
  envNames.push(name);
  return name;
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; transient?: boolean }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

/** Everything an error exposes as text: message, JSON form and the cause chain. */
function allText(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(String((e as Error).message), String((e as Error).stack));
    try {
      parts.push(JSON.stringify(e));
    } catch {
      /* circular */
    }
  }
  return parts.join('\n');
}

async function connectAndStat(options: Partial<ConstructorParameters<typeof SftpAdapter>[0]>): Promise<void> {
  const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, options));
  try {
    await adapter.connect();
    expect((await adapter.stat(''))?.kind).toBe('directory');
  } finally {
    await adapter.close();
  }
}

describe('private key', () => {
  test('an unencrypted key file', async () => {
    await connectAndStat({ auth: { privateKeyPath: sshd.userKeyPath } });
  });

  test('an encrypted key with its passphrase from an environment variable', async () => {
    const passphrase = `pp-${randomBytes(6).toString('hex')}`;
    const key = join(roots.base, 'encrypted_key');
    await keygen('ed25519', key, passphrase);
    await writeFile(join(sshd.dir, 'authorized_keys'), `${readFileSync(`${sshd.userKeyPath}.pub`, 'utf8')}${readFileSync(`${key}.pub`, 'utf8')}`);
    await connectAndStat({ auth: { privateKeyPath: key, passphraseEnv: secretEnv(passphrase) } });

    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const error = await rejection(connectAndStat({ auth: { privateKeyPath: key, passphraseEnv: secretEnv(wrong) } }));
    expect(error).toMatchObject({ code: 'AUTHENTICATION_FAILED' });
    expect(allText(error)).not.toContain(wrong);

    const none = await rejection(connectAndStat({ auth: { privateKeyPath: key } }));
    expect(none).toMatchObject({ code: 'AUTHENTICATION_FAILED', message: expect.stringMatching(/encrypted/) });
  });

  test('a key the server does not accept: AUTHENTICATION_FAILED without key material', async () => {
    const key = join(roots.base, 'stranger_key');
    await keygen('ed25519', key);
    const error = await rejection(connectAndStat({ auth: { privateKeyPath: key } }));
    expect(error).toMatchObject({ name: 'KetterError', code: 'AUTHENTICATION_FAILED', transient: false });
    expect(error.message).toContain(key);
    const body = readFileSync(key, 'utf8').split('\n').slice(1, -2).join('');
    expect(allText(error)).not.toContain(body.slice(0, 40));
  });

  test('a missing key file or unset variable is INVALID_REQUEST at connect, not in the constructor', async () => {
    const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { auth: { privateKeyPath: join(roots.base, 'nope') } }));
    await expect(adapter.connect()).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    const unset = 'KETTER_TEST_UNSET_VARIABLE';
    delete process.env[unset];
    const error = await rejection(connectAndStat({ auth: { passwordEnv: unset } }));
    expect(error).toMatchObject({ code: 'INVALID_REQUEST' });
    expect(error.message).toContain(unset);
  });

  test('secrets cannot be given inline, and a refused option value is not echoed', () => {
    const secret = `inline-${randomBytes(6).toString('hex')}`;
    let caught: unknown;
    try {
      new SftpAdapter(sshdOptions(sshd, roots.root, { auth: { password: secret } as never }));
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'INVALID_REQUEST' });
    expect(allText(caught)).not.toContain(secret);
  });
});

describe('agent', () => {
  let agent: ChildProcess | undefined;
  let socket: string;

  beforeAll(async () => {
    socket = join(roots.base, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
    await run('ssh-add', [sshd.userKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socket } });
  });
  afterAll(() => {
    agent?.kill('SIGTERM');
  });

  test('an agent socket path', async () => {
    await connectAndStat({ auth: { agent: socket } });
  });

  test('agent: true uses $SSH_AUTH_SOCK', async () => {
    const saved = process.env.SSH_AUTH_SOCK;
    process.env.SSH_AUTH_SOCK = socket;
    try {
      await connectAndStat({ auth: { agent: true } });
    } finally {
      if (saved === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = saved;
    }
  });

  test('methods are tried in order: a refused key, then the agent', async () => {
    const key = join(roots.base, 'refused_key');
    await keygen('ed25519', key);
    await connectAndStat({ auth: [{ privateKeyPath: key }, { agent: socket }] });
  });
});

describe('password (throwaway system user)', () => {
  const user = `ktest${randomBytes(3).toString('hex')}`;
  const password = `Pw-${randomBytes(9).toString('base64url')}`;
  let created = false;

  beforeAll(async () => {
    await run('useradd', ['-M', '-N', '-s', '/bin/sh', '-d', roots.base, user]);
    created = true;
    const child = spawn('chpasswd', { stdio: ['pipe', 'ignore', 'inherit'] });
    child.stdin.end(`${user}:${password}\n`);
    await new Promise<void>((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`chpasswd ${code}`)))));
    await chmod(roots.base, 0o755);
  });
  afterAll(async () => {
    if (created) await run('userdel', [user]).catch(() => undefined);
  });

  test('the password from an environment variable logs in', async () => {
    await connectAndStat({ username: user, auth: { passwordEnv: secretEnv(password) } });
  });

  test('a wrong password: AUTHENTICATION_FAILED, and no password in the error', async () => {
    const wrong = `Wrong-${randomBytes(9).toString('base64url')}`;
    const error = await rejection(connectAndStat({ username: user, auth: { passwordEnv: secretEnv(wrong) } }));
    expect(error).toMatchObject({ code: 'AUTHENTICATION_FAILED', transient: false });
    expect(allText(error)).not.toContain(wrong);
    expect(allText(error)).not.toContain(password);
  });

  test('an unprivileged user writing into a root-owned directory: PERMISSION_DENIED', async () => {
    const adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { username: user, auth: { passwordEnv: secretEnv(password) } }));
    await adapter.connect();
    try {
      await chmod(roots.root, 0o755);
      await expect(adapter.mkdir('not-mine')).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      await expect(pipeline(Readable.from([Buffer.from('x')]), adapter.openWrite('not-mine.txt'))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    } finally {
      await adapter.close();
    }
  });
});

describe('network', () => {
  test('nothing listening: CONNECTION_ERROR, transient', async () => {
    const adapter = new SftpAdapter({ ...sshdOptions(sshd, roots.root), port: 1, retry: { attempts: 1 } });
    await expect(adapter.connect()).rejects.toMatchObject({ code: 'CONNECTION_ERROR', transient: true });
  });

  test('the id names host and port only', () => {
    const adapter = new SftpAdapter(sshdOptions(sshd, roots.root));
    expect(adapter.id).toBe(`sftp://127.0.0.1:${sshd.port}`);
    expect(adapter.kind).toBe('sftp');
  });

  test('a root that does not exist fails connect with SOURCE_NOT_FOUND', async () => {
    await expect(connectAndStat({ root: join(roots.base, 'missing-root') })).rejects.toMatchObject({ code: 'SOURCE_NOT_FOUND' });
  });
});
