import { ErrorCode, KetterError } from '../errors.js';
import { runJob } from '../engine/run-transfer.js';
import type { TransferContext, TransferResult } from '../engine/types.js';
import type { TransferPlan } from '../plan.js';
import { executeZipFirst } from './zip-first.js';

/**
 * Execute a ZIP_FIRST plan: pack the source into one uncompressed archive streamed to the
 * destination (every file hashed as it is read), verify the archive, extract it into
 * staging with zip-slip protection, verify every file against its source hash, commit by
 * rename, and for MOVE delete sources after commit. Throws a {@link KetterError} (with
 * `jobId`) after rolling back when the job fails or is cancelled.
 */
export async function runZipFirst(plannedTransfer: TransferPlan, context: TransferContext): Promise<TransferResult> {
  if (plannedTransfer.strategy !== 'ZIP_FIRST') {
    throw new KetterError(ErrorCode.INVALID_REQUEST, `runZipFirst executes ZIP_FIRST plans; this plan is ${plannedTransfer.strategy} (use runTransfer)`);
  }
  const { request, ...runContext } = context;
  return runJob(request, runContext, plannedTransfer.forced ? 'zip' : 'auto', async (run) => {
    await run.resolvePaths();
    return executeZipFirst(run, plannedTransfer);
  });
}
