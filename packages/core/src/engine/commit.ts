import { ErrorCode, fromSystemError, KetterError } from '../errors.js';
import { joinPath, normalizeRelative } from '../paths.js';
import type { JobRun, StagedFile } from './job-run.js';
import { laneIsWarm } from './local-lane.js';
import { LocalWalkError, walkLocalFiles } from './local-tree.js';

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
      const paths = files.map((f) => run.pathOf(f));
      for (const dir of stagedDirs) paths.push(dir);
      if (rootKind === 'directory') paths.push(staging);
      await adapter.sync(paths);
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

/**
 * After the rename: the final path exists and every file has its size, from one listing of
 * the committed tree rather than a stat per file. The listing is checked as it arrives,
 * against the files in path order, so the check holds a number per file rather than a map
 * of every path listed.
 */
async function recheckFinal(run: JobRun, files: readonly StagedFile[], rootKind: 'file' | 'directory'): Promise<void> {
  const fail = (detail: string) =>
    new KetterError(ErrorCode.IO_ERROR, `committed destination does not match what was verified: ${detail}`, {
      portal: run.destinationDir.portal.name,
      path: run.finalPath,
    });
  if (rootKind === 'file') {
    const st = await run.destAdapter.stat(run.finalPath);
    const expected = files[0]?.size ?? 0;
    if (st === null || st.kind !== 'file' || st.size !== expected) throw fail(`expected a ${expected} B file`);
    return;
  }
  const order = pathOrder(files);
  const found = new Float64Array(files.length).fill(-1);
  await listCommittedFiles(run, (path, size) => {
    const at = positionOf(files, order, path);
    if (at >= 0) found[at] = size;
  });
  // The first file out of place in path order, as a person reading the tree would meet it.
  for (let k = 0; k < order.length; k++) {
    const f = files[order[k] as number] as StagedFile;
    const size = found[k] as number;
    if (size !== f.size) throw fail(`${joinPath(run.finalPath, f.entry.path)} ${size < 0 ? 'missing' : `is ${size} B, expected ${f.size} B`}`);
  }
}

/** Indices of `files` in path order (ZIP_FIRST hands them over in it, DIRECT as they were verified). */
function pathOrder(files: readonly StagedFile[]): Uint32Array {
  const order = new Uint32Array(files.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  let sorted = true;
  for (let i = 1; i < files.length && sorted; i++) sorted = (files[i - 1] as StagedFile).entry.path < (files[i] as StagedFile).entry.path;
  if (!sorted) order.sort((a, b) => ((files[a] as StagedFile).entry.path < (files[b] as StagedFile).entry.path ? -1 : 1));
  return order;
}

/** Where `path` is in `order` (binary search), or -1. */
function positionOf(files: readonly StagedFile[], order: Uint32Array, path: string): number {
  let lo = 0;
  let hi = order.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const at = (files[order[mid] as number] as StagedFile).entry.path;
    if (at === path) return mid;
    if (at < path) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
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
