import { ErrorCode, recover, type Portal, type RecoveryReport, type Store } from '@ketter/core';
import type { LoadedConfig } from '../config.js';
import type { CommandContext } from '../context.js';
import { showEndpoint } from '../endpoints.js';
import { describeError, errorLine, ExitCode } from '../exit.js';
import { LOCAL_PORTAL, PortalRegistry } from '../locations.js';
import { describeStore, openStore } from '../store.js';

/**
 * Portals a recovery may need: the destination portal of every job still recorded as
 * running whose lock is not held by a live process, and with `ended`, of every ended job
 * with staging left. Only those are connected, so a recovery with nothing to do opens no
 * connection. A portal that cannot be reached here is left out; recovery then reports the
 * job's staging as unreachable.
 */
async function portalsFor(store: Store, registry: PortalRegistry, loaded: LoadedConfig, known: readonly Portal[], ended: boolean): Promise<Map<string, Portal>> {
  const [running, created, staged, locks] = await Promise.all([
    store.listJobs({ status: 'running', limit: 10_000 }),
    store.listJobs({ status: 'created', limit: 10_000 }),
    ended ? store.listJobs({ withStaging: true, limit: 10_000 }) : [],
    store.listLocks(),
  ]);
  const live = new Set(locks.filter((l) => l.alive).map((l) => l.jobId));
  const names = new Set([...running, ...created].filter((job) => !live.has(job.id)).map((job) => job.destination.portal));
  for (const job of staged) if (job.status !== 'running' && job.status !== 'created') names.add(job.destination.portal);
  // Without `ended` (the recovery at the start of every transfer), only portals that cost
  // nothing to open are offered for ended jobs: a remote host that is down would otherwise
  // hold up every transfer until it came back.
  names.add(LOCAL_PORTAL);
  for (const [name, settings] of Object.entries(loaded.config.portals ?? {})) if (settings.type === 'fs') names.add(name);
  const portals = new Map<string, Portal>();
  for (const portal of known) portals.set(portal.name, portal);
  for (const name of names) {
    if (portals.has(name)) continue;
    const location = name === LOCAL_PORTAL ? '/' : loaded.config.portals?.[name] !== undefined ? `${name}:` : null;
    if (location === null) continue;
    try {
      portals.set(name, (await registry.locate(location)).portal);
    } catch {
      // Unreachable now: recovery reports the job's staging as unchecked rather than guessing.
    }
  }
  return portals;
}

/**
 * Recover jobs whose process died: remove the hidden staging and archives they left and
 * record `job.interrupted`. `known` portals (a transfer's own) are used before any new
 * connection is made. Remote portals are connected for ended jobs' staging only with
 * `connectForEnded` (`ketter recover`), not at the start of a transfer.
 */
export async function recoverInterrupted(
  store: Store,
  registry: PortalRegistry,
  loaded: LoadedConfig,
  known: readonly Portal[] = [],
  options: { operator?: string; keepResumable?: boolean; connectForEnded?: boolean } = {},
): Promise<RecoveryReport> {
  const portals = await portalsFor(store, registry, loaded, known, options.connectForEnded === true);
  return recover({
    store,
    portals,
    keepResumable: options.keepResumable === true,
    ...(options.operator === undefined ? {} : { operator: options.operator }),
  });
}

/** A `portal:path` recovery reports, as the operator would type it. */
export function showRecovered(described: string): string {
  const colon = described.indexOf(':');
  if (colon < 0) return described;
  return showEndpoint({ portal: described.slice(0, colon), path: described.slice(colon + 1).replace(/^\/+/, '') });
}

/** One line per recovered job, for stderr or stdout. */
export function recoveryLines(report: RecoveryReport): string[] {
  return report.jobs.map((job) => {
    const what = job.committed
      ? 'had committed: destination complete, source files not yet deleted were kept'
      : job.keptForResume
        ? 'staging kept: running the same transfer again resumes it'
        : job.removed.length > 0
        ? `removed ${job.removed.map(showRecovered).join(', ')}`
        : 'nothing left to remove';
    const unreachable = job.unreachable === null ? '' : ` (staging not checked: ${job.unreachable})`;
    return `job ${job.jobId} marked interrupted: ${what}${unreachable}`;
  });
}

/** `ketter recover`: mark jobs whose process died as interrupted and remove what they left. */
export async function recoverCommand(flags: { json?: boolean; keepResumable?: boolean }, ctx: CommandContext): Promise<number> {
  const { io, out, loaded } = ctx;
  const store = await openStore(ctx.store, io.cwd, loaded.config.operator);
  const registry = new PortalRegistry(loaded, io.cwd, io.env);
  let report: RecoveryReport;
  try {
    report = await recoverInterrupted(store, registry, loaded, [], {
      keepResumable: flags.keepResumable === true,
      connectForEnded: true,
      ...(loaded.config.operator === undefined ? {} : { operator: loaded.config.operator }),
    });
  } finally {
    await registry.closeAll();
    await store.close().catch((error: unknown) => out.error(errorLine({ code: ErrorCode.STORE_ERROR, message: `closing the store: ${describeError(error).message}` })));
  }
  if (flags.json) {
    out.json({
      store: describeStore(ctx.store),
      recovered: report.jobs.length,
      jobs: report.jobs.map((job) => ({ ...job, removed: job.removed.map(showRecovered) })),
      removed: report.jobs.flatMap((job) => job.removed.map(showRecovered)),
    });
    return ExitCode.OK;
  }
  if (report.jobs.length === 0) {
    out.text('nothing to recover: no job was left running by a process that has ended\n');
    return ExitCode.OK;
  }
  out.text(`recovered ${report.jobs.length} interrupted job(s):\n${recoveryLines(report).map((l) => `  ${l}\n`).join('')}`);
  return ExitCode.OK;
}
