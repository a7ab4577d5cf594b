/**
 * Test harness: a real OpenSSH sshd on a loopback port, with throwaway host keys and a
 * throwaway authorised user key, all in a temp dir. Needs /usr/sbin/sshd
 * (`scripts/ensure-sshd.sh` installs it) and root (tests log in as root).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SSHD = '/usr/sbin/sshd';

export interface HostKeyFile {
  type: 'ed25519' | 'ecdsa';
  path: string;
  /** `ssh-ed25519 AAAA… comment` */
  publicLine: string;
  /** `SHA256:…` as ssh-keygen prints it. */
  fingerprint: string;
}

export interface SshdOptions {
  /** Allow password logins (for a throwaway system user). */
  passwordAuthentication?: boolean;
  /** Extra sshd_config lines. */
  extraConfig?: string[];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function keygen(type: 'ed25519' | 'ecdsa' | 'rsa', path: string, passphrase = ''): Promise<void> {
  await run('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', passphrase, '-C', 'ketter-test', '-f', path]);
}

export async function fingerprintOfFile(pubPath: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubPath]);
  return stdout.split(/\s+/)[1] as string;
}

/** Wait until something on the port answers with an SSH banner. */
async function waitForBanner(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1');
      let data = '';
      const done = (value: boolean): void => {
        socket.destroy();
        resolve(value);
      };
      socket.setTimeout(1000, () => done(false));
      socket.on('data', (chunk) => {
        data += chunk.toString('latin1');
        if (data.startsWith('SSH-2.0-')) done(true);
      });
      socket.on('error', () => done(false));
      socket.on('close', () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`sshd did not come up on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every descendant of `pid` (sshd forks one process per connection, in its own session). */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // The process exited while we looked.
    }
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const next = stack.pop() as number;
    for (const child of children.get(next) ?? []) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

/** Alive and not a zombie. */
/**
 * Processes (other than this one) holding a TCP socket whose local port is `port`: the
 * listener and every session it served, even one a racing fork left without its parent.
 */
function socketHolders(port: number): number[] {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(hexPort) && fields[9] && fields[9] !== '0') inodes.add(fields[9]);
    }
  }
  const holders: number[] = [];
  if (inodes.size === 0) return holders;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      for (const fd of readdirSync(`/proc/${entry}/fd`)) {
        const link = readlinkSync(`/proc/${entry}/fd/${fd}`);
        if (link.startsWith('socket:[') && inodes.has(link.slice(8, -1))) {
          holders.push(Number(entry));
          break;
        }
      }
    } catch {
      // Gone, or not ours to read.
    }
  }
  return holders;
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export class Sshd {
  readonly host = '127.0.0.1';
  #process: ChildProcess | null = null;
  #log = '';

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly configPath: string,
    readonly hostKeys: HostKeyFile[],
    /** Private key (unencrypted) authorised for root. */
    readonly userKeyPath: string,
  ) {}

  /** Generate keys and config, start sshd and wait until it answers. */
  static async start(options: SshdOptions = {}): Promise<Sshd> {
    if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: run scripts/ensure-sshd.sh`);
    if (process.getuid?.() !== 0) throw new Error('the sshd harness needs root (tests log in as root)');
    // sshd refuses to start without its privilege separation directory.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const dir = await mkdtemp(join(tmpdir(), 'ketter-sshd-'));
    const hostKeys: HostKeyFile[] = [];
    for (const type of ['ed25519', 'ecdsa'] as const) {
      const path = join(dir, `ssh_host_${type}_key`);
      await keygen(type, path);
      hostKeys.push({
        type,
        path,
        publicLine: readFileSync(`${path}.pub`, 'utf8').trim(),
        fingerprint: await fingerprintOfFile(`${path}.pub`),
      });
    }
    const userKeyPath = join(dir, 'user_ed25519');
    await keygen('ed25519', userKeyPath);
    await writeFile(join(dir, 'authorized_keys'), readFileSync(`${userKeyPath}.pub`));
    const port = await freePort();
    const configPath = join(dir, 'sshd_config');
    const config = [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      ...hostKeys.map((k) => `HostKey ${k.path}`),
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PermitRootLogin yes',
      'StrictModes no',
      'UsePAM no',
      `PasswordAuthentication ${options.passwordAuthentication ? 'yes' : 'no'}`,
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'Subsystem sftp internal-sftp',
      'LogLevel INFO',
      'MaxStartups 100',
      ...(options.extraConfig ?? []),
    ];
    await writeFile(configPath, `${config.join('\n')}\n`);
    const sshd = new Sshd(dir, port, configPath, hostKeys, userKeyPath);
    await sshd.#spawn();
    return sshd;
  }

  /** A known_hosts line for this server (`[127.0.0.1]:port key`), for the given key types. */
  knownHostsLines(types: Array<'ed25519' | 'ecdsa'> = ['ed25519', 'ecdsa']): string {
    return (
      this.hostKeys
        .filter((k) => types.includes(k.type))
        .map((k) => `[${this.host}]:${this.port} ${k.publicLine.split(' ').slice(0, 2).join(' ')}`)
        .join('\n') + '\n'
    );
  }

  get log(): string {
    return this.#log;
  }

  get running(): boolean {
    return this.#process !== null && this.#process.exitCode === null && this.#process.signalCode === null;
  }

  async #spawn(): Promise<void> {
    const child = spawn(SSHD, ['-D', '-e', '-f', this.configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#log += chunk.toString('utf8');
      if (this.#log.length > 100_000) this.#log = this.#log.slice(-50_000);
    });
    this.#process = child;
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`sshd exited (${code}) during start-up:\n${this.#log}`))),
    );
    await Promise.race([waitForBanner(this.port), exited]);
    exited.catch(() => undefined);
  }

  /** SIGKILL the listener and every session process: the network link dies mid-whatever. */
  async kill(): Promise<void> {
    const child = this.#process;
    if (!child?.pid) return;
    const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once('exit', () => r()));
    // Leaves first, so each parent is still alive to reap its child: killed processes whose
    // parent died first would linger as zombies under a container's non-reaping PID 1.
    for (let round = 0; round < 20; round++) {
      const all = descendants(child.pid);
      if (all.length === 0) break;
      const leaves = all.filter((pid) => descendants(pid).length === 0);
      for (const pid of leaves) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      for (let i = 0; i < 50 && leaves.some((pid) => isAlive(pid)); i++) await new Promise((r) => setTimeout(r, 10));
    }
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    await exited;
    // A session forked while the tree was being killed may have lost its parent and still
    // serve a client: anything still holding this port goes too.
    for (let round = 0; round < 20; round++) {
      const left = socketHolders(this.port).filter(isAlive);
      if (left.length === 0) break;
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    this.#process = null;
  }

  /** Start again on the same port with the same keys (after {@link kill} or {@link stop}). */
  async restart(): Promise<void> {
    if (this.running) await this.kill();
    // A session process forked just before the kill (a client reconnecting) can hold the
    // listening socket for a moment after its parent is gone: retry the bind briefly.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#spawn();
        return;
      } catch (error) {
        if (attempt >= 50 || !/Address already in use/.test(String(error))) throw error;
        this.#process = null;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Stop sshd and its sessions, and remove the temp dir. */
  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}
