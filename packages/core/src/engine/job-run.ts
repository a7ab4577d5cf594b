import { setMaxListeners } from 'node:events';
import type { Adapter } from '../adapter.js';
import { cancelledError, ErrorCode, isKetterError, KetterError, fromSystemError } from '../errors.js';
import type { ErrorInfo, KetterEvent, Strategy } from '../events.js';
import type { ManifestEntry } from '../manifest.js';
import { baseName, joinPath, parentPath } from '../paths.js';
import { summarizePlan, type TransferPlan } from '../plan.js';
import type { Portal } from '../portal.js';
import type { LockLease } from '../store.js';
import { JobEmitter } from './emitter.js';
import type { HashedFiles } from './hashed-files.js';
import { requestSettings, runtimeSettings, type RequestSettings, type RuntimeSettings } from './settings.js';
import type { RunContext, TransferRequest, TransferResult } from './types.js';

/** A resolved, confined location. */
export interface Place {
  portal: Portal;
  path: string;
}

/**
 * A staged file with the hash computed while its source was read: the form one file takes
 * while it is worked on. A job keeps its staged files in columns ({@link HashedFiles}), not
 * as these objects. Its path is derived from the entry ({@link JobRun.pathOf}).
 */
export interface StagedFile {
  entry: ManifestEntry;
  hash: string;
  size: number;
  /** Where the file is, when not at its staging path (a file found already in place). */
  at?: string;
}

/**
 * One job's shared lifecycle — the parts DIRECT and ZIP_FIRST have in common: events,
 * locks, staging names, rollback and the final outcome. Strategy engines drive it.
 */
export class JobRun {
  readonly settings: RequestSettings;
  readonly runtime: RuntimeSettings;
  readonly emitter: JobEmitter;
  readonly context: RunContext;
  readonly request: TransferRequest;
  readonly startedAt = Date.now();
  source!: Place;
  destinationDir!: Place;
  /** `destinationDir/<name>`: where the source lands. */
  finalPath = '';
  /** Hidden staging path beside the final one; removed on rollback. */
  stagingPath: string | null = null;
  /** Destination directories this job created (outermost first), removed on rollback when empty. */
  readonly createdDirs: string[] = [];
  /** Other hidden job files at the destination (ZIP_FIRST's archive), removed on rollback and success. */
  readonly tempPaths: string[] = [];
  committed = false;
  #lease: LockLease | null = null;
  /**
   * The job's own signal, following the caller's. Every stream and wait of the job listens
   * to it, so it allows more listeners than Node's default warning threshold.
   */
  readonly #abort = new AbortController();
  #unfollow: () => void = () => undefined;

  private constructor(request: TransferRequest, context: RunContext, settings: RequestSettings, runtime: RuntimeSettings) {
    this.request = request;
    this.context = context;
    this.settings = settings;
    this.runtime = runtime;
    setMaxListeners(0, this.#abort.signal);
    const outer = context.signal;
    if (outer) {
      const follow = () => this.#abort.abort(outer.reason);
      if (outer.aborted) follow();
      else {
        outer.addEventListener('abort', follow, { once: true });
        this.#unfollow = () => outer.removeEventListener('abort', follow);
      }
    }
    this.emitter = new JobEmitter({
      jobId: settings.id,
      store: context.store,
      operator: runtime.operator,
      host: runtime.host,
      onEvent: context.onEvent,
      onHookError: context.onHookError,
      batchSize: runtime.eventBatchSize,
      flushIntervalMs: 200,
      progressIntervalMs: runtime.progressIntervalMs,
    });
  }

  /**
   * Validate the request and record `job.created` and `job.started`. Invalid requests throw
   * before anything is recorded: there is no job to audit yet.
   */
  static async begin(request: TransferRequest, context: RunContext, requestedStrategy: 'auto' | 'direct' | 'zip'): Promise<JobRun> {
    const settings = requestSettings(request);
    // An adapter without a local path reaches its files over a network.
    const remote = !request.source?.portal?.adapter?.localPath || !request.destination?.portal?.adapter?.localPath;
    const runtime = runtimeSettings(context, { remote });
    const run = new JobRun(request, context, settings, runtime);
    run.emitter.emit({
      type: 'job.created',
      mode: settings.mode,
      source: { portal: request.source.portal.name, path: request.source.path },
      destination: { portal: request.destination.portal.name, path: request.destination.path },
      algorithm: settings.algorithm,
      onConflict: settings.onConflict,
      requestedStrategy,
    });
    run.emitter.emit({ type: 'job.started', pid: process.pid });
    run.emitter.startProgress();
    // On record before any work: recovery can only clean up after jobs it knows of.
    await run.emitter.flush();
    return run;
  }

  get id(): string {
    return this.settings.id;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get destAdapter(): Adapter {
    return this.destinationDir.portal.adapter;
  }

  get sourceAdapter(): Adapter {
    return this.source.portal.adapter;
  }

  /** Confine and resolve both paths (symlinks in parent directories included). */
  async resolvePaths(): Promise<void> {
    await this.resolvePathsAround(async () => undefined);
  }

  /**
   * Resolve both paths, running `whileDestinationResolves` once the source is resolved and
   * while the destination still is: a remote destination may still be connecting (the
   * scan of the source need not wait for it). Each resolution is a stat per path segment,
   * a round trip each on a remote portal. A problem with the source is reported first.
   */
  async resolvePathsAround<T>(whileDestinationResolves: () => Promise<T>): Promise<T> {
    this.emitter.setPhase('scan');
    const destination = this.request.destination.portal.resolve(this.request.destination.path);
    destination.catch(() => undefined); // awaited below, after the source's outcome
    try {
      this.source = { portal: this.request.source.portal, path: await this.request.source.portal.resolve(this.request.source.path) };
      const result = await whileDestinationResolves();
      this.destinationDir = { portal: this.request.destination.portal, path: await destination };
      return result;
    } finally {
      // Settled before the job goes on to fail or roll back, whatever happened.
      await destination.catch(() => undefined);
    }
  }

  /** Record the strategy decision; the plan must describe this job's source. */
  decide(plan: TransferPlan): void {
    const m = plan.manifest;
    if (m.source.portal !== this.source.portal.name || m.source.path !== this.source.path) {
      throw new KetterError(
        ErrorCode.INVALID_REQUEST,
        `the plan was made for ${m.source.portal}:${m.source.path}, not for this job's source ${this.source.portal.describe(this.source.path)}`,
      );
    }
    this.finalPath = joinPath(this.destinationDir.path, m.name || baseName(this.source.path));
    this.emitter.progress.filesTotal = plan.nFiles;
    this.emitter.progress.bytesTotal = plan.totalBytes;
    this.emitter.emit({ type: 'plan.decided', ...summarizePlan(plan) });
    // A head start only: the decision is written while locks and checks run. Preflight's
    // awaited flush is what puts it on record before anything is created (and reports a
    // store failure); the emitter keeps that failure until then.
    this.emitter.flush().catch(() => undefined);
  }

  /** Lock source and final destination; fails fast with SOURCE_LOCKED / DESTINATION_LOCKED. */
  async lock(): Promise<void> {
    this.#lease = await this.context.store.acquireLocks({
      jobId: this.id,
      source: this.source.portal.lockKey(this.source.path),
      destination: this.destinationDir.portal.lockKey(this.finalPath),
    });
  }

  /** Staging name for this job: hidden, beside the final name, unique to the job. */
  stagingNameFor(rootKind: 'file' | 'directory'): string {
    const name = baseName(this.finalPath);
    return joinPath(this.destinationDir.path, rootKind === 'file' ? `.${name}.ketter-${this.id}.partial` : `.ketter-${this.id}.partial`);
  }

  /** Where a manifest entry is staged. */
  stagedPathOf(entry: ManifestEntry): string {
    if (this.stagingPath === null) throw new Error('staging not prepared');
    return entry.path === '' ? this.stagingPath : joinPath(this.stagingPath, entry.path);
  }

  /** Where a staged file is, relative to the destination portal root. */
  pathOf(file: StagedFile): string {
    return file.at ?? this.stagedPathOf(file.entry);
  }

  /** Create the destination directory (recording what this job created, for rollback). */
  async ensureDestinationDir(): Promise<void> {
    const adapter = this.destAdapter;
    const missing: string[] = [];
    for (let p = this.destinationDir.path; ; p = parentPath(p)) {
      const st = await adapter.stat(p);
      if (st !== null) {
        if (st.kind !== 'directory') {
          throw new KetterError(ErrorCode.INVALID_REQUEST, `destination is not a directory: ${this.destinationDir.portal.describe(p)}`, {
            portal: this.destinationDir.portal.name,
            path: p,
          });
        }
        break;
      }
      missing.unshift(p);
      if (p === '') break;
    }
    for (const dir of missing) {
      await adapter.mkdir(dir);
      this.createdDirs.push(dir);
    }
  }

  /** Check a source file still has the size and mtime it was scanned with. */
  async assertSourceUnchanged(entry: ManifestEntry): Promise<void> {
    const path = joinPath(this.source.path, entry.path);
    const st = await this.sourceAdapter.stat(path);
    if (st === null || st.kind !== 'file' || st.size !== entry.size || st.mtimeMs !== entry.mtimeMs) {
      throw new KetterError(
        ErrorCode.SOURCE_CHANGED,
        `source changed during the job: ${this.source.portal.describe(path)}${st === null ? ' (removed)' : ''}`,
        { portal: this.source.portal.name, path },
      );
    }
  }

  /** Remove staging and directories this job created. Never touches the source. */
  async rollback(): Promise<void> {
    // Nothing was made at a destination that was never resolved (it may not even be reachable).
    if ((this.destinationDir as Place | undefined) === undefined) return;
    const adapter = this.destAdapter;
    if (this.stagingPath !== null) {
      await adapter.removeTree(this.stagingPath);
      this.emitter.emit({ type: 'staging.removed', portal: this.destinationDir.portal.name, path: this.stagingPath });
      this.stagingPath = null;
    }
    await this.removeTempPaths();
    for (const dir of [...this.createdDirs].reverse()) {
      try {
        await adapter.rmdir(dir);
      } catch {
        // Something else now lives there; leaving an empty directory is harmless.
      }
    }
    this.createdDirs.length = 0;
  }

  /** Remove the job's temporary files (idempotent). */
  async removeTempPaths(): Promise<void> {
    while (this.tempPaths.length > 0) {
      const path = this.tempPaths[this.tempPaths.length - 1] as string;
      await this.destAdapter.removeTree(path);
      this.emitter.emit({ type: 'staging.removed', portal: this.destinationDir.portal.name, path });
      this.tempPaths.pop();
    }
  }

  /** Record success, release locks, and report. */
  async succeed(strategy: Strategy, counts: { files: number; bytes: number; sourcesKept: string[]; skipped: boolean }): Promise<TransferResult> {
    const durationMs = Date.now() - this.startedAt;
    this.emitter.stopProgress();
    this.emitter.emit({
      type: 'job.succeeded',
      strategy,
      filesCopied: counts.files,
      bytesCopied: counts.bytes,
      durationMs,
      sourcesKept: counts.sourcesKept,
    });
    try {
      await this.emitter.flush();
    } finally {
      await this.#release();
    }
    return {
      jobId: this.id,
      status: 'succeeded',
      mode: this.settings.mode,
      strategy,
      filesCopied: counts.files,
      bytesCopied: counts.bytes,
      durationMs,
      destination: { portal: this.destinationDir.portal.name, path: this.finalPath },
      sourcesKept: counts.sourcesKept,
      skipped: counts.skipped,
    };
  }

  /**
   * End the job on an error: roll back unless committed, record `job.failed` or
   * `job.cancelled`, release locks, and return the error to throw (with `jobId` set).
   */
  async fail(error: unknown): Promise<KetterError> {
    const cancelled = this.signal?.aborted === true || isKetterError(error, ErrorCode.CANCELLED);
    let failure: KetterError = cancelled
      ? isKetterError(error, ErrorCode.CANCELLED)
        ? error
        : cancelledError(this.signal)
      : error instanceof KetterError
        ? error
        : fromSystemError(error, { operation: 'transfer' });
    this.emitter.stopProgress();
    if (!this.committed) {
      try {
        await this.rollback();
      } catch (rollbackError) {
        // The job fails either way; the leftover staging is hidden and recovery removes it.
        failure = new KetterError(failure.code, `${failure.message} (rollback incomplete: ${describe(rollbackError)}; recovery will remove the staging path)`, {
          portal: failure.portal,
          path: failure.path,
          cause: failure,
        });
      }
    }
    const durationMs = Date.now() - this.startedAt;
    if (cancelled) this.emitter.emit({ type: 'job.cancelled', committed: this.committed, durationMs });
    else this.emitter.emit({ type: 'job.failed', error: errorInfo(failure), committed: this.committed, durationMs });
    try {
      await this.emitter.flush();
    } catch (storeError) {
      if (failure.code !== ErrorCode.STORE_ERROR) {
        failure = new KetterError(failure.code, `${failure.message} (the audit store could not record this failure: ${describe(storeError)})`, {
          portal: failure.portal,
          path: failure.path,
          cause: failure,
        });
      }
    } finally {
      await this.#release();
    }
    failure.jobId = this.id;
    return failure;
  }

  /** Emit a `preflight.failed` event for an error raised during preflight. */
  preflightFailed(error: unknown): void {
    const info = errorInfo(error instanceof KetterError ? error : fromSystemError(error, { operation: 'preflight' }));
    this.emitter.emit({ type: 'preflight.failed', error: info });
  }

  async #release(): Promise<void> {
    this.#unfollow();
    const lease = this.#lease;
    this.#lease = null;
    if (lease) await lease.release();
  }
}

export function errorInfo(error: KetterError): ErrorInfo {
  return error.toJSON();
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export type { KetterEvent };
