import { ErrorCode, KetterError } from '../errors.js';
import type { TransferPlan } from '../plan.js';
import { executeDirect } from './direct.js';
import { JobRun } from './job-run.js';
import type { RunContext, TransferContext, TransferRequest, TransferResult } from './types.js';

/** @internal Run a job's lifecycle around `body`, turning any failure into a recorded, rolled-back outcome. */
export async function runJob(
  request: TransferRequest,
  context: RunContext,
  requested: 'auto' | 'direct' | 'zip',
  body: (run: JobRun) => Promise<TransferResult>,
): Promise<TransferResult> {
  const run = await JobRun.begin(request, context, requested);
  try {
    return await body(run);
  } catch (error) {
    throw await run.fail(error);
  }
}

/**
 * Execute a DIRECT plan: stage file by file, verify every file by re-reading it (or by a
 * server-side hash), commit by rename, and for MOVE delete sources only after commit.
 * Resolves with the result; throws a {@link KetterError} (with `jobId`) when the job
 * fails or is cancelled — after rolling back.
 */
export async function runTransfer(plannedTransfer: TransferPlan, context: TransferContext): Promise<TransferResult> {
  if (plannedTransfer.strategy !== 'DIRECT') {
    throw new KetterError(ErrorCode.INVALID_REQUEST, `runTransfer executes DIRECT plans; this plan is ${plannedTransfer.strategy} (use runZipFirst)`);
  }
  const { request, ...runContext } = context;
  return runJob(request, runContext, plannedTransfer.forced ? 'direct' : 'auto', async (run) => {
    await run.resolvePaths();
    return executeDirect(run, plannedTransfer);
  });
}

