import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { FsAdapter } from '@ketter/adapter-fs';
import { expect } from 'vitest';
import { JsonlStore, KetterError, KetterEventSchema, Portal, type Adapter, type KetterEvent } from '@ketter/core';

/** A throwaway world: source and destination portals on real directories, and a JSONL store. */
export interface TestEnv {
  root: string;
  srcDir: string;
  dstDir: string;
  src: Portal;
  dst: Portal;
  store: JsonlStore;
  events: KetterEvent[];
  onEvent: (e: KetterEvent) => void;
  portalOver(adapter: Adapter, name?: string): Portal;
  cleanup(): Promise<void>;
}

export async function makeEnv(): Promise<TestEnv> {
  const root = await mkdtemp(join(tmpdir(), 'ketter-engine-'));
  const srcDir = join(root, 'src');
  const dstDir = join(root, 'dst');
  await mkdir(srcDir);
  await mkdir(dstDir);
  const srcAdapter = new FsAdapter({ root: srcDir });
  const dstAdapter = new FsAdapter({ root: dstDir });
  await srcAdapter.connect();
  await dstAdapter.connect();
  const store = new JsonlStore({ dir: join(root, 'store') });
  await store.open();
  const events: KetterEvent[] = [];
  return {
    root,
    srcDir,
    dstDir,
    src: new Portal('src', srcAdapter),
    dst: new Portal('dst', dstAdapter),
    store,
    events,
    onEvent: (e) => void events.push(e),
    portalOver: (adapter, name = 'dst') => new Portal(name, adapter),
    async cleanup() {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Write files (path → content) under `dir`, creating parents. */
export async function writeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

/** Every file under `dir` as relative path → sha256, for byte-level comparisons. */
export async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(d: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(await readFile(p)).digest('hex');
    }
  }
  await walk(dir);
  return out;
}

/** Every entry under `dir` (files and directories) with its mtime, to prove nothing was touched. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(d: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const st = await stat(p);
      // A directory's size is the filesystem's business (it varies with the order its entries were made).
      out[relative(dir, p)] = e.isDirectory() ? `d:${st.mtimeMs}` : `f:${st.size}:${st.mtimeMs}`;
      if (e.isDirectory()) await walk(p);
    }
  }
  await walk(dir);
  return out;
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Names in `dir` that look like Ketter staging or archives. */
export async function leftovers(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.includes('.ketter-'));
}

export function expectValidEvents(events: readonly KetterEvent[]): void {
  for (const e of events) KetterEventSchema.parse(e);
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The KetterError a promise rejects with; fails the test if it resolves or throws anything else. */
export async function failure(p: Promise<unknown>): Promise<KetterError> {
  try {
    await p;
  } catch (error) {
    expect(error).toBeInstanceOf(KetterError);
    return error as KetterError;
  }
  throw new Error('expected a KetterError');
}
