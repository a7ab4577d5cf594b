// A throwaway OpenSSH sshd on a loopback port for the SFTP benchmark: host keys, an authorised
// user key and known_hosts in a temp dir. The plain-JS twin of the adapter's test harness
// (packages/adapter-sftp/test/sshd.ts), which the benchmark cannot import.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SSHD = '/usr/sbin/sshd';

function keygen(type, path) {
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'ketter-bench', '-f', path]);
}

/** A port nobody listens on right now (loopback). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolve once something on the port greets with an SSH banner. */
export async function waitForBanner(port, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      const done = (value) => {
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
    if (Date.now() > deadline) throw new Error(`nothing answered SSH on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every descendant of `pid`: sshd forks one process per connection, in its own session. */
function descendants(pid) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  const out = [];
  const stack = [pid];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop()) ?? []) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

function isAlive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Start sshd as root on 127.0.0.1 with throwaway keys. `SetEnv SHLVL=1` keeps bash from
 * sourcing root's ~/.bashrc for every remote command (bash does so when it believes sshd
 * started it directly), which on this machine adds ~90 ms per command to every tool alike.
 */
export async function startSshd({ extraConfig = [] } = {}) {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: run scripts/ensure-bench-deps.sh`);
  if (process.getuid?.() !== 0) throw new Error('the SFTP benchmark needs root (it logs in as root on a throwaway sshd)');
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), 'ketter-bench-sshd-'));
  const hostKeys = [];
  for (const type of ['ed25519', 'ecdsa']) {
    const path = join(dir, `ssh_host_${type}_key`);
    keygen(type, path);
    hostKeys.push({ type, path, publicLine: readFileSync(`${path}.pub`, 'utf8').trim() });
  }
  const userKeyPath = join(dir, 'user_ed25519');
  keygen('ed25519', userKeyPath);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${userKeyPath}.pub`));
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
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'Subsystem sftp internal-sftp',
    'SetEnv SHLVL=1',
    'LogLevel ERROR',
    'MaxStartups 100',
    'MaxSessions 20',
    ...extraConfig,
  ];
  writeFileSync(configPath, `${config.join('\n')}\n`);
  const child = spawn(SSHD, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (chunk) => {
    log = (log + chunk.toString('utf8')).slice(-50_000);
  });
  const exited = new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`sshd exited (${code}) during start-up:\n${log}`))));
  exited.catch(() => undefined);
  try {
    await Promise.race([waitForBanner(port), exited]);
  } catch (err) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    dir,
    host: '127.0.0.1',
    port,
    userKeyPath,
    get log() {
      return log;
    },
    /** known_hosts lines naming the server as `[127.0.0.1]:port`, for each port it is reached on. */
    knownHosts(ports = [port]) {
      const keys = hostKeys.map((k) => k.publicLine.split(' ').slice(0, 2).join(' '));
      return ports.flatMap((p) => keys.map((k) => `[127.0.0.1]:${p} ${k}`)).join('\n') + '\n';
    },
    /** Kill sshd and every session (leaves first, so each parent is still there to reap), remove its dir. */
    async stop() {
      if (child.pid && child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
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
          for (let i = 0; i < 50 && leaves.some(isAlive); i++) await new Promise((r) => setTimeout(r, 10));
        }
        child.kill('SIGKILL');
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
