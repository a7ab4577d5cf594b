import { ErrorCode } from '@ketter/core';
import type { CommandContext } from '../context.js';
import { errorLine, ExitCode } from '../exit.js';
import { describeStore, openStore } from '../store.js';

/** `ketter audit verify`: check the hash chain; exit 1 naming the first altered record. */
export async function auditVerifyCommand(flags: { json?: boolean }, ctx: CommandContext): Promise<number> {
  const store = await openStore(ctx.store, ctx.io.cwd);
  let report;
  try {
    report = await store.verifyAudit();
  } finally {
    await store.close();
  }
  const where = describeStore(ctx.store);
  if (flags.json) ctx.out.json({ store: where, ...report });
  if (report.ok) {
    if (!flags.json) ctx.out.text(`audit trail intact: ${report.records} record(s) checked in ${where}\n`);
    return ExitCode.OK;
  }
  const bad = report.firstBad;
  const ids = [bad?.eventId ? `event ${bad.eventId}` : '', bad?.jobId ? `job ${bad.jobId}` : ''].filter(Boolean).join(', ');
  const message = bad
    ? `audit trail altered at ${bad.location}${ids ? ` (${ids})` : ''}: ${bad.reason}`
    : 'audit trail check failed';
  ctx.out.error(errorLine({ code: ErrorCode.AUDIT_TAMPERED, message }));
  return ExitCode.FAILED;
}
