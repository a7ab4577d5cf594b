import { Worker } from 'node:worker_threads';
import { SMALL_FILE_BYTES } from '../adapter.js';
import { cancelledError, ErrorCode, fromSystemError, isTransient, KetterError, throwIfAborted } from '../errors.js';
import type { HashAlgorithm } from '../hash/algorithms.js';
import type { ManifestEntries, ManifestEntry } from '../manifest.js';
import { joinPath } from '../paths.js';
import type { HashedFiles } from './hashed-files.js';
import type { JobRun } from './job-run.js';
import { LANE_WORKER_SOURCE } from './local-lane-worker.js';
import { forEachLimit } from './pool.js';
import { backoffDelay, sleep } from './retry.js';
import type { Resumable } from './resume.js';
import { hasServerHash, recordVerification } from './verify.js';

/*
 * The local fast lane. Between two adapters that expose `localPath` (local disks, mounted
 * volumes), a small file costs more in main-thread bookkeeping of its ~14 asynchronous fs
 * requests than in I/O. Here worker threads copy, hash and verify such files with
 * synchronous calls, in batches, and the main thread only records the results — the same
 * events, the same proof, the same failure codes as the adapter path. After the commit, the
 * same workers list the committed tree for its re-check (`local-tree.ts`).
 *
 * `FaultyAdapter` deliberately does not expose `localPath`: fault-injection tests must keep
 * exercising the adapter path, and a wrapper that has to see every read and write must
 * never be bypassed. Do not add it there.
 */

/** Algorithms the lane computes (OpenSSL through `node:crypto`, available in every worker). */
const LANE_ALGORITHMS: ReadonlySet<HashAlgorithm> = new Set(['sha256', 'md5']);
/** Files per batch: enough to make one message cheap per file, few enough to balance workers. */
const BATCH_FILES = 64;
/** Bytes per batch, so a batch of 1 MiB files does not hold back progress and cancellation. */
const BATCH_BYTES = 8 * 1024 * 1024;

/** One file for a worker: absolute paths, the scanned size and mtime, and what to set. */
export interface LaneTask {
  src: string;
  /** Absent: only read and hash the source, and answer its bytes. */
  dst?: string;
  size: number;
  mtimeMs: number;
  /** Mtime drift tolerated as "unchanged": 0 (exact) unless the source adapter stores coarser times. */
  mtimeSlackMs: number;
  mode: number;
  algorithm: HashAlgorithm;
  /** Clear whatever an interrupted run left at `dst` before creating it. */
  replace: boolean;
  /** Extract instead of copy: `src` is a STORE zip and this the offset of the entry's local header. */
  at?: number;
}

/** A worker's answer for one file. */
export type LaneResult =
  | { ok: true; hash: string; size: number; destHash: string; destSize: number }
  | { ok: true; hash: string; size: number; data: Uint8Array; crc32: number }
  | { ok: false; phase: 'read' | 'write' | 'verify'; errno?: string; syscall?: string; message: string }
  | { ok: false; phase: 'changed'; size: number }
  | { ok: false; phase: 'stopped' };

// ---------------------------------------------------------------------------------------
// The worker pool: shared by every job of the process, created on first use, never what
// keeps the process alive while idle.

/** A worker's reply: `results` to a batch of tasks, `walk` to a walk (see `local-tree.ts`). */
interface LaneReply {
  id: number;
  results?: LaneResult[];
  walk?: unknown;
  /** The buffer a read batch was lent, moved back. */
  into?: ArrayBuffer;
  /** A page of a walk's answer: the final reply is still to come. */
  more?: true;
}

interface Waiter {
  resolve: (reply: LaneReply) => void;
  reject: (error: Error) => void;
  /** Takes the pages that come before the final reply. */
  page?: (reply: LaneReply) => void;
}

interface LaneWorker {
  worker: Worker;
  pending: Map<number, Waiter>;
}

const pool: LaneWorker[] = [];
let nextBatchId = 1;

/**
 * Workers in the pool: 4, whatever the cores. They spend most of their time waiting on the
 * disk, not computing, so more of them than cores keep more reads in flight: on 2 cores,
 * 20,000 × 16 KiB from a cold cache took ~3.4 s with 2 workers and ~2.9 s with 4 (and
 * beyond 4, the disk rather than the CPU limits).
 */
export function laneWorkerCount(): number {
  return LANE_WORKERS;
}
const LANE_WORKERS = 4;

function spawn(): LaneWorker {
  // A worker allocates little per file (its buffers are reused): a small young generation
  // keeps each one's memory down (~10 MiB less per 2 workers).
  const worker = new Worker(LANE_WORKER_SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 1 } });
  const lw: LaneWorker = { worker, pending: new Map() };
  lw.worker.unref();
  lw.worker.on('message', (m: LaneReply) => {
    const waiter = lw.pending.get(m.id);
    if (m.more) {
      waiter?.page?.(m);
      return;
    }
    lw.pending.delete(m.id);
    if (lw.pending.size === 0) lw.worker.unref();
    waiter?.resolve(m);
  });
  const lost = (error: Error) => {
    const at = pool.indexOf(lw);
    if (at >= 0) pool.splice(at, 1);
    for (const waiter of lw.pending.values()) waiter.reject(error);
    lw.pending.clear();
  };
  lw.worker.on('error', lost);
  lw.worker.on('exit', (code) => lost(new Error(`local lane worker exited (${code})`)));
  pool.push(lw);
  return lw;
}

/** The least busy of the first `workers` workers, spawning up to that many first. */
function pickWorker(workers: number): LaneWorker {
  if (pool.length < workers) return spawn();
  let best = pool[0] as LaneWorker;
  for (const lw of pool.slice(0, workers)) if (lw.pending.size < best.pending.size) best = lw;
  return best;
}

/**
 * Send one message to the least busy worker (moving `transfer` to it); resolves with its
 * final reply, after handing any pages before it to `page`.
 */
function post(message: object, workers = laneWorkerCount(), transfer: ArrayBuffer[] = [], page?: (reply: LaneReply) => void): Promise<LaneReply> {
  const lw = pickWorker(workers);
  const id = nextBatchId++;
  return new Promise((resolve, reject) => {
    lw.pending.set(id, page ? { resolve, reject, page } : { resolve, reject });
    lw.worker.ref();
    lw.worker.postMessage({ ...message, id }, transfer);
  });
}

/** Run one batch on a worker. `stop` is a shared flag the worker checks before each file. */
async function runBatch(tasks: readonly LaneTask[], stop: SharedArrayBuffer, workers?: number): Promise<LaneResult[]> {
  return (await runLending(tasks, stop, workers)).results;
}

/** {@link runBatch}, lending the worker `into` for a read batch's bytes; it comes back with the results. */
async function runLending(tasks: readonly LaneTask[], stop: SharedArrayBuffer, workers?: number, into?: ArrayBuffer): Promise<{ results: LaneResult[]; into?: ArrayBuffer }> {
  const { results, into: back } = await post({ tasks, stop, into }, workers, into ? [into] : []);
  if (results === undefined) throw new Error('local lane answered a batch without results');
  return back ? { results, into: back } : { results };
}

/** Whether the pool has workers running (started by this job or another): work sent now starts at once. */
export function laneIsWarm(): boolean {
  return pool.length > 0;
}

/**
 * @internal Send a walk request to a worker (see `local-tree.ts`); resolves with the worker's
 * final `walk` answer, after handing each page of a large directory to `page` as it comes.
 */
export async function postWalk(walk: { root: string; dirs: string[]; budget: number }, page: (walk: unknown) => void): Promise<unknown> {
  return (await post({ walk }, undefined, [], (reply) => page(reply.walk))).walk;
}

/**
 * Start the pool's workers ahead of use when this job may take the lane, so their start-up
 * (tens of milliseconds) overlaps locking and preflight instead of delaying the first file.
 */
export function warmLocalLane(run: JobRun, entries: ManifestEntries): void {
  if (!run.sourceAdapter.localPath || !run.destAdapter.localPath || !LANE_ALGORITHMS.has(run.settings.algorithm)) return;
  if (!hasSmallFile(entries)) return;
  while (pool.length < laneWorkerCount()) spawn();
}

// ---------------------------------------------------------------------------------------
// One job's use of the lane.

function hasSmallFile(entries: ManifestEntries): boolean {
  return entries.someFileSized((size) => size <= SMALL_FILE_BYTES);
}

/** The files of a job split between the lane and the adapter path, by manifest index. */
export interface LaneSplit {
  entries: ManifestEntries;
  lane: Uint32Array;
  rest: Uint32Array;
  /** Resuming: staging may hold partial copies from the interrupted run, to be replaced. */
  replace: boolean;
}

/**
 * Which files take the lane: only when both adapters are local filesystems, the algorithm
 * is one the workers compute and the destination has no server-side hash for it; then
 * every small file, except those an interrupted run already verified (the adapter path
 * decides whether to keep them). `null`: no lane.
 */
export function splitForLocalLane(run: JobRun, entries: ManifestEntries, files: Uint32Array, resume: Resumable | null): LaneSplit | null {
  if (!run.sourceAdapter.localPath || !run.destAdapter.localPath || !LANE_ALGORITHMS.has(run.settings.algorithm)) return null;
  // A destination that hashes on its side is verified in bulk after staging: one proof per file.
  if (hasServerHash(run)) return null;
  const lane = new Uint32Array(files.length);
  const rest = new Uint32Array(files.length);
  let nLane = 0;
  let nRest = 0;
  for (const i of files) {
    if (entries.kind(i) === 'file' && entries.size(i) <= SMALL_FILE_BYTES && !resume?.verified.has(entries.path(i))) lane[nLane++] = i;
    else rest[nRest++] = i;
  }
  return nLane === 0 ? null : { entries, lane: lane.subarray(0, nLane), rest: rest.subarray(0, nRest), replace: resume !== null };
}

/**
 * Stage a job's files: the lane's share on the worker threads, the rest through
 * `stageOne` (the adapter path) at the same time. Like `forEachLimit`, the first failure
 * stops new work on both sides, and everything in flight settles before it is thrown, so
 * nothing is still writing when the job rolls back.
 */
export async function stageWithLocalLane(
  run: JobRun,
  split: LaneSplit,
  stageRest: (files: Uint32Array, stageOne: (entry: ManifestEntry) => Promise<void>) => Promise<void>,
  staged: HashedFiles,
  stageOne: (entry: ManifestEntry) => Promise<void>,
): Promise<void> {
  throwIfAborted(run.signal);
  let halted = false;
  let first: { error: unknown } | null = null;
  const stop = new SharedArrayBuffer(4);
  const halt = () => {
    halted = true;
    Atomics.store(new Int32Array(stop), 0, 1);
  };
  // The first failure is the one reported; the other side then only stops.
  const guard = (p: Promise<void>) =>
    p.catch((error: unknown) => {
      first ??= { error };
      halt();
    });
  const onAbort = () => halt();
  run.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.all([
      guard(stageRest(split.rest, (entry) => (halted ? Promise.resolve() : stageOne(entry)))),
      guard(runLane(run, split, staged, stop, () => halted, stageOne)),
    ]);
    throwIfAborted(run.signal);
    if (first !== null) throw (first as { error: unknown }).error;
  } finally {
    run.signal.removeEventListener('abort', onAbort);
  }
}

/** Feed the lane's files to the workers, at most two batches per worker in flight. */
async function runLane(
  run: JobRun,
  split: LaneSplit,
  staged: HashedFiles,
  stop: SharedArrayBuffer,
  halted: () => boolean,
  stageOne: (entry: ManifestEntry) => Promise<void>,
): Promise<void> {
  const { entries } = split;
  const batches = batchBounds(split.lane, (i) => entries.size(i));
  const nBatches = batches.length - 1;
  const retryLater: ManifestEntry[] = [];
  let next = 0;
  let failure: { error: unknown } | null = null;
  const feeder = async (): Promise<void> => {
    while (failure === null && !halted() && next < nBatches) {
      await run.emitter.caughtUp();
      if (failure !== null || halted() || next >= nBatches) return;
      const batch = [...entries.select(batchAt(split.lane, batches, next++))];
      const tasks = batch.map((entry) => taskFor(run, entry, split.replace));
      let results: LaneResult[];
      try {
        results = await runBatch(tasks, stop);
      } catch (error) {
        failure ??= { error: new KetterError(ErrorCode.IO_ERROR, `local copy worker failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }) };
        return;
      }
      for (let i = 0; i < batch.length && failure === null; i++) {
        try {
          const verdict = accept(run, batch[i] as ManifestEntry, tasks[i] as LaneTask, results[i] as LaneResult, staged);
          if (verdict === 'retry') retryLater.push(batch[i] as ManifestEntry);
        } catch (error) {
          failure ??= { error };
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(nBatches, laneBatchesInFlight()) }, feeder));
  if (failure !== null) throw (failure as { error: unknown }).error;
  if (halted()) return;
  // Transient faults (EAGAIN, EBUSY, EINTR…) get the adapter path's retries with backoff.
  await forEachLimit(retryLater, run.runtime.concurrency, async (entry) => {
    await run.destAdapter.removeTree(run.stagedPathOf(entry));
    await stageOne(entry);
  });
}

/**
 * Consecutive files in batches of at most {@link BATCH_FILES} files and about
 * {@link BATCH_BYTES} bytes, as boundaries: batch `b` is `files[bounds[b]]` up to
 * `files[bounds[b + 1]]` (see {@link batchAt}). Boundaries rather than one array per
 * batch: a 200,000-file tree makes thousands of batches.
 */
export function batchBounds(files: Uint32Array, sizeOf: (index: number) => number): Uint32Array {
  const bounds = new Uint32Array(files.length + 1);
  let n = 0;
  let start = 0;
  let bytes = 0;
  for (let k = 0; k < files.length; k++) {
    const size = sizeOf(files[k] as number);
    if (k > start && (k - start >= BATCH_FILES || bytes + size > BATCH_BYTES)) {
      bounds[n++] = start;
      start = k;
      bytes = 0;
    }
    bytes += size;
  }
  if (files.length > 0) bounds[n++] = start;
  bounds[n++] = files.length;
  return bounds.slice(0, n);
}

/** Batch `b` of {@link batchBounds}: a view of `files`. */
export function batchAt(files: Uint32Array, bounds: Uint32Array, b: number): Uint32Array {
  return files.subarray(bounds[b] as number, bounds[b + 1] as number);
}

function taskFor(run: JobRun, entry: ManifestEntry, replace: boolean): LaneTask {
  const dst = run.destAdapter.localPath as (path: string) => string;
  return { ...readTaskFor(run, entry), dst: dst.call(run.destAdapter, run.stagedPathOf(entry)), replace };
}

/** The source side of a lane task: read, hash and check one file against its scan. */
function readTaskFor(run: JobRun, entry: ManifestEntry): LaneTask {
  const src = run.sourceAdapter.localPath as (path: string) => string;
  const precision = run.sourceAdapter.capabilities.mtimePrecisionMs;
  return {
    src: src.call(run.sourceAdapter, joinPath(run.source.path, entry.path)),
    size: entry.size,
    mtimeMs: entry.mtimeMs,
    mtimeSlackMs: precision > 1 ? precision : 0,
    mode: entry.mode & 0o777,
    algorithm: run.settings.algorithm,
    replace: false,
  };
}

/**
 * A worker's failure as the error the adapter path would raise (portal-relative paths, the
 * same codes), or `retry` for a transient fault the adapter path's retries should get.
 */
function laneFailure(run: JobRun, entry: ManifestEntry, task: LaneTask, result: Exclude<LaneResult, { ok: true }>, stagedPath: string): KetterError | 'retry' {
  const sourcePath = joinPath(run.source.path, entry.path);
  if (result.phase === 'stopped') return cancelledError(run.signal);
  if (result.phase === 'changed') {
    const detail =
      result.size < 0 ? 'no longer a regular file' : result.size !== entry.size ? `${result.size} B now, ${entry.size} B scanned` : 'modified since the scan';
    return new KetterError(ErrorCode.SOURCE_CHANGED, `source changed during copy: ${run.source.portal.describe(sourcePath)} (${detail})`, {
      portal: run.source.portal.name,
      path: sourcePath,
    });
  }
  const onSource = result.phase === 'read';
  // The worker's message names absolute paths; errors name portal-relative ones only.
  let message = result.message.split(task.src).join(sourcePath);
  if (task.dst !== undefined) message = message.split(task.dst).join(stagedPath);
  const cause = Object.assign(new Error(message), { code: result.errno, syscall: result.syscall });
  if (isTransient(cause)) return 'retry';
  return fromSystemError(cause, {
    portal: onSource ? run.source.portal.name : run.destinationDir.portal.name,
    path: onSource ? sourcePath : stagedPath,
    operation: result.phase,
  });
}

/** Whether small files of this job's source can be read on the lane's workers. */
export function canReadOnLane(run: JobRun): boolean {
  return run.sourceAdapter.localPath !== undefined && LANE_ALGORITHMS.has(run.settings.algorithm);
}

/**
 * Workers that read for the ZIP_FIRST packer. Towards a remote destination the network,
 * not the source disk, sets the pace, and each worker costs ~10 MiB of memory: two are
 * enough. Towards a local one the same workers extract afterwards, so all of them read.
 */
function readWorkers(run: JobRun): number {
  return run.destAdapter.localPath ? laneWorkerCount() : Math.min(2, laneWorkerCount());
}

/** {@link warmLocalLane} for a job that will only read on the lane (the ZIP_FIRST packer). */
export function warmLaneForReads(run: JobRun, entries: ManifestEntries): void {
  if (!canReadOnLane(run) || !hasSmallFile(entries)) return;
  while (pool.length < readWorkers(run)) spawn();
}

/** Batches sent to the lane at once: two per worker, so none waits between batches. */
export function laneBatchesInFlight(run?: JobRun): number {
  return (run ? readWorkers(run) : laneWorkerCount()) * 2;
}

/**
 * Read small local source files on the lane's workers, with the same checks as a lane copy
 * (no link followed, size and mtime as scanned): per file its bytes and source hash, the
 * error the adapter path would raise, or `retry` for a transient fault. The bytes' CRC-32
 * comes with them, computed on the worker, for the archive writer. `into`, when given, is
 * moved to the worker, which puts the bytes there while it has room (views into it), and
 * comes back with the answer for the caller to lend again once it is done with them.
 */
export async function readOnLane(
  run: JobRun,
  entries: readonly ManifestEntry[],
  stop: SharedArrayBuffer,
  into?: ArrayBuffer,
): Promise<{ files: Array<{ data: Uint8Array; hash: string; crc32: number } | KetterError | 'retry'>; into?: ArrayBuffer }> {
  const tasks = entries.map((entry) => readTaskFor(run, entry));
  const reply = await runLending(tasks, stop, readWorkers(run), into);
  const files = reply.results.map((result, i) => {
    const entry = entries[i] as ManifestEntry;
    if (!result.ok) return laneFailure(run, entry, tasks[i] as LaneTask, result, '');
    if (!('data' in result)) throw new Error('local lane answered a read task without its bytes');
    return { data: result.data, hash: result.hash, crc32: result.crc32 };
  });
  return reply.into ? { files, into: reply.into } : { files };
}

/**
 * Record one file the way the adapter path does (`file.copied`, then `file.verified` by
 * re-read, progress) or turn its failure into the error the adapter path would raise.
 * `retry`: a transient fault, to go through the adapter path and its retries.
 */
function accept(run: JobRun, entry: ManifestEntry, task: LaneTask, result: LaneResult, staged: HashedFiles): 'done' | 'retry' {
  const stagedPath = run.stagedPathOf(entry);
  if (!result.ok) {
    const failure = laneFailure(run, entry, task, result, stagedPath);
    if (failure === 'retry') return 'retry';
    throw failure;
  }
  if (!('destHash' in result)) throw new Error('local lane answered a copy task without its verification');
  run.emitter.emit({
    type: 'file.copied',
    path: entry.path,
    size: result.size,
    algorithm: run.settings.algorithm,
    hash: result.hash,
    attempt: 1,
    sourceMtimeMs: entry.mtimeMs,
  });
  run.emitter.progress.filesDone += 1;
  run.emitter.progress.bytesDone += result.size;
  const file = { entry, hash: result.hash, size: result.size };
  recordVerification(run, file, { hash: result.destHash, size: result.destSize }, 'reread');
  staged.push(file);
  return 'done';
}

// ---------------------------------------------------------------------------------------
// ZIP_FIRST extraction into a local staging directory.

/** The files of a job's archive, by manifest index, with the offset of each one's local header. */
export interface ArchiveMembers {
  entries: ManifestEntries;
  files: Uint32Array;
  offsetOf(index: number): number;
}

/** What extracting one file on the lane found: the archive's bytes and the read-back, hashed. */
export interface LaneExtracted {
  hash: string;
  size: number;
  destHash: string;
  destSize: number;
}

/**
 * Whether a ZIP_FIRST job's archive can be extracted on the lane: staging is on a local
 * filesystem, the workers compute the algorithm, and the destination has no server-side
 * hash that would verify the files in bulk instead.
 */
export function canExtractOnLane(run: JobRun): boolean {
  return run.destAdapter.localPath !== undefined && LANE_ALGORITHMS.has(run.settings.algorithm) && !hasServerHash(run);
}

/**
 * Extract files of the job's archive (local, already verified by hash) into staging on the
 * lane's workers: each file's bytes are read at its known offset, written with the mode and
 * mtime of its source, read back from disk and hashed, all with synchronous calls, so a
 * session of thousands of small files costs no per-file main-thread I/O. `check` gets each
 * member's answer as it arrives (by manifest index) and throws to fail the job; nothing per file is
 * kept here, so a tree of hundreds of thousands of files costs no memory. The first failure
 * stops the batches not yet started and is thrown once those in flight have settled;
 * transient faults are retried with backoff like the adapter path's.
 */
export async function extractOnLane(
  run: JobRun,
  archivePath: string,
  members: ArchiveMembers,
  check: (index: number, extracted: LaneExtracted) => void,
): Promise<void> {
  throwIfAborted(run.signal);
  const dest = run.destAdapter;
  const localPath = dest.localPath as (path: string) => string;
  const archive = localPath.call(dest, archivePath);
  const { entries, files } = members;
  const taskOf = (entry: ManifestEntry): LaneTask => ({
    src: archive,
    at: members.offsetOf(entry.index),
    dst: localPath.call(dest, run.stagedPathOf(entry)),
    size: entry.size,
    mtimeMs: entry.mtimeMs,
    mtimeSlackMs: 0,
    mode: entry.mode & 0o777,
    algorithm: run.settings.algorithm,
    replace: false,
  });
  const batches = batchBounds(files, (i) => entries.size(i));
  const nBatches = batches.length - 1;
  const stop = new SharedArrayBuffer(4);
  const halt = () => Atomics.store(new Int32Array(stop), 0, 1);
  const onAbort = () => halt();
  run.signal.addEventListener('abort', onAbort, { once: true });
  let next = 0;
  let failure: { error: unknown } | null = null;
  const settle = async (entry: ManifestEntry, task: LaneTask, result: LaneResult): Promise<void> => {
    const index = entry.index;
    for (let attempt = 1; ; attempt++) {
      if (result.ok) {
        if (!('destHash' in result)) throw new Error('local lane answered an extraction without its verification');
        check(index, { hash: result.hash, size: result.size, destHash: result.destHash, destSize: result.destSize });
        run.emitter.progress.filesDone += 1;
        return;
      }
      const verdict = result.phase === 'read' ? archiveFailure(run, archivePath, task, result) : laneFailure(run, entry, task, result, run.stagedPathOf(entry));
      if (verdict !== 'retry') throw verdict;
      if (attempt >= run.runtime.retry.attempts) {
        throw new KetterError(ErrorCode.IO_ERROR, `extracting ${run.destinationDir.portal.describe(run.stagedPathOf(entry))} kept failing: ${'message' in result ? result.message : 'transient fault'}`);
      }
      await sleep(backoffDelay(attempt, run.runtime.retry), run.signal);
      result = (await runBatch([task], stop))[0] as LaneResult;
    }
  };
  const feeder = async (): Promise<void> => {
    while (failure === null && next < nBatches) {
      // `check` may record events: a store that falls behind holds the next batch back.
      await run.emitter.caughtUp();
      if (failure !== null || next >= nBatches) return;
      const batch = [...entries.select(batchAt(files, batches, next++))];
      const tasks = batch.map(taskOf);
      try {
        const results = await runBatch(tasks, stop);
        for (let j = 0; j < tasks.length && failure === null; j++) await settle(batch[j] as ManifestEntry, tasks[j] as LaneTask, results[j] as LaneResult);
      } catch (error) {
        failure ??= { error: error instanceof KetterError ? error : new KetterError(ErrorCode.IO_ERROR, `local extraction worker failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error }) };
        halt();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(nBatches, laneBatchesInFlight()) }, feeder));
  } finally {
    run.signal.removeEventListener('abort', onAbort);
  }
  throwIfAborted(run.signal);
  if (failure !== null) throw (failure as { error: unknown }).error;
}

/** A failure reading the archive names the archive (in the destination portal), not the file's source. */
function archiveFailure(run: JobRun, archivePath: string, task: LaneTask, result: { message: string; errno?: string; syscall?: string }): KetterError | 'retry' {
  const cause = Object.assign(new Error(result.message.split(task.src).join(archivePath)), { code: result.errno, syscall: result.syscall });
  if (isTransient(cause)) return 'retry';
  return fromSystemError(cause, { portal: run.destinationDir.portal.name, path: archivePath, operation: 'extract' });
}
