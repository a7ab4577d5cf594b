import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI: tests run what users run. */
export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Prefix the command, e.g. `setpriv …` to run as another user. */
  wrap?: string[];
}

function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Never inherit the developer's thresholds or store into a test.
  for (const key of Object.keys(env)) if (key.startsWith('KETTER_')) delete env[key];
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/** Start the CLI without waiting for it. */
export function spawnCli(args: string[], options: RunOptions = {}): ChildProcess & { result: Promise<CliResult> } {
  const command = [...(options.wrap ?? []), process.execPath, BIN, ...args];
  const child = spawn(command[0] as string, command.slice(1), {
    cwd: options.cwd ?? process.cwd(),
    env: childEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return Object.assign(child, { result });
}

/** Run the CLI to completion. */
export function runCli(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return spawnCli(args, options).result;
}

/** A fresh temp folder (world-traversable, so an unprivileged child can reach inside). */
export async function tempDir(prefix = 'ketter-cli-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 8 * 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every file below `dir` by relative path, with its SHA-256; directories listed with `dir`. */
export async function treeHashes(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (current: string): Promise<void> => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const full = join(current, entry.name);
      const rel = relative(dir, full);
      if (entry.isDirectory()) {
        out.set(`${rel}/`, 'dir');
        await walk(full);
      } else out.set(rel, await sha256File(full));
    }
  };
  await walk(dir);
  return out;
}

/** Write `size` bytes of non-repeating-looking data (a random 1 MiB block, varied per block) without sparse regions. */
export async function writeLargeFile(path: string, size: number): Promise<void> {
  const block = randomBytes(1024 * 1024);
  const handle = await open(path, 'w');
  try {
    for (let written = 0, n = 0; written < size; n += 1) {
      block.writeUInt32LE(n, 0);
      const length = Math.min(block.length, size - written);
      await handle.write(block, 0, length);
      written += length;
    }
  } finally {
    await handle.close();
  }
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Parse the single JSON object a `--json` run prints. */
export function parseJson<T = Record<string, unknown>>(stdout: string): T {
  return JSON.parse(stdout) as T;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Wait until a hidden staging entry appears in `dir` and has grown between two looks,
 * i.e. a copy is in flight. Returns its name.
 */
export async function waitForGrowingStaging(dir: string, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: { name: string; size: number } | undefined;
  while (Date.now() < deadline) {
    const names = await readdir(dir).catch(() => [] as string[]);
    const name = names.find((n) => n.startsWith('.') && n.includes('ketter') && n.endsWith('.partial'));
    if (name !== undefined) {
      const size = await stagedBytes(join(dir, name));
      if (last && last.name === name && size > last.size && size > 0) return name;
      last = { name, size };
    }
    await sleep(15);
  }
  throw new Error(`no growing staging entry appeared in ${dir}`);
}

async function stagedBytes(path: string): Promise<number> {
  const info = await stat(path).catch(() => null);
  if (info === null) return 0;
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
