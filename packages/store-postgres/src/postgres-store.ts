import os from 'node:os';
import {
  ErrorCode,
  KetterError,
  type AuditReport,
  type HeldLock,
  type JobDetail,
  type JobFilter,
  type JobSummary,
  type KetterEvent,
  type LockLease,
  type LockRequest,
  type Store,
} from '@ketter/core';
import { appendInTransaction, validateBatch } from './append.js';
import { connect, inTransaction, query, type Connection, type ConnectionOptions } from './connection.js';
import { SchemaNames } from './identifiers.js';
import { JOB_COLUMNS, rowToSummary, type JobRow } from './job-rows.js';
import { insertLease, listLeases, lockLeaseTable, reclaimExpiredInTransaction, renewLeases, type LeaseOwner } from './leases.js';
import { checkSchemaVersion } from './migrate.js';
import { toStoreError } from './pg-errors.js';
import { verifyChains } from './verify.js';

/** Options of {@link PostgresStore}. */
export interface PostgresStoreOptions extends ConnectionOptions {
  /** Schema holding Ketter's tables; `ketter` by default. Must have been migrated. */
  schema?: string;
  /** How long a lock survives without renewal, in ms (default 30000). */
  leaseTtlMs?: number;
  /** How often held locks are renewed, in ms (default 5000); must be below `leaseTtlMs`. */
  heartbeatMs?: number;
  /** Recorded on `job.interrupted` events this process writes; defaults to the OS user. */
  operator?: string;
  /** Recorded as lock owner and on events this process writes; defaults to the hostname. */
  host?: string;
}

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new KetterError(ErrorCode.INVALID_REQUEST, `[postgres] ${name} must be a positive integer of milliseconds`);
  }
  return value;
}

/**
 * The PostgreSQL store: jobs, their events and path locks in one schema, shared by every
 * Automation Node that points at the same database.
 *
 * - Events are validated, hash-chained per job and inserted in one statement per batch,
 *   with the job's row updated in the same transaction.
 * - Locks are leases renewed by a heartbeat; a lease whose holder stopped renewing it
 *   (crash, power loss, network partition) is reclaimed by the next acquirer and its job
 *   marked `interrupted`.
 * - `open()` refuses a schema that is not migrated to exactly this package's version.
 *
 * @example
 * ```ts
 * await migrate({ connectionString, schema: 'ketter' }); // once, e.g. `ketter migrate`
 * const store = new PostgresStore({ connectionString });
 * await store.open();
 * ```
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres';
  readonly #options: PostgresStoreOptions;
  readonly #names: SchemaNames;
  readonly #ttlMs: number;
  readonly #heartbeatMs: number;
  readonly #owner: LeaseOwner;
  #connection: Connection | null = null;
  /** Leases this process holds, by token → job id, renewed together by one timer. */
  readonly #held = new Map<string, string>();
  #heartbeat: NodeJS.Timeout | null = null;
  #renewing: Promise<void> | null = null;

  constructor(options: PostgresStoreOptions) {
    this.#options = options;
    this.#names = new SchemaNames(options.schema);
    this.#ttlMs = positiveInt(options.leaseTtlMs, 30_000, 'leaseTtlMs');
    this.#heartbeatMs = positiveInt(options.heartbeatMs, Math.min(5_000, Math.floor(this.#ttlMs / 3) || 1), 'heartbeatMs');
    if (this.#heartbeatMs >= this.#ttlMs) {
      throw new KetterError(ErrorCode.INVALID_REQUEST, '[postgres] heartbeatMs must be shorter than leaseTtlMs');
    }
    this.#owner = { host: options.host ?? os.hostname(), pid: process.pid, operator: options.operator ?? osUser() };
  }

  /** The schema this store works in. */
  get schema(): string {
    return this.#names.schema;
  }

  /** Connect and check the schema version; refuses an unmigrated or newer schema. */
  async open(): Promise<void> {
    if (this.#connection) return;
    const connection = connect(this.#options);
    try {
      await checkSchemaVersion(connection, this.#names);
    } catch (error) {
      if (connection.ownsPool) await connection.pool.end().catch(() => undefined);
      throw error;
    }
    this.#connection = connection;
  }

  /**
   * Stop renewing locks and end the pool (unless the caller supplied it). Locks still held
   * are left to expire, so a job that did not finish is marked `interrupted` by the next
   * acquirer rather than left `running`.
   */
  async close(): Promise<void> {
    this.#stopHeartbeat();
    this.#held.clear();
    await this.#renewing?.catch(() => undefined);
    const connection = this.#connection;
    this.#connection = null;
    if (connection?.ownsPool) await connection.pool.end();
  }

  async append(events: readonly KetterEvent[]): Promise<void> {
    const valid = validateBatch(events);
    if (valid.length === 0) return;
    await inTransaction(this.#open(), 'append events', (client) => appendInTransaction(client, this.#names, valid));
  }

  async getJob(id: string): Promise<JobDetail | null> {
    const c = this.#open();
    const { rows } = await query<JobRow>(c, 'read job', `SELECT ${JOB_COLUMNS} FROM ${this.#names.jobs} WHERE id = $1`, [id]);
    const row = rows[0];
    if (!row) return null;
    const { rows: events } = await query<{ payload: KetterEvent }>(
      c,
      'read job events',
      `SELECT payload FROM ${this.#names.events} WHERE job_id = $1 ORDER BY seq`,
      [id],
    );
    return { ...rowToSummary(row), events: events.map((e) => e.payload) };
  }

  async listJobs(filter: JobFilter = {}): Promise<JobSummary[]> {
    const limit = filter.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 0) throw new KetterError(ErrorCode.INVALID_REQUEST, '[postgres] limit must be a non-negative integer');
    const { rows } = await query<JobRow>(
      this.#open(),
      'list jobs',
      `SELECT ${JOB_COLUMNS} FROM ${this.#names.jobs}
       WHERE ($1::text IS NULL OR mode = $1) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR strategy = $3)
         AND ($5::boolean IS NOT TRUE OR staging <> '[]'::jsonb)
       ORDER BY created_at DESC, ord DESC
       LIMIT $4`,
      [filter.mode ?? null, filter.status ?? null, filter.strategy ?? null, limit, filter.withStaging === true],
    );
    return rows.map(rowToSummary);
  }

  async acquireLocks(request: LockRequest): Promise<LockLease> {
    for (const key of ['jobId', 'source', 'destination'] as const) {
      if (typeof request?.[key] !== 'string' || request[key] === '') {
        throw new KetterError(ErrorCode.INVALID_REQUEST, `[postgres] lock request needs a non-empty ${key}`);
      }
    }
    const c = this.#open();
    const token = await inTransaction(c, 'acquire locks', async (client) => {
      await lockLeaseTable(client, this.#names);
      await reclaimExpiredInTransaction(client, this.#names, this.#owner);
      return insertLease(client, this.#names, request, this.#owner, this.#ttlMs);
    });
    this.#held.set(token, request.jobId);
    this.#startHeartbeat();
    let released = false;
    return {
      jobId: request.jobId,
      release: async () => {
        if (released) return;
        released = true;
        this.#held.delete(token);
        if (this.#held.size === 0) this.#stopHeartbeat();
        await query(this.#open(), 'release locks', `DELETE FROM ${this.#names.leases} WHERE token = $1`, [token]);
      },
    };
  }

  async listLocks(): Promise<HeldLock[]> {
    const c = this.#open();
    try {
      return await listLeases(c.pool, this.#names);
    } catch (error) {
      throw toStoreError(error, 'list locks', c.redactor);
    }
  }

  /**
   * Remove leases whose holders stopped renewing them and mark those holders' unfinished
   * jobs `interrupted` (a `job.interrupted` event, reason "lease expired"). Acquiring a
   * lock does this too; recovery tooling calls it to sweep without locking anything.
   *
   * @returns the ids of the jobs marked interrupted
   */
  async reclaimExpired(): Promise<string[]> {
    return inTransaction(this.#open(), 'reclaim expired locks', async (client) => {
      await lockLeaseTable(client, this.#names);
      return reclaimExpiredInTransaction(client, this.#names, this.#owner);
    });
  }

  async verifyAudit(): Promise<AuditReport> {
    return inTransaction(
      this.#open(),
      'verify audit trail',
      (client) => verifyChains(client, this.#names),
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  }

  #open(): Connection {
    if (!this.#connection) throw new KetterError(ErrorCode.STORE_ERROR, '[postgres] the store is not open: call open() first');
    return this.#connection;
  }

  #startHeartbeat(): void {
    if (this.#heartbeat) return;
    this.#heartbeat = setInterval(() => {
      // One renewal at a time: a slow database must not pile up overlapping updates.
      if (this.#renewing || !this.#connection || this.#held.size === 0) return;
      const pool = this.#connection.pool;
      const tokens = [...this.#held.keys()];
      this.#renewing = renewLeases(pool, this.#names, tokens, this.#ttlMs)
        .then((kept) => {
          // A lease missing here was reclaimed after expiring; renewing it is no longer ours to do.
          for (const token of tokens) if (!kept.has(token)) this.#held.delete(token);
          if (this.#held.size === 0) this.#stopHeartbeat();
        })
        .catch(() => {
          // Transient: the next tick tries again while the lease has time left.
        })
        .finally(() => {
          this.#renewing = null;
        });
    }, this.#heartbeatMs);
    this.#heartbeat.unref();
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }
}
