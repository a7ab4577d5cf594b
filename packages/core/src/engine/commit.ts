import { ErrorCode, fromSystemError, KetterError } from '../errors.js';
import { joinPath, normalizeRelative } from '../paths.js';
import type { HashedFiles } from './hashed-files.js';
import type { JobRun } from './job-run.js';
import { laneIsWarm } from './local-lane.js';
import { LocalWalkError, walkLocalFiles } from './local-tree.js';

/** Paths handed to one `sync()` call: a filesystem-wide sync per piece costs a few ms. */
export const SYNC_PIECE = 16_384;

/**
 * Make staged data durable, rename staging to the final name (atomic, no-clobber), and
 * re-check what landed. After this the job is committed and nothing rolls it back.
 */
export async function commitStaging(run: JobRun, files: HashedFiles, dirs: Uint32Array, rootKind: 'file' | 'directory'): Promise<void> {
  const adapter = run.destAdapter;
  const staging = run.stagingPath;
  if (staging === null) throw new Error('nothing staged');
  run.emitter.setPhase('commit');
  // Before the data becomes visible, the proof (every file.verified) is on record and the
  // staged data is durable. Neither depends on the other, so the store write and the sync
  // run side by side; both settle before the rename, and the first failure is reported.
  const sync = async (): Promise<void> => {
    const syncPaths = adapter.capabilities.fsync ? adapter.sync?.bind(adapter) : undefined;
    if (!syncPaths) return;
    // In pieces: as strings, the paths of a 200,000-file tree were ~17 MiB of heap at once.
    let paths: string[] = [];
    const send = async (atLeast: number): Promise<void> => {
      if (paths.length < atLeast) return;
      await syncPaths(paths);
      paths = [];
    };
    for (const f of files) {
      paths.push(run.pathOf(f));
      await send(SYNC_PIECE);
    }
    for (const dir of files.entries.select(dirs)) {
      paths.push(run.stagedPathOf(dir));
      await send(SYNC_PIECE);
    }
    if (rootKind === 'directory') paths.push(staging);
    await send(1);
  };
  await allOrFirstFailure([run.emitter.flush(), sync()]);
  await adapter.rename(staging, run.finalPath);
  run.committed = true;
  run.stagingPath = null;
  if (adapter.capabilities.fsync && adapter.sync) await adapter.sync([run.destinationDir.path]);
  await recheckFinal(run, files, rootKind);
  run.emitter.emit({
    type: 'job.committed',
    destination: { portal: run.destinationDir.portal.name, path: run.finalPath },
    files: files.length,
    bytes: files.bytes,
  });
  await run.emitter.flush();
}

/** Wait for every promise to settle; then throw the first failure, in the order given. */
async function allOrFirstFailure(steps: readonly Promise<void>[]): Promise<void> {
  for (const outcome of await Promise.allSettled(steps)) {
    if (outcome.status === 'rejected') throw outcome.reason;
  }
}

/**
 * After the rename: the final path exists and every file has its size, from one listing of
 * the committed tree rather than a stat per file. Each listed file is found in the manifest
 * as it arrives, so the check holds a number per file rather than a map of every path listed.
 */
async function recheckFinal(run: JobRun, files: HashedFiles, rootKind: 'file' | 'directory'): Promise<void> {
  const fail = (detail: string) =>
    new KetterError(ErrorCode.IO_ERROR, `committed destination does not match what was verified: ${detail}`, {
      portal: run.destinationDir.portal.name,
      path: run.finalPath,
    });
  if (rootKind === 'file') {
    const st = await run.destAdapter.stat(run.finalPath);
    const expected = files.size(0);
    if (st === null || st.kind !== 'file' || st.size !== expected) throw fail(`expected a ${expected} B file`);
    return;
  }
  const { entries } = files;
  const found = new Float64Array(entries.length).fill(-1);
  await listCommittedFiles(run, (path, size) => {
    const at = entries.indexOf(path);
    if (at >= 0) found[at] = size;
  });
  // The first file out of place in path order, as a person reading the tree would meet it.
  for (let i = 0; i < entries.length; i++) {
    if (!files.has(i)) continue;
    const size = found[i] as number;
    const expected = files.size(i);
    if (size !== expected) throw fail(`${joinPath(run.finalPath, entries.path(i))} ${size < 0 ? 'missing' : `is ${size} B, expected ${expected} B`}`);
  }
}

/**
 * Every regular file of the committed tree, by path below the final path, with its size. On
 * a local destination whose lane workers are already running (they staged the files), they
 * list it with synchronous calls: the same walk as the adapter's listing at a fraction of
 * its per-entry cost, which for thousands of small files is most of the re-check.
 */
async function listCommittedFiles(run: JobRun, onFile: (path: string, size: number) => void): Promise<void> {
  const adapter = run.destAdapter;
  if (adapter.localPath && laneIsWarm()) {
    try {
      await walkLocalFiles(adapter.localPath(run.finalPath), run.finalPath, onFile);
      return;
    } catch (error) {
      if (error instanceof LocalWalkError) throw fromSystemError(error, { portal: run.destinationDir.portal.name, path: error.path, operation: 'recheck' });
      // A worker lost is the lane's failure, not the tree's: the adapter lists it instead
      // (files already seen are seen again, to the same effect).
    }
  }
  for await (const item of adapter.list(run.finalPath)) {
    if (item.kind === 'file') onFile(normalizeRelative(item.path), item.size);
  }
}
