import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FsAdapter } from '@ketter/adapter-fs';
import { JsonlStore, KetterError } from '@ketter/core';

/** A small seeded PRNG (mulberry32): the same seed replays the same scenario. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a chaos run: `KETTER_CHAOS_SEED` to replay one, else a fresh one (printed by the caller). */
export function chaosSeed(): number {
  const fromEnv = process.env.KETTER_CHAOS_SEED;
  if (fromEnv !== undefined && fromEnv !== '') {
    const seed = Number(fromEnv);
    if (!Number.isInteger(seed)) throw new Error(`KETTER_CHAOS_SEED must be an integer, got '${fromEnv}'`);
    return seed >>> 0;
  }
  return Math.floor(Math.random() * 2 ** 31);
}

/** Helpers over a PRNG. */
export class Dice {
  constructor(readonly next: () => number) {}
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Deterministic bytes (not cryptographic; only their identity matters). */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = Math.floor(this.next() * 2 ** 32);
      if (i + 4 <= n) out.writeUInt32LE(v, i);
      else for (let j = i; j < n; j++) out[j] = (v >>> ((j - i) * 8)) & 0xff;
    }
    return out;
  }
}

/** A fresh, world-traversable temp folder (so an unprivileged child can reach inside). */
export async function tempRoot(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ketter-rel-${prefix}-`));
  await chmod(dir, 0o755);
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Write files (relative path → content) under `dir`; a path ending in `/` is an empty directory. */
export async function writeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    if (path.endsWith('/')) {
      await mkdir(join(dir, path), { recursive: true });
      continue;
    }
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

/** The code of the error a promise rejects with (fails the test if it resolves or throws something else). */
export async function failureOf(promise: Promise<unknown>): Promise<KetterError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof KetterError) return error;
    throw error;
  }
  throw new Error('expected the job to fail');
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** An in-process world: source and destination portals over real folders, and a JSONL store. */
export interface World {
  root: string;
  srcDir: string;
  dstDir: string;
  srcFs: FsAdapter;
  dstFs: FsAdapter;
  store: JsonlStore;
  close(): Promise<void>;
}

export async function makeWorld(prefix: string, dstDir?: string): Promise<World> {
  const root = await tempRoot(prefix);
  const srcDir = join(root, 'src');
  const dst = dstDir ?? join(root, 'dst');
  await mkdir(srcDir);
  await mkdir(dst, { recursive: true });
  const srcFs = new FsAdapter({ root: srcDir });
  const dstFs = new FsAdapter({ root: dst });
  await srcFs.connect();
  await dstFs.connect();
  const store = new JsonlStore({ dir: join(root, 'store') });
  await store.open();
  return {
    root,
    srcDir,
    dstDir: dst,
    srcFs,
    dstFs,
    store,
    async close() {
      await store.close();
      await srcFs.close();
      await dstFs.close();
      await removeDir(root);
    },
  };
}
