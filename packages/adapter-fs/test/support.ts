import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Adapter } from '@ketter/core';

export async function writeText(adapter: Adapter, path: string, text: string | Buffer): Promise<void> {
  await pipeline(Readable.from([Buffer.from(text)]), adapter.openWrite(path));
}

export async function readText(adapter: Adapter, path: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of adapter.openRead(path) as AsyncIterable<Buffer>) parts.push(part);
  return Buffer.concat(parts).toString('utf8');
}

export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const repo = fileURLToPath(new URL('../../../', import.meta.url));

interface Esbuild {
  build(options: Record<string, unknown>): Promise<unknown>;
}

/** esbuild comes with tsup (a dev dependency of the workspace); null when it cannot be found. */
function loadEsbuild(): Esbuild | null {
  try {
    const fromRoot = createRequire(`${repo}package.json`);
    return createRequire(fromRoot.resolve('tsup'))('esbuild') as Esbuild;
  } catch {
    return null;
  }
}

/**
 * Why an unprivileged child cannot be run here, or null when it can. Root ignores file
 * modes, so permission tests drop to `nobody` with setpriv in a separate process.
 */
export function unprivilegedUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'tests do not run as root, so they cannot switch to another user';
  if (spawnSync('setpriv', ['--version']).status !== 0) return 'setpriv is not installed';
  if (loadEsbuild() === null) return 'esbuild (from tsup) not found to bundle the child script';
  return null;
}

/**
 * Bundle `script` (TypeScript, may import the adapter sources by absolute path) into one
 * CommonJS file at `outfile`, so a plain `node` run as another user can execute it.
 */
export async function bundleChild(script: string, outfile: string): Promise<void> {
  const esbuild = loadEsbuild();
  if (!esbuild) throw new Error('esbuild not available');
  await esbuild.build({
    stdin: { contents: script, resolveDir: repo, loader: 'ts', sourcefile: 'child.ts' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile,
    logLevel: 'silent',
    // The adapter only needs core's errors; the whole core index pulls in far more.
    alias: { '@ketter/core': `${repo}packages/core/src/errors.ts` },
  });
}

export function runAsNobody(file: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, file, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export const adapterSource = `${repo}packages/adapter-fs/src/index.ts`;
