import { ErrorCode, KetterError, throwIfAborted } from '../errors.js';
import type { ManifestEntries, ManifestEntry } from '../manifest.js';
import { joinPath } from '../paths.js';
import type { TransferPlan } from '../plan.js';
import { commitStaging } from './commit.js';
import { copyAndHash, copyVerifyOverlapped, OVERLAP_VERIFY_BYTES, type CopiedFile } from './file-copy.js';
import { OFF_THREAD_ALGORITHMS } from '../hash/offthread.js';
import { HashedFiles } from './hashed-files.js';
import type { JobRun, StagedFile } from './job-run.js';
import { forEachLimit, forEachWithin } from './pool.js';
import { splitForLocalLane, stageWithLocalLane, warmLocalLane } from './local-lane.js';
import { canCopyVerifyLocal, COPY_FROM_LOCAL_BYTES, copyFromLocal, copyVerifyLocal, type LocalCopyEnds, type LocalFile } from './local-copy.js';
import { preflight } from './preflight.js';
import { withRetry } from './retry.js';
import { deleteSources } from './source-delete.js';
import { hasServerHash, recordVerification, verifyByReread, verifyStaged } from './verify.js';
import { finishIdentical, preserveTimes } from './finish.js';
import type { TransferResult } from './types.js';
import { canKeep, findResumable, type Resumable } from './resume.js';

/**
 * DIRECT: copy file by file into staging, hashing the source in the copy pass; verify each
 * file as soon as it is written (overlapping with the next copies); commit; MOVE deletes.
 */
export async function executeDirect(run: JobRun, plan: TransferPlan): Promise<TransferResult> {
  const manifest = plan.manifest;
  const entries = manifest.entries;
  run.decide(plan);
  warmLocalLane(run, entries); // local fast lane: workers start while locks and preflight run
  await run.lock();
  const resume = await findResumable(run, manifest);
  if ((await preflight(run, manifest, plan.totalBytes, resume?.staging)) === 'identical') return finishIdentical(run, manifest, 'DIRECT');
  if (resume) {
    run.emitter.emit({ type: 'job.resumed', fromJobId: resume.fromJobId, staging: run.stagingPath ?? '', filesVerified: resume.verified.size });
  }

  run.emitter.setPhase('stage');
  const dirs = entries.indexesOf('directory');
  for (const dir of entries.select(dirs)) {
    throwIfAborted(run.signal);
    await run.destAdapter.mkdir(run.stagedPathOf(dir));
  }
  const files = entries.indexesOf('file');
  // Large files first: they dominate wall time, and small ones fill the gaps behind them.
  const order = files.slice().sort((a, b) => entries.size(b) - entries.size(a) || a - b);
  const staged = new HashedFiles(entries);
  const inlineVerify = !hasServerHash(run);
  const stageOne = async (entry: ManifestEntry): Promise<void> => {
    await run.emitter.caughtUp();
    const kept = resume ? await keepFromResume(run, resume, entry) : null;
    if (kept) {
      staged.push(kept);
      return;
    }
    const overlapped = inlineVerify && entry.size >= OVERLAP_VERIFY_BYTES && OFF_THREAD_ALGORITHMS.has(run.settings.algorithm);
    const { file, destination } = await stageFile(run, entry, overlapped);
    if (destination) recordVerification(run, file, destination, 'reread');
    else if (inlineVerify) await verifyByReread(run, file);
    staged.push(file);
  };
  // --- local fast lane (local-lane.ts) -------------------------------------------------
  // Between two local filesystems, small files are copied and verified on worker threads;
  // the rest (and the lane's transient failures) take stageOne at the same time.
  const lane = splitForLocalLane(run, entries, order, resume);
  if (lane) await stageWithLocalLane(run, lane, (rest, one) => stageAll(run, entries, rest, one), staged, stageOne);
  else await stageAll(run, entries, order, stageOne);
  // --- end local fast lane -------------------------------------------------------------
  if (!inlineVerify) await verifyStaged(run, staged);
  if (run.settings.mode === 'move') {
    // Last look before the point of no return: a source edited since it was copied fails the job.
    await forEachLimit(entries.select(files), run.runtime.concurrency, (entry) => run.assertSourceUnchanged(entry));
  }
  await preserveTimes(run, manifest, dirs);
  await commitStaging(run, staged, dirs, manifest.rootKind);
  const sourcesKept = run.settings.mode === 'move' ? await deleteSources(run, manifest) : [];
  return run.succeed('DIRECT', { files: staged.length, bytes: plan.totalBytes, sourcesKept, skipped: false });
}

/** Take over a file the resumed job verified, or clear whatever partial copy it left. */
async function keepFromResume(run: JobRun, resume: Resumable, entry: ManifestEntry): Promise<StagedFile | null> {
  const stagedPath = run.stagedPathOf(entry);
  const kept = await canKeep(run, resume, entry, stagedPath);
  if (!kept) {
    await run.destAdapter.removeTree(stagedPath);
    return null;
  }
  run.emitter.emit({
    type: 'file.verified',
    path: entry.path,
    size: kept.size,
    algorithm: run.settings.algorithm,
    sourceHash: kept.hash,
    destinationHash: kept.hash,
    method: 'resumed',
  });
  run.emitter.progress.filesDone += 1;
  run.emitter.progress.bytesDone += kept.size;
  return { entry, hash: kept.hash, size: kept.size };
}

/** Bytes that files being copied may hold in memory at once (buffers, queued chunks). */
const STAGING_MEMORY_BUDGET = 64 * 1024 * 1024;
/** What one file in flight holds at most: a whole small file, or a large one's buffers. */
const stagingWeight = (entry: ManifestEntry) => Math.min(entry.size, 16 * 1024 * 1024);

/**
 * Stage files through the adapter path. Concurrency pays for small files (more so over a
 * network, where it hides round trips); for a few big ones it only splits the disk between
 * them; and memory stays bounded whatever the mix.
 */
function stageAll(run: JobRun, entries: ManifestEntries, files: Uint32Array, stageOne: (entry: ManifestEntry) => Promise<void>): Promise<void> {
  const allBig = files.every((i) => entries.size(i) >= 64 * 1024 * 1024);
  const concurrency = allBig ? Math.min(2, run.runtime.concurrency) : run.runtime.concurrency;
  return forEachWithin(entries.select(files), { concurrency, budget: STAGING_MEMORY_BUDGET }, stagingWeight, stageOne);
}

/**
 * Copy one file into staging with per-file retries of transient faults. With `overlapped`,
 * the copy is read back and hashed while it is written, and that destination hash is returned.
 */
async function stageFile(run: JobRun, entry: ManifestEntry, overlapped: boolean): Promise<{ file: StagedFile; destination?: CopiedFile }> {
  const stagedPath = run.stagedPathOf(entry);
  const sourcePath = joinPath(run.source.path, entry.path);
  const dest = run.destAdapter;
  let attemptBytes = 0;
  const copied = await withRetry(
    async (attempt) => {
      attemptBytes = 0;
      const onBytes = (n: number) => {
        attemptBytes += n;
        run.emitter.progress.bytesDone += n;
      };
      const fromFile = { adapter: run.sourceAdapter, path: sourcePath };
      const toFile = { adapter: dest, path: stagedPath, portal: run.destinationDir.portal.name, mode: entry.mode };
      const fromLocal = localSourceFor(run, sourcePath, entry.size);
      if (overlapped) {
        const local = localEnds(run, sourcePath, stagedPath, entry.mode);
        const both = local
          ? await copyVerifyLocal(local, run.settings.algorithm, onBytes, run.signal)
          : await copyVerifyOverlapped(fromLocal ? { ...fromFile, local: fromLocal } : fromFile, toFile, entry.size, run.settings.algorithm, onBytes, run.signal);
        return { ...both.source, destination: both.destination, attempt };
      }
      const result = fromLocal
        ? await copyFromLocal(fromLocal, toFile, run.settings.algorithm, onBytes, run.signal)
        : await copyAndHash(fromFile, toFile, entry.size, run.settings.algorithm, onBytes, run.signal);
      return { ...result, destination: undefined, attempt };
    },
    run.runtime.retry,
    async (error, attempt, delayMs) => {
      run.emitter.progress.bytesDone -= attemptBytes;
      await dest.removeTree(stagedPath);
      const info = error instanceof KetterError ? error.toJSON() : { code: ErrorCode.IO_ERROR, message: String(error) };
      run.emitter.emit({ type: 'retry.scheduled', path: entry.path, attempt, maxAttempts: run.runtime.retry.attempts, delayMs, error: info });
    },
    run.signal,
  );
  if (copied.size !== entry.size) {
    // Read a different length than scanned: the file changed (or a link truncated it) while copied.
    throw new KetterError(ErrorCode.SOURCE_CHANGED, `source changed during copy: ${run.source.portal.describe(sourcePath)} (${copied.size} B read, ${entry.size} B scanned)`, {
      portal: run.source.portal.name,
      path: sourcePath,
    });
  }
  await run.assertSourceUnchanged(entry);
  if (dest.capabilities.setMode && dest.setMode) await dest.setMode(stagedPath, entry.mode);
  if (dest.capabilities.setTimes && dest.setTimes) await dest.setTimes(stagedPath, entry.mtimeMs);
  run.emitter.emit({
    type: 'file.copied',
    path: entry.path,
    size: copied.size,
    algorithm: run.settings.algorithm,
    hash: copied.hash,
    attempt: copied.attempt,
    sourceMtimeMs: entry.mtimeMs,
  });
  run.emitter.progress.filesDone += 1;
  const file = { entry, hash: copied.hash, size: copied.size };
  return copied.destination ? { file, destination: copied.destination } : { file };
}

/** A large local source going to a destination that is not local: its paths, for {@link copyFromLocal}. */
function localSourceFor(run: JobRun, sourcePath: string, size: number): LocalFile | null {
  const { sourceAdapter: from, destAdapter: to } = run;
  if (!from.localPath || to.localPath || size < COPY_FROM_LOCAL_BYTES || !canCopyVerifyLocal(run.settings.algorithm)) return null;
  return { abs: from.localPath(sourcePath), path: sourcePath, portal: run.source.portal.name };
}

/** Both ends on local filesystems, with an algorithm the fixed-buffer path computes: its paths. */
function localEnds(run: JobRun, sourcePath: string, stagedPath: string, mode: number): LocalCopyEnds | null {
  const { sourceAdapter: from, destAdapter: to } = run;
  if (!from.localPath || !to.localPath || !canCopyVerifyLocal(run.settings.algorithm)) return null;
  return {
    source: { abs: from.localPath(sourcePath), path: sourcePath, portal: run.source.portal.name },
    destination: { abs: to.localPath(stagedPath), path: stagedPath, portal: run.destinationDir.portal.name, mode: mode & 0o777 },
  };
}
