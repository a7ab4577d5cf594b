import { ErrorCode, fromSystemError, KetterError } from '../errors.js';
import { joinPath, normalizeRelative } from '../paths.js';
import type { JobRun, StagedFile } from './job-run.js';
import { laneIsWarm } from './local-lane.js';
import { LocalWalkError, localFileSizes } from './local-tree.js';

/**
 * Make staged data durable, rename staging to the final name (atomic, no-clobber), and
 * re-check what landed. After this the job is committed and nothing rolls it back.
 */
export async function commitStaging(run: JobRun, files: readonly StagedFile[], stagedDirs: readonly string[], rootKind: 'file' | 'directory'): Promise<void> {
  const adapter = run.destAdapter;
  const staging = run.stagingPath;
  if (staging === null) throw new Error('nothing staged');
  run.emitter.setPhase('commit');
  // Before the data becomes visible, the proof (every file.verified) is on record and the
  // staged data is durable. Neither depends on the other, so the store write and the sync
  // run side by side; both settle before the rename, and the first failure is reported.
  const sync = async (): Promise<void> => {
    if (adapter.capabilities.fsync && adapter.sync) {
      await adapter.sync([...files.map((f) => run.pathOf(f)), ...stagedDirs, ...(rootKind === 'directory' ? [staging] : [])]);
    }
  };
  await allOrFirstFailure([run.emitter.flush(), sync()]);
  await adapter.rename(staging, run.finalPath);
  run.committed = true;
  run.stagingPath = null;
  if (adapter.capabilities.fsync && adapter.sync) await adapter.sync([run.destinationDir.path]);
  await recheckFinal(run, files, rootKind);
  const bytes = files.reduce((n, f) => n + f.size, 0);
  run.emitter.emit({
    type: 'job.committed',
    destination: { portal: run.destinationDir.portal.name, path: run.finalPath },
    files: files.length,
    bytes,
  });
  await run.emitter.flush();
}

/** Wait for every promise to settle; then throw the first failure, in the order given. */
async function allOrFirstFailure(steps: readonly Promise<void>[]): Promise<void> {
  for (const outcome of await Promise.allSettled(steps)) {
    if (outcome.status === 'rejected') throw outcome.reason;
  }
}

/** After the rename: the final path exists and every file has its size (one listing, not one stat per file). */
async function recheckFinal(run: JobRun, files: readonly StagedFile[], rootKind: 'file' | 'directory'): Promise<void> {
  const adapter = run.destAdapter;
  const fail = (detail: string) =>
    new KetterError(ErrorCode.IO_ERROR, `committed destination does not match what was verified: ${detail}`, {
      portal: run.destinationDir.portal.name,
      path: run.finalPath,
    });
  if (rootKind === 'file') {
    const st = await adapter.stat(run.finalPath);
    const expected = files[0]?.size ?? 0;
    if (st === null || st.kind !== 'file' || st.size !== expected) throw fail(`expected a ${expected} B file`);
    return;
  }
  const sizes = await committedFileSizes(run);
  for (const f of files) {
    const size = sizes.get(f.entry.path);
    if (size !== f.size) throw fail(`${joinPath(run.finalPath, f.entry.path)} ${size === undefined ? 'missing' : `is ${size} B, expected ${f.size} B`}`);
  }
}

/**
 * The size of every regular file of the committed tree, by path below the final path. On a
 * local destination whose lane workers are already running (they staged the files), they
 * list it with synchronous calls: the same walk as the adapter's listing at a fraction of
 * its per-entry cost, which for thousands of small files is most of the re-check.
 */
async function committedFileSizes(run: JobRun): Promise<Map<string, number>> {
  const adapter = run.destAdapter;
  if (adapter.localPath && laneIsWarm()) {
    try {
      return await localFileSizes(adapter.localPath(run.finalPath), run.finalPath);
    } catch (error) {
      if (error instanceof LocalWalkError) throw fromSystemError(error, { portal: run.destinationDir.portal.name, path: error.path, operation: 'recheck' });
      // A worker lost is the lane's failure, not the tree's: the adapter lists it instead.
    }
  }
  const sizes = new Map<string, number>();
  for await (const item of adapter.list(run.finalPath)) {
    if (item.kind === 'file') sizes.set(normalizeRelative(item.path), item.size);
  }
  return sizes;
}
