import { ErrorCode, KetterError } from './errors.js';
import { joinPath, pathsOverlap } from './paths.js';
import { plan, summarizePlan, type TransferPlan } from './plan.js';
import { scan } from './scan.js';
import { executeDirect } from './engine/direct.js';
import { freeBytesAt, SPACE_MARGIN } from './engine/preflight.js';
import { runJob } from './engine/run-transfer.js';
import { requestSettings } from './engine/settings.js';
import type { RunContext, StrategyOptions, TransferPreview, TransferRequest, TransferResult } from './engine/types.js';
import { executeZipFirst } from './zip/zip-first.js';

/**
 * Scan, plan and run one transfer with the strategy the policy (or the caller) picks.
 * Every outcome, including a missing source, is recorded in the store.
 */
export async function transfer(request: TransferRequest, options: RunContext & StrategyOptions): Promise<TransferResult> {
  const requested = options.strategy ?? 'auto';
  return runJob(request, options, requested, async (run) => {
    const manifest = await run.resolvePathsAround(() =>
      scan(run.source.portal, run.source.path, {
        symlinks: run.settings.symlinks,
        ...(run.signal ? { signal: run.signal } : {}),
      }),
    );
    const decision = plan(manifest, { strategy: requested, ...(options.thresholds ? { thresholds: options.thresholds } : {}) });
    return decision.strategy === 'DIRECT' ? executeDirect(run, decision) : executeZipFirst(run, decision);
  });
}

/**
 * What `transfer()` would do, without writing or recording anything: the plan and the
 * preflight checks that can be made read-only (conflict, overlap, free space).
 */
export async function previewTransfer(request: TransferRequest, options: Omit<RunContext, 'store'> & StrategyOptions): Promise<TransferPreview> {
  const settings = requestSettings(request);
  const sourcePath = await request.source.portal.resolve(request.source.path);
  const destDir = await request.destination.portal.resolve(request.destination.path);
  const manifest = await scan(request.source.portal, sourcePath, { symlinks: settings.symlinks, ...(options.signal ? { signal: options.signal } : {}) });
  const decision = plan(manifest, { strategy: options.strategy ?? 'auto', ...(options.thresholds ? { thresholds: options.thresholds } : {}) });
  const finalPath = joinPath(destDir, manifest.name);
  const dest = request.destination.portal;
  const requiredBytes = Math.ceil(requiredWriteBytes(decision) * SPACE_MARGIN);
  let freeBytes: number | null = null;
  let error: KetterError | null = null;
  if (pathsOverlap(request.source.portal.lockKey(sourcePath), dest.lockKey(finalPath))) {
    error = new KetterError(ErrorCode.SOURCE_DEST_OVERLAP, `source and destination overlap`);
  } else if ((await dest.adapter.stat(finalPath)) !== null && settings.onConflict === 'fail') {
    error = new KetterError(ErrorCode.DESTINATION_EXISTS, `destination already exists: ${dest.describe(finalPath)}`);
  }
  freeBytes = await freeBytesAt(dest.adapter, destDir);
  if (freeBytes !== null) {
    if (error === null && freeBytes < requiredBytes) {
      error = new KetterError(ErrorCode.INSUFFICIENT_SPACE, `not enough free space: ${requiredBytes} B needed, ${freeBytes} B free`);
    }
  }
  return {
    ...summarizePlan(decision),
    destination: { portal: dest.name, path: finalPath },
    requiredBytes,
    freeBytes,
    error: error ? { code: error.code, message: error.message } : null,
  };
}

/** Bytes a plan writes at the destination: ZIP_FIRST holds the archive and the extracted tree at once. */
export function requiredWriteBytes(decision: TransferPlan): number {
  return decision.strategy === 'ZIP_FIRST' ? decision.totalBytes * 2 : decision.totalBytes;
}
