import type { KetterEvent } from '../events.js';
import type { Manifest, ManifestEntry } from '../manifest.js';
import { joinPath } from '../paths.js';
import type { JobDetail } from '../store.js';
import { continueJob } from './emitter.js';
import type { JobRun } from './job-run.js';

/** What an interrupted DIRECT job left that a new run of the same request can take over. */
export interface Resumable {
  fromJobId: string;
  /** Its staging directory, relative to the destination portal. */
  staging: string;
  /** Files it verified: path → source hash, size and source mtime when read. */
  verified: Map<string, { hash: string; size: number; sourceMtimeMs: number }>;
}

/**
 * Find an interrupted (or dead, still `running`) DIRECT job of the same request whose
 * staging directory is still in place. Only directory sources resume: a single file is
 * staged and verified in one piece. Called with this job's locks held: a job of the same
 * request that created staging held the same locks, so if it were alive this job could not
 * be here — a `running` one found now is dead.
 */
export async function findResumable(run: JobRun, manifest: Manifest): Promise<Resumable | null> {
  if (manifest.rootKind !== 'directory') return null;
  const store = run.context.store;
  const [interrupted, running] = await Promise.all([store.listJobs({ status: 'interrupted', withStaging: true, limit: 200 }), store.listJobs({ status: 'running', limit: 200 })]);
  const candidates = [...interrupted, ...running];
  for (const summary of candidates) {
    if (summary.id === run.id || summary.mode !== run.settings.mode || summary.strategy !== 'DIRECT') continue;
    if (!sameEndpoint(summary.source, run.request.source) || !sameEndpoint(summary.destination, run.request.destination)) continue;
    const job = await store.getJob(summary.id);
    if (!job || job.events.some((e) => e.type === 'job.committed')) continue;
    const created = job.events.find((e) => e.type === 'job.created');
    if (created?.type !== 'job.created' || created.algorithm !== run.settings.algorithm) continue;
    const staging = joinPath(run.destinationDir.path, `.ketter-${job.id}.partial`);
    const st = await run.destAdapter.stat(staging);
    if (st?.kind !== 'directory') continue;
    if (summary.status === 'running') await markInterrupted(run, job);
    return { fromJobId: job.id, staging, verified: verifiedFiles(job.events) };
  }
  return null;
}

/**
 * Whether a file staged by the earlier job can stand: it was verified, its source has the
 * size and mtime it had then, and the staged copy still has the size and the source mtime
 * it was given (any later write to it would have changed that).
 */
export async function canKeep(run: JobRun, resume: Resumable, entry: ManifestEntry, stagedPath: string): Promise<{ hash: string; size: number } | null> {
  const done = resume.verified.get(entry.path);
  if (!done || done.size !== entry.size || done.sourceMtimeMs !== entry.mtimeMs) return null;
  const st = await run.destAdapter.stat(stagedPath);
  if (st?.kind !== 'file' || st.size !== entry.size) return null;
  if (run.destAdapter.capabilities.setTimes && Math.abs(st.mtimeMs - entry.mtimeMs) > run.destAdapter.capabilities.mtimePrecisionMs) return null;
  return { hash: done.hash, size: done.size };
}

function verifiedFiles(events: readonly KetterEvent[]): Resumable['verified'] {
  const mtimes = new Map<string, number>();
  for (const e of events) if (e.type === 'file.copied' && e.sourceMtimeMs !== undefined) mtimes.set(e.path, e.sourceMtimeMs);
  const out: Resumable['verified'] = new Map();
  for (const e of events) {
    if (e.type !== 'file.verified' || e.sourceHash !== e.destinationHash) continue;
    const mtime = mtimes.get(e.path);
    if (mtime !== undefined) out.set(e.path, { hash: e.sourceHash, size: e.size, sourceMtimeMs: mtime });
  }
  return out;
}

function sameEndpoint(recorded: { portal: string; path: string }, requested: { portal: { name: string }; path: string }): boolean {
  const norm = (p: string) => p.replace(/^\/+|\/+$/g, '');
  return recorded.portal === requested.portal.name && norm(recorded.path) === norm(requested.path);
}

async function markInterrupted(run: JobRun, job: JobDetail): Promise<void> {
  const emitter = continueJob(job, { store: run.context.store, operator: run.runtime.operator, host: run.runtime.host });

  emitter.emit({ type: 'job.interrupted', reason: `process ended before commit; staging taken over by job ${run.id}` });
  await emitter.flush();
}
