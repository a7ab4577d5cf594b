import { setMaxListeners } from 'node:events';
import {
  cancelledError,
  ErrorCode,
  isKetterError,
  previewTransfer,
  transfer,
  type ConflictPolicy,
  type JobDetail,
  type KetterEvent,
  type Mode,
  type Portal,
  type Store,
  type StrategyChoice,
  type SymlinkPolicy,
  type TransferPreview,
  type TransferRequest,
  type TransferResult,
} from '@ketter/core';
import type { CommandContext } from '../context.js';
import { showEndpoint } from '../endpoints.js';
import { cleanMessage, describeError, errorLine, ExitCode, exitCodeFor } from '../exit.js';
import { formatBytes, formatDuration, formatRate } from '../format.js';
import { PortalRegistry } from '../locations.js';
import { ProgressBar } from '../progress.js';
import { recoverInterrupted, recoveryLines } from './recover.js';
import { resolveConcurrency, resolveHash, resolveThresholds, type ThresholdFlags } from '../settings.js';
import { trapSignals } from '../signals.js';
import { openStore } from '../store.js';

export interface TransferFlags extends ThresholdFlags {
  from: string;
  to: string;
  mode: Mode;
  strategy: StrategyChoice;
  hash?: string;
  onConflict: ConflictPolicy;
  symlinks: SymlinkPolicy;
  concurrency?: string;
  dryRun?: boolean;
  json?: boolean;
}

/** `ketter transfer`: one verified job, with a progress bar on a terminal. */
export async function transferCommand(flags: TransferFlags, ctx: CommandContext): Promise<number> {
  const { io, out, loaded } = ctx;
  const config = loaded.config;
  const started = Date.now();
  // Everything that can be wrong with the command line is checked before any connection.
  const thresholds = resolveThresholds(flags, io.env, config);
  const algorithm = resolveHash(flags.hash, config);
  const concurrency = resolveConcurrency(flags.concurrency, config);

  const progress = !flags.json && io.stderr.isTTY === true ? new ProgressBar(io.stderr) : undefined;
  const controller = new AbortController();
  // Every file in flight listens on the job's signal; a many-file job is not a leak.
  setMaxListeners(0, controller.signal);
  const untrap = trapSignals(controller, (message) => {
    progress?.clear();
    out.error(message);
  });
  const registry = new PortalRegistry(loaded, io.cwd, io.env);
  let store: Store | undefined;
  let request: TransferRequest | undefined;
  let reason: string | undefined;
  const onEvent = (event: KetterEvent) => {
    if (event.type === 'job.progress') progress?.update(event);
    else if (event.type === 'plan.decided') reason = event.reason;
  };
  try {
    const source = await registry.locate(flags.from);
    // A remote destination connects while the store opens and the source is scanned.
    const destination = await registry.locate(flags.to, { background: true });
    if (controller.signal.aborted) throw cancelledError(controller.signal);
    request = { mode: flags.mode, source, destination, algorithm, onConflict: flags.onConflict, symlinks: flags.symlinks };
    const options = {
      signal: controller.signal,
      onEvent,
      strategy: flags.strategy,
      thresholds,
      ...(config.operator === undefined ? {} : { operator: config.operator }),
      ...(concurrency === undefined ? {} : { concurrency }),
    };
    if (flags.dryRun) {
      const preview = await previewTransfer(request, options);
      return reportPreview(preview, request, flags, ctx);
    }
    store = await openStore(ctx.store, io.cwd, config.operator);
    await recoverQuietly(store, registry, [source.portal, destination.portal], ctx);
    if (controller.signal.aborted) throw cancelledError(controller.signal);
    const result = await transfer(request, { ...options, store });
    progress?.clear();
    reportSuccess(result, request, reason, flags, ctx);
    return ExitCode.OK;
  } catch (error) {
    progress?.clear();
    return await reportFailure(error, { request, store, flags, ctx, elapsedMs: Date.now() - started });
  } finally {
    untrap();
    await registry.closeAll();
    if (store) await store.close().catch((error: unknown) => out.error(errorLine({ code: ErrorCode.STORE_ERROR, message: `closing the store: ${describeError(error).message}` })));
  }
}

/**
 * Before a job starts, clean up after jobs whose process died (as `ketter recover` does),
 * keeping staging a later run of the same request can resume. Reports on stderr only what
 * it removed; never fails the transfer, and never writes to stdout, which belongs to `--json`.
 */
async function recoverQuietly(store: Store, registry: PortalRegistry, known: Portal[], ctx: CommandContext): Promise<void> {
  try {
    const operator = ctx.loaded.config.operator;
    const report = await recoverInterrupted(store, registry, ctx.loaded, known, { keepResumable: true, ...(operator === undefined ? {} : { operator }) });
    const removed = { jobs: report.jobs.filter((job) => job.removed.length > 0) };
    for (const line of recoveryLines(removed)) ctx.out.error(`ketter: recovered ${line}\n`);
  } catch (error) {
    ctx.out.error(`ketter: recovery of interrupted jobs skipped: ${describeError(error).message}\n`);
  }
}

function endpoints(request: TransferRequest | undefined) {
  if (!request) return {};
  return {
    source: { portal: request.source.portal.name, path: request.source.path },
    destination: { portal: request.destination.portal.name, path: request.destination.path },
  };
}

function reportSuccess(result: TransferResult, request: TransferRequest, reason: string | undefined, flags: TransferFlags, ctx: CommandContext): void {
  const { out } = ctx;
  if (flags.json) {
    out.json({
      jobId: result.jobId,
      status: result.status,
      mode: result.mode,
      strategy: result.strategy,
      filesCopied: result.filesCopied,
      bytesCopied: result.bytesCopied,
      durationSeconds: result.durationMs / 1000,
      algorithm: request.algorithm,
      source: endpoints(request).source,
      destination: result.destination,
      skipped: result.skipped,
      sourcesKept: result.sourcesKept,
    });
    return;
  }
  const lines = [
    `job ${result.jobId} succeeded: ${result.mode}, ${result.strategy}${reason ? ` (${reason})` : ''}`,
    `  from      ${showEndpoint(endpoints(request).source ?? { portal: '', path: '' })}`,
    `  to        ${showEndpoint(result.destination)}`,
    result.skipped
      ? `  files     destination already identical (verified with ${request.algorithm}); nothing copied`
      : `  files     ${result.filesCopied} (${formatBytes(result.bytesCopied)}), verified with ${request.algorithm}`,
    `  duration  ${formatDuration(result.durationMs)} (${formatRate(result.bytesCopied, result.durationMs)})`,
  ];
  if (result.sourcesKept.length > 0) {
    lines.push(`  kept      ${result.sourcesKept.length} source file(s) changed after the copy and were not deleted:`);
    for (const path of result.sourcesKept.slice(0, 20)) lines.push(`            ${path}`);
    if (result.sourcesKept.length > 20) lines.push(`            … and ${result.sourcesKept.length - 20} more (see ketter jobs show ${result.jobId})`);
  }
  out.text(`${lines.join('\n')}\n`);
}

function reportPreview(preview: TransferPreview, request: TransferRequest, flags: TransferFlags, ctx: CommandContext): number {
  const { out } = ctx;
  const code = preview.error === null ? ExitCode.OK : ExitCode.FAILED;
  if (flags.json) {
    out.json({
      dryRun: true,
      jobId: null,
      status: preview.error === null ? 'planned' : 'would-fail',
      mode: request.mode,
      strategy: preview.strategy,
      filesCopied: 0,
      bytesCopied: 0,
      durationSeconds: 0,
      algorithm: request.algorithm,
      ...endpoints(request),
      plan: {
        strategy: preview.strategy,
        forced: preview.forced,
        reason: preview.reason,
        rootKind: preview.rootKind,
        nFiles: preview.nFiles,
        totalBytes: preview.totalBytes,
        avgSizeBytes: preview.avgSizeBytes,
        thresholds: preview.thresholds,
      },
      landsAt: preview.destination,
      requiredBytes: preview.requiredBytes,
      freeBytes: preview.freeBytes,
      ...(preview.error === null ? {} : { error: { code: preview.error.code, message: cleanMessage(preview.error.message) } }),
    });
  } else {
    const source = endpoints(request).source ?? { portal: '', path: '' };
    out.text(
      [
        `dry run: ${request.mode} ${showEndpoint(source)} -> ${showEndpoint(preview.destination)} (nothing written, no job recorded)`,
        `  strategy  ${preview.strategy}${preview.forced ? ' (forced)' : ''}: ${preview.reason}`,
        `  source    ${preview.rootKind}, ${preview.nFiles} file(s), ${formatBytes(preview.totalBytes)}`,
        `  space     needs ${formatBytes(preview.requiredBytes)}, free ${preview.freeBytes === null ? 'unknown' : formatBytes(preview.freeBytes)}`,
        `  preflight ${preview.error === null ? 'would pass' : `would fail: [${preview.error.code}] ${cleanMessage(preview.error.message)}`}`,
      ].join('\n') + '\n',
    );
  }
  if (preview.error !== null) out.error(errorLine(preview.error, ' (dry run)'));
  return code;
}

interface FailureContext {
  request: TransferRequest | undefined;
  store: Store | undefined;
  flags: TransferFlags;
  ctx: CommandContext;
  elapsedMs: number;
}

async function reportFailure(error: unknown, { request, store, flags, ctx, elapsedMs }: FailureContext): Promise<number> {
  const { out } = ctx;
  const info = describeError(error);
  const jobId = isKetterError(error) ? error.jobId : undefined;
  const code = exitCodeFor(error);
  let job: JobDetail | null = null;
  if (jobId !== undefined && store) job = await store.getJob(jobId).catch(() => null);
  if (flags.json) {
    out.json({
      jobId: jobId ?? null,
      status: job?.status ?? (code === ExitCode.CANCELLED ? 'cancelled' : jobId === undefined ? 'rejected' : 'failed'),
      mode: flags.mode,
      strategy: job?.strategy ?? null,
      filesCopied: job?.filesCopied ?? 0,
      bytesCopied: job?.bytesCopied ?? 0,
      durationSeconds: (job?.durationMs ?? elapsedMs) / 1000,
      ...endpoints(request),
      error: info,
    });
  }
  out.error(errorLine(info, jobId === undefined ? '' : ` (job ${jobId})`));
  return code;
}
