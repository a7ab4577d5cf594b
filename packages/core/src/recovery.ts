import { hostname } from 'node:os';
import { continueJob } from './engine/emitter.js';
import { defaultOperator } from './engine/settings.js';
import { isAlive } from './store/jsonl/process-liveness.js';
import type { EventHook } from './engine/types.js';
import { baseName, joinPath, parentPath } from './paths.js';
import type { Portal } from './portal.js';
import { archivePathIn } from './store/job-state.js';
import type { JobDetail, Store } from './store.js';

export interface RecoverOptions {
  store: Store;
  /** Portals by name: staging left at their destinations is removed through them. */
  portals: ReadonlyMap<string, Portal> | Readonly<Record<string, Portal>>;
  onEvent?: EventHook;
  /**
   * Leave the staging of interrupted DIRECT directory jobs in place, so that running the
   * same request again resumes them instead of copying everything anew. Default false:
   * everything left behind is removed.
   */
  keepResumable?: boolean;
  operator?: string;
  host?: string;
}

/** What recovery did for one job. */
export interface RecoveredJob {
  jobId: string;
  /** Whether the job had committed (its destination is final; nothing was removed). */
  committed: boolean;
  /** Staging paths and archives removed, as `portal:path`. */
  removed: string[];
  /** Why staging could not be checked (its portal not configured or not reachable here), if so. */
  unreachable: string | null;
  /** Staging kept for a later run of the same request to resume (`keepResumable`). */
  keptForResume: boolean;
}

export interface RecoveryReport {
  jobs: RecoveredJob[];
}

/**
 * Find jobs recorded as running whose process is gone (their lock is held by a dead
 * process, or they never locked and their process on this host is gone), remove what they
 * left at the destination — hidden staging paths and archives named after the job — and
 * record `job.interrupted`, so no job stays `running` forever. A job that had committed is
 * only marked: its destination is complete and its sources were never deleted unverified.
 */
export async function recover(options: RecoverOptions): Promise<RecoveryReport> {
  const { store } = options;
  const portals = options.portals instanceof Map ? options.portals : new Map(Object.entries(options.portals));
  const locks = await store.listLocks();
  const lockOf = new Map(locks.map((l) => [l.jobId, l]));
  const running = [...(await store.listJobs({ status: 'running', limit: 10_000 })), ...(await store.listJobs({ status: 'created', limit: 10_000 }))];
  const report: RecoveryReport = { jobs: [] };
  for (const summary of running) {
    const lock = lockOf.get(summary.id);
    // Decide from the summary where it can: reading a job means reading its events.
    if (lock?.alive || (!lock && summary.host !== hostname())) continue;
    const job = await store.getJob(summary.id);
    if (!job) continue;
    const dead = lock ? !lock.alive : !processAlive(job);
    if (!dead) continue;
    report.jobs.push(await recoverJob(job, portals, options, true));
  }
  // Ended jobs whose rollback could not finish (the failure is recorded, the staging is
  // not gone), and interrupted jobs whose staging was kept for a resume that never came.
  // The summaries say which they are: only those are read, however long the history.
  const ended = options.keepResumable ? (['failed', 'cancelled'] as const) : (['failed', 'cancelled', 'interrupted'] as const);
  for (const status of ended) {
    for (const summary of await store.listJobs({ status, withStaging: true, limit: 10_000 })) {
      const job = await store.getJob(summary.id);
      if (job && job.staging.length > 0) {
        const recovered = await recoverJob(job, portals, options, false);
        if (recovered.removed.length > 0 || recovered.unreachable) report.jobs.push(recovered);
      }
    }
  }
  return report;
}

/** DIRECT jobs of a directory resume file by file; others start again. */
function isResumable(job: JobDetail): boolean {
  const decided = job.events.find((e) => e.type === 'plan.decided');
  return decided?.type === 'plan.decided' && decided.strategy === 'DIRECT' && decided.rootKind === 'directory';
}

async function recoverJob(job: JobDetail, portals: ReadonlyMap<string, Portal>, options: RecoverOptions, interrupt: boolean): Promise<RecoveredJob> {
  const committed = job.events.some((e) => e.type === 'job.committed');
  const emitter = continueJob(job, {
    store: options.store,
    operator: options.operator ?? defaultOperator(),
    host: options.host ?? hostname(),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  });

  const keep = interrupt && options.keepResumable === true && isResumable(job);
  const result: RecoveredJob = { jobId: job.id, committed, removed: [], unreachable: null, keptForResume: keep };
  const portal = portals.get(job.destination.portal);
  if (!committed && !keep) {
    if (!portal) {
      result.unreachable = `portal '${job.destination.portal}' is not available here (not configured, or could not be reached)`;
    } else {
      const gone = new Set<string>();
      for (const path of await leftoverCandidates(job, portal)) {
        if ((await portal.adapter.stat(path)) === null) continue;
        await portal.adapter.removeTree(path);
        result.removed.push(portal.describe(path));
        gone.add(path);
        emitter.emit({ type: 'staging.removed', portal: portal.name, path });
      }
      // What the job created and is no longer there (removed by hand, or taken over by a
      // resumed job) is put on record too, so that recovery stops looking for it.
      for (const path of job.staging) {
        if (!gone.has(path)) emitter.emit({ type: 'staging.removed', portal: portal.name, path });
      }
    }
  }
  // Kept staging goes on record as found, so that a resume or a later recovery finds it
  // even when the process died before recording it.
  let kept: string[] | undefined;
  if (keep && portal) {
    kept = [];
    for (const path of await leftoverCandidates(job, portal)) if ((await portal.adapter.stat(path)) !== null) kept.push(path);
  }
  if (interrupt) {
    const reason = committed
      ? 'process ended after commit; the destination is complete, source files not yet deleted were kept'
      : keep
        ? 'process ended before commit; staging kept so the same request can resume'
        : 'process ended before commit; staging removed by recovery';
    emitter.emit({
      type: 'job.interrupted',
      reason: result.unreachable ? `${reason.split(';')[0]}; ${result.unreachable}` : reason,
      ...(kept ? { staging: kept } : {}),
    });
  }
  await emitter.flush();
  return result;
}

/** Paths a job may have left: the staging it recorded, else the names it would have used. */
async function leftoverCandidates(job: JobDetail, portal: Portal): Promise<string[]> {
  const recorded = job.events.find((e) => e.type === 'preflight.passed');
  let dir: string;
  if (recorded?.type === 'preflight.passed' && recorded.staging !== '') dir = parentPath(recorded.staging);
  else {
    try {
      dir = await portal.resolve(job.destination.path);
    } catch {
      return [];
    }
  }
  const name = baseName(job.source.path.replace(/\/+$/, ''));
  return [
    joinPath(dir, `.ketter-${job.id}.partial`),
    archivePathIn(dir, job.id),
    ...(name ? [joinPath(dir, `.${name}.ketter-${job.id}.partial`)] : []),
  ];
}

/** For jobs without a lock entry: alive unless it ran on this host and its process is gone. */
function processAlive(job: JobDetail): boolean {
  const started = job.events.find((e) => e.type === 'job.started');
  if (!started || started.type !== 'job.started') return true;
  if (started.host !== hostname()) return true;
  if (started.pid === process.pid) return true;
  return isAlive({ pid: started.pid, host: started.host });
}
