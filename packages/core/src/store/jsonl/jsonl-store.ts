import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, KetterError } from '../../errors.js';
import { EPHEMERAL_EVENTS, KetterEventSchema, type KetterEvent } from '../../events.js';
import { pathsOverlap } from '../../paths.js';
import type { AuditReport, HeldLock, JobDetail, JobFilter, JobSummary, LockLease, LockRequest, Store } from '../../store.js';
import { takeSnapshot, verifyChain } from './audit-verify.js';
import { appendRecords } from './audit-writer.js';
import { readJob } from './job-reader.js';
import { findConflict, partitionByLiveness, readLockTable, writeLockTable, type LockEntry } from './lock-table.js';
import { withMutex } from './mutex.js';
import { currentProcess, isAlive } from './process-liveness.js';
import { SummaryIndex } from './summary-index.js';

/** Options of {@link JsonlStore}. */
export interface JsonlStoreOptions {
  /**
   * Directory holding the store: `audit/` (daily event files and the chain head), `jobs/`
   * (the job summary index, a cache rebuilt from `audit/` when missing) and `locks.json`.
   */
  dir: string;
  /** Clock used to pick the daily file and stamp locks; for tests. Defaults to the system clock. */
  now?: () => Date;
  /**
   * Flush each appended batch (and the chain head) to disk before `append` resolves.
   * Default `true`: the audit trail must survive a power cut. One flush per batch, not per event.
   */
  durable?: boolean;
  /** How long to wait for another process's append or lock update to finish. Default 30 s. */
  mutexTimeoutMs?: number;
}

/**
 * The embedded store: events in append-only daily JSONL files under `dir/audit/`, each
 * record chained to the previous one by SHA-256 so that altering, removing or reordering
 * any record is detected by {@link JsonlStore.verifyAudit}; job state is derived from the
 * events; locks live in `dir/locks.json`. Several processes on one machine may share a
 * directory: appends and lock updates take a cross-process mutex.
 *
 * @example
 * ```ts
 * const store = new JsonlStore({ dir: '/var/lib/ketter' });
 * await store.open();
 * const report = await store.verifyAudit();
 * ```
 */
export class JsonlStore implements Store {
  readonly kind = 'jsonl';
  readonly #dir: string;
  readonly #auditDir: string;
  readonly #locksPath: string;
  readonly #now: () => Date;
  readonly #durable: boolean;
  readonly #mutexTimeoutMs: number | undefined;
  readonly #index: SummaryIndex;
  #open = false;

  constructor(options: JsonlStoreOptions) {
    if (!options || typeof options.dir !== 'string' || options.dir === '') {
      throw new KetterError(ErrorCode.INVALID_REQUEST, '[ketter] [jsonl] a store directory (dir) is required');
    }
    this.#dir = options.dir;
    this.#auditDir = join(options.dir, 'audit');
    this.#locksPath = join(options.dir, 'locks.json');
    this.#now = options.now ?? (() => new Date());
    this.#durable = options.durable ?? true;
    this.#mutexTimeoutMs = options.mutexTimeoutMs;
    this.#index = new SummaryIndex(options.dir, this.#auditDir, (fn) => withMutex(this.#auditDir, fn, this.#mutexTimeoutMs));
  }

  /** The store's directory. */
  get dir(): string {
    return this.#dir;
  }

  async open(): Promise<void> {
    try {
      await mkdir(this.#auditDir, { recursive: true });
    } catch (error) {
      throw storeError(`cannot create the store directory ${this.#auditDir}`, error);
    }
    this.#open = true;
  }

  async close(): Promise<void> {
    this.#open = false;
    this.#index.reset();
  }

  async append(events: readonly KetterEvent[]): Promise<void> {
    this.#requireOpen();
    // Validate the whole batch before writing any of it: a batch is stored whole or not at all.
    const valid = events.map((event, i) => validEvent(event, i));
    const lines = valid.map((event) => JSON.stringify(event));
    if (lines.length === 0) return;
    await this.#withAuditMutex(async () => {
      const written = await appendRecords(this.#auditDir, lines, this.#now(), this.#durable);
      // The batch is stored; the summary index is a cache the next reader repairs if this fails.
      await this.#index.afterAppend(valid, written).catch(() => undefined);
    }, 'append events');
  }

  /** Streams the trail from the job's first daily file, parsing only that job's records. */
  async getJob(id: string): Promise<JobDetail | null> {
    this.#requireOpen();
    try {
      return await readJob(this.#auditDir, id, await this.#index.startFile(id));
    } catch (error) {
      throw storeError('cannot read the audit trail', error);
    }
  }

  /** Reads the job summary index (brought up to date with the trail first). */
  async listJobs(filter?: JobFilter): Promise<JobSummary[]> {
    this.#requireOpen();
    try {
      return await this.#index.list(filter);
    } catch (error) {
      throw storeError('cannot read the job index', error);
    }
  }

  async acquireLocks(request: LockRequest): Promise<LockLease> {
    this.#requireOpen();
    for (const field of ['jobId', 'source', 'destination'] as const) {
      if (typeof request?.[field] !== 'string' || request[field] === '') {
        throw new KetterError(ErrorCode.INVALID_REQUEST, `[ketter] [jsonl] lock request needs a non-empty ${field}`);
      }
    }
    const me = currentProcess();
    const entry: LockEntry = {
      jobId: request.jobId,
      pid: me.pid,
      host: me.host,
      ...(me.startTicks === undefined ? {} : { startTicks: me.startTicks }),
      source: request.source,
      destination: request.destination,
      acquiredAt: this.#now().toISOString(),
    };
    await this.#withLocksMutex(async () => {
      // A job locking again (a resumed job) replaces its own entry.
      const others = (await readLockTable(this.#locksPath)).filter((e) => e.jobId !== request.jobId);
      const { live, dead } = partitionByLiveness(others);
      const conflict = findConflict(request, live);
      if (conflict) throw conflict;
      // Reclaim only the dead entries in the way; the others stay listed for recovery.
      const inTheWay = new Set(dead.filter((e) => touches(request, e)));
      await writeLockTable(this.#locksPath, [...others.filter((e) => !inTheWay.has(e)), entry]);
    });
    return this.#lease(entry);
  }

  async listLocks(): Promise<HeldLock[]> {
    this.#requireOpen();
    const entries = await readLockTable(this.#locksPath);
    return entries.map((e) => ({ jobId: e.jobId, source: e.source, destination: e.destination, alive: isAlive(e) }));
  }

  async verifyAudit(): Promise<AuditReport> {
    this.#requireOpen();
    try {
      // Head and sizes are taken together while no append runs; reading the records can
      // then proceed without holding anyone up.
      const snapshot = await this.#withAuditMutex(() => takeSnapshot(this.#auditDir), 'snapshot the audit trail');
      return await verifyChain(this.#auditDir, snapshot);
    } catch (error) {
      throw storeError('cannot verify the audit trail', error);
    }
  }

  #lease(entry: LockEntry): LockLease {
    let releasing: Promise<void> | undefined;
    const release = async (): Promise<void> => {
      await this.#withLocksMutex(async () => {
        const table = await readLockTable(this.#locksPath);
        const kept = table.filter((e) => !(e.jobId === entry.jobId && e.pid === entry.pid && e.host === entry.host));
        if (kept.length !== table.length) await writeLockTable(this.#locksPath, kept);
      });
    };
    return {
      jobId: entry.jobId,
      release: () => {
        releasing ??= release().catch((error: unknown) => {
          releasing = undefined; // let the caller try again
          throw error;
        });
        return releasing;
      },
    };
  }

  async #withAuditMutex<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await withMutex(this.#auditDir, fn, this.#mutexTimeoutMs);
    } catch (error) {
      throw storeError(`cannot ${what}`, error);
    }
  }

  async #withLocksMutex<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await withMutex(this.#locksPath, fn, this.#mutexTimeoutMs);
    } catch (error) {
      throw storeError('cannot update the lock table', error);
    }
  }

  #requireOpen(): void {
    if (!this.#open) throw new KetterError(ErrorCode.STORE_ERROR, '[ketter] [jsonl] the store is not open: call open() first');
  }
}

function validEvent(event: KetterEvent, index: number): KetterEvent {
  const type = (event as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && EPHEMERAL_EVENTS.has(type as KetterEvent['type'])) {
    throw new KetterError(ErrorCode.INVALID_REQUEST, `[ketter] [jsonl] event ${index} of the batch is ephemeral (${type}) and is not stored`);
  }
  const parsed = KetterEventSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw new KetterError(
      ErrorCode.INVALID_REQUEST,
      `[ketter] [jsonl] event ${index} of the batch is invalid (${where}${issue?.message ?? 'does not match the event schema'}); nothing of the batch was stored`,
    );
  }
  return parsed.data;
}

function touches(request: LockRequest, entry: LockEntry): boolean {
  return [request.source, request.destination].some((k) => pathsOverlap(k, entry.source) || pathsOverlap(k, entry.destination));
}

/** Wrap a failure as STORE_ERROR unless it already carries a code callers branch on. */
function storeError(what: string, error: unknown): KetterError {
  if (error instanceof KetterError) return error;
  return new KetterError(ErrorCode.STORE_ERROR, `[ketter] [jsonl] ${what}: ${(error as Error)?.message ?? String(error)}`, { cause: error });
}
