import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { fsError } from './errors.js';

const open = promisify(fs.open);
const fsync = promisify(fs.fsync);
const close = promisify(fs.close);
const run = promisify(execFile);

/** fsyncs in flight at once: enough to keep a disk queue busy, few enough for the fd limit. */
export const SYNC_CONCURRENCY = 32;
/** From this many paths on, one filesystem-wide sync is cheaper than an fsync per path. */
export const SYNCFS_THRESHOLD = 16;
/** More distinct folders than this are synced through the first one: they share a filesystem. */
const MAX_SYNCFS_ARGS = 64;

/**
 * Make files and directories durable: `rels` are root-relative paths, `abs` maps one to its
 * absolute path. Many paths: one `syncfs(2)` (through coreutils `sync -f`) per folder
 * involved — measured ~7× faster than 5,000 parallel fsyncs here — falling back to fsync per
 * path when that is unavailable. The paths Ketter syncs at once live in one staging tree it
 * created, so they share one filesystem.
 */
export async function syncAll(rels: readonly string[], abs: (rel: string) => string, concurrency = SYNC_CONCURRENCY): Promise<void> {
  if (rels.length >= SYNCFS_THRESHOLD && (await syncFilesystems(rels, abs))) return;
  await fsyncEach(rels, abs, concurrency);
}

async function syncFilesystems(rels: readonly string[], abs: (rel: string) => string): Promise<boolean> {
  // The folders involved, found on the relative paths (thousands of files share a few
  // folders): only those few are made absolute.
  const parents = new Set<string>();
  for (const rel of rels) parents.add(parentOf(rel));
  const dirs = [...parents].map(abs);
  try {
    await run('sync', ['-f', '--', ...(dirs.length > MAX_SYNCFS_ARGS ? dirs.slice(0, 1) : dirs)]);
    return true;
  } catch {
    // No coreutils sync -f (or it failed): fall back to fsync per path, which reports the path.
    return false;
  }
}

/** The folder holding a root-relative path (`''`, the root, for a top-level name and for the root itself). */
function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/**
 * fsync each path. A file's fsync makes its data durable; a directory's fsync makes the
 * names created in it durable, which a rename-to-commit relies on. Directories open
 * read-only, which Linux allows to be fsynced.
 */
async function fsyncEach(rels: readonly string[], abs: (rel: string) => string, concurrency: number): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < rels.length) {
      const rel = rels[next++] as string;
      let fd: number | undefined;
      try {
        fd = await open(abs(rel), 'r');
        await fsync(fd);
      } catch (error) {
        failed = true;
        throw fsError(error, 'sync', rel);
      } finally {
        if (fd !== undefined) await close(fd).catch(() => undefined);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, rels.length) }, worker));
}
