import type { JobDetail, JobFilter, JobStatus, JobSummary, KetterEvent, Mode, Strategy, Store } from '@ketter/core';
import type { CommandContext } from '../context.js';
import { showEndpoint } from '../endpoints.js';
import { ExitCode, UsageError } from '../exit.js';
import { formatBytes, formatDuration, table } from '../format.js';
import { parseCount } from '../settings.js';
import { openStore } from '../store.js';

export interface ListFlags {
  limit?: string;
  mode?: Mode;
  status?: JobStatus;
  strategy?: string;
  json?: boolean;
}

/** `direct`, `DIRECT`, `zip`, `zip-first`, `ZIP_FIRST` all name a strategy. */
export function parseStrategy(text: string): Strategy {
  const value = text.trim().toUpperCase().replace(/-/g, '_');
  if (value === 'DIRECT') return 'DIRECT';
  if (value === 'ZIP' || value === 'ZIP_FIRST') return 'ZIP_FIRST';
  throw new UsageError(`--strategy: expected DIRECT or ZIP_FIRST, got '${text}'`);
}

async function withStore<T>(ctx: CommandContext, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(ctx.store, ctx.io.cwd);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** `ketter jobs list`: job history, most recent first. */
export async function jobsListCommand(flags: ListFlags, ctx: CommandContext): Promise<number> {
  const filter: JobFilter = { limit: flags.limit === undefined ? 20 : parseCount(flags.limit, '--limit', 1) };
  if (flags.mode) filter.mode = flags.mode;
  if (flags.status) filter.status = flags.status;
  if (flags.strategy !== undefined) filter.strategy = parseStrategy(flags.strategy);
  const jobs = await withStore(ctx, (store) => store.listJobs(filter));
  if (flags.json) {
    ctx.out.json({ jobs: jobs.map(summaryJson) });
    return ExitCode.OK;
  }
  if (jobs.length === 0) {
    ctx.out.text('no jobs recorded\n');
    return ExitCode.OK;
  }
  ctx.out.text(
    table(
      ['ID', 'CREATED', 'STATUS', 'MODE', 'STRATEGY', 'FILES', 'BYTES', 'DURATION', 'SOURCE -> DESTINATION'],
      jobs.map((job) => [
        job.id,
        job.createdAt.replace(/\.\d+/, ''),
        job.status,
        job.mode,
        job.strategy ?? '-',
        job.status === 'succeeded' ? String(job.filesCopied) : String(job.nFiles),
        formatBytes(job.status === 'succeeded' ? job.bytesCopied : job.totalBytes),
        job.durationMs === null ? '-' : formatDuration(job.durationMs),
        `${showEndpoint(job.source)} -> ${showEndpoint(job.destination)}`,
      ]),
    ),
  );
  return ExitCode.OK;
}

/** `ketter jobs show ID`: one job with its whole event trail. */
export async function jobsShowCommand(id: string, flags: { json?: boolean }, ctx: CommandContext): Promise<number> {
  const job = await withStore(ctx, (store) => store.getJob(id));
  if (job === null) throw new UsageError(`no job with id '${id}' in ${ctx.store.kind === 'jsonl' ? ctx.store.dir : 'the store'}`);
  if (flags.json) {
    ctx.out.json({ ...summaryJson(job), events: job.events });
    return ExitCode.OK;
  }
  ctx.out.text(describeJob(job));
  return ExitCode.OK;
}

function summaryJson(job: JobSummary) {
  const { durationMs, ...rest } = job;
  const summary: Record<string, unknown> = { ...rest };
  delete summary.events;
  return { ...summary, durationMs, durationSeconds: durationMs === null ? null : durationMs / 1000 };
}

function describeJob(job: JobDetail): string {
  const lines = [
    `job ${job.id}`,
    `  status      ${job.status}${job.error ? `: [${job.error.code}] ${job.error.message.replace(/^\[ketter\]\s*/, '')}` : ''}`,
    `  mode        ${job.mode}`,
    `  strategy    ${job.strategy ?? '-'}`,
    `  source      ${showEndpoint(job.source)}`,
    `  destination ${showEndpoint(job.destination)}`,
    `  files       ${job.filesCopied} copied of ${job.nFiles}`,
    `  bytes       ${formatBytes(job.bytesCopied)} copied of ${formatBytes(job.totalBytes)}`,
    `  created     ${job.createdAt} by ${job.operator}@${job.host}`,
    `  finished    ${job.finishedAt ?? '-'}`,
    `  duration    ${job.durationMs === null ? '-' : formatDuration(job.durationMs)}`,
    `  events      ${job.events.length}`,
  ];
  for (const event of job.events) lines.push(`    ${String(event.seq).padStart(4)}  ${event.ts}  ${event.type.padEnd(17)} ${eventDetail(event)}`.trimEnd());
  return `${lines.join('\n')}\n`;
}

/** The one fact of an event worth a glance in a listing. */
function eventDetail(event: KetterEvent): string {
  switch (event.type) {
    case 'job.created':
      return `${event.mode} ${showEndpoint(event.source)} -> ${showEndpoint(event.destination)} (${event.algorithm}, strategy ${event.requestedStrategy})`;
    case 'plan.decided':
      return `${event.strategy}: ${event.reason}`;
    case 'preflight.passed':
      return `staging ${event.staging}`;
    case 'preflight.failed':
    case 'job.failed':
      return `[${event.error.code}] ${event.error.message.replace(/^\[ketter\]\s*/, '')}`;
    case 'file.copied':
      return `${event.path || '(file)'} ${formatBytes(event.size)} ${event.algorithm}:${event.hash}`;
    case 'file.verified':
      return `${event.path || '(file)'} ${event.method} ${event.sourceHash === event.destinationHash ? 'match' : 'MISMATCH'}`;
    case 'archive.packed':
      return `${event.files} file(s), archive ${formatBytes(event.archiveBytes)}`;
    case 'archive.extracted':
      return `${event.files} file(s) (${event.method})`;
    case 'job.committed':
      return `${showEndpoint(event.destination)}: ${event.files} file(s), ${formatBytes(event.bytes)}`;
    case 'source.deleted':
      return `${event.kind} ${event.path || '(root)'}`;
    case 'retry.scheduled':
      return `${event.path} attempt ${event.attempt}/${event.maxAttempts} in ${event.delayMs} ms: [${event.error.code}]`;
    case 'job.succeeded':
      return `${event.filesCopied} file(s), ${formatBytes(event.bytesCopied)} in ${formatDuration(event.durationMs)}`;
    case 'job.cancelled':
      return `after ${formatDuration(event.durationMs)}${event.committed ? ' (already committed)' : ''}`;
    case 'job.interrupted':
      return event.reason;
    case 'staging.removed':
      return showEndpoint(event);
    default:
      return '';
  }
}
