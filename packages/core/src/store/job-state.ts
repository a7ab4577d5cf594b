import type { KetterEvent } from '../events.js';
import { joinPath, parentPath } from '../paths.js';
import type { JobDetail, JobFilter, JobSummary } from '../store.js';

/**
 * Fold a job's events (in `seq` order) into its summary. Stores that keep only events
 * (JSONL) derive state with this; stores with a jobs table use it to stay consistent.
 */
export function reduceJob(events: readonly KetterEvent[]): JobDetail | null {
  const first = events[0];
  if (!first || first.type !== 'job.created') return null;
  const job: JobDetail = {
    id: first.jobId,
    status: 'created',
    mode: first.mode,
    source: first.source,
    destination: first.destination,
    strategy: null,
    nFiles: 0,
    totalBytes: 0,
    filesCopied: 0,
    bytesCopied: 0,
    operator: first.operator,
    host: first.host,
    createdAt: first.ts,
    finishedAt: null,
    durationMs: null,
    error: null,
    staging: [],
    events: [...events],
  };
  for (const e of events) applyEvent(job, e);
  return job;
}

/** Apply one event to a summary in place. */
export function applyEvent(job: JobSummary, e: KetterEvent): void {
  switch (e.type) {
    case 'job.started':
      job.status = 'running';
      break;
    case 'plan.decided':
      job.strategy = e.strategy;
      job.nFiles = e.nFiles;
      job.totalBytes = e.totalBytes;
      break;
    case 'preflight.passed':
      // The plan (and so the strategy) is on record before anything is created.
      if (e.staging !== '' && job.staging.length === 0) {
        job.staging = job.strategy === 'ZIP_FIRST' ? [e.staging, archivePathIn(parentPath(e.staging), job.id)] : [e.staging];
      }
      break;
    case 'job.committed':
      job.staging = [];
      break;
    case 'staging.removed':
      if (job.staging.includes(e.path)) job.staging = job.staging.filter((p) => p !== e.path);
      break;
    case 'job.succeeded':
      job.status = 'succeeded';
      job.filesCopied = e.filesCopied;
      job.bytesCopied = e.bytesCopied;
      job.durationMs = e.durationMs;
      job.finishedAt = e.ts;
      break;
    case 'job.failed':
      job.status = 'failed';
      job.error = e.error;
      job.durationMs = e.durationMs;
      job.finishedAt = e.ts;
      break;
    case 'job.cancelled':
      job.status = 'cancelled';
      job.durationMs = e.durationMs;
      job.finishedAt = e.ts;
      break;
    case 'job.interrupted':
      job.status = 'interrupted';
      job.finishedAt = e.ts;
      job.error = { code: 'IO_ERROR', message: `[ketter] job interrupted: ${e.reason}` };
      // What recovery kept may not all be on record: a process can die before recording it.
      if (e.staging !== undefined) job.staging = [...e.staging];
      break;
    default:
      break;
  }
}

/** Apply a {@link JobFilter} to summaries already sorted most recent first. */
export function filterJobs<T extends JobSummary>(jobs: readonly T[], filter: JobFilter = {}): T[] {
  const limit = filter.limit ?? 50;
  const out: T[] = [];
  for (const job of jobs) {
    if (filter.mode && job.mode !== filter.mode) continue;
    if (filter.status && job.status !== filter.status) continue;
    if (filter.strategy && job.strategy !== filter.strategy) continue;
    if (filter.withStaging && job.staging.length === 0) continue;
    out.push(job);
    if (out.length >= limit) break;
  }
  return out;
}

/** A ZIP_FIRST job's archive in `dir` (beside its staging), named after the job so recovery finds it. */
export function archivePathIn(dir: string, jobId: string): string {
  return joinPath(dir, `.ketter-${jobId}.archive.zip`);
}
