import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { EVENT_VERSION, ErrorCode, KetterError, type HeldLock, type KetterEvent, type LockRequest } from '@ketter/core';
import { appendInTransaction } from './append.js';
import type { SchemaNames } from './identifiers.js';

/** Who holds a lease, recorded so operators can tell which node to look at. */
export interface LeaseOwner {
  host: string;
  pid: number;
  /** Recorded as `operator` on the `job.interrupted` events this process writes. */
  operator: string;
}

/** Statuses of a job that has not ended: a dead holder's job is interrupted from these. */
const UNFINISHED = ['created', 'running'];

/**
 * Serialise every lock decision in this schema, across processes and machines, for the
 * rest of the caller's transaction.
 */
export async function lockLeaseTable(client: pg.PoolClient, names: SchemaNames): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [names.leaseLockName]);
}

/**
 * Remove expired leases and mark their jobs interrupted (if they had not ended) by
 * appending `job.interrupted` to each job's trail. Call with the lease table locked.
 * Returns the ids of the jobs marked.
 */
export async function reclaimExpiredInTransaction(client: pg.PoolClient, names: SchemaNames, reclaimer: LeaseOwner): Promise<string[]> {
  const { rows: expired } = await client.query<{ job_id: string; owner_host: string; owner_pid: number }>(
    `DELETE FROM ${names.leases} WHERE expires_at < clock_timestamp() RETURNING job_id, owner_host, owner_pid`,
  );
  if (expired.length === 0) return [];
  const { rows: jobs } = await client.query<{ id: string; last_seq: number }>(
    `SELECT id, last_seq FROM ${names.jobs} WHERE id = ANY($1::text[]) AND status = ANY($2::text[]) ORDER BY id FOR UPDATE`,
    [expired.map((l) => l.job_id), UNFINISHED],
  );
  const holders = new Map(expired.map((l) => [l.job_id, l]));
  const ts = new Date().toISOString();
  const events: KetterEvent[] = jobs.map((job) => {
    const holder = holders.get(job.id)!;
    return {
      v: EVENT_VERSION,
      id: randomUUID(),
      ts,
      jobId: job.id,
      seq: job.last_seq + 1,
      operator: reclaimer.operator,
      host: reclaimer.host,
      type: 'job.interrupted',
      reason: `lease expired: holder ${holder.owner_host} pid ${holder.owner_pid} stopped renewing its lock`,
    };
  });
  await appendInTransaction(client, names, events);
  return jobs.map((j) => j.id);
}

/**
 * Record a lease for `request` unless its paths overlap a held one. Source conflicts are
 * reported before destination conflicts. Call with the lease table locked and expired
 * leases already reclaimed.
 */
export async function insertLease(
  client: pg.PoolClient,
  names: SchemaNames,
  request: LockRequest,
  owner: LeaseOwner,
  ttlMs: number,
): Promise<string> {
  const { rows } = await client.query<{ job_id: string; source: string; destination: string; hits_source: boolean; owner_host: string }>(
    `SELECT job_id, source, destination, owner_host,
       (${names.overlaps}(source, $1) OR ${names.overlaps}(destination, $1)) AS hits_source
     FROM ${names.leases}
     WHERE ${names.overlaps}(source, $1) OR ${names.overlaps}(destination, $1)
        OR ${names.overlaps}(source, $2) OR ${names.overlaps}(destination, $2)
     ORDER BY hits_source DESC, acquired_at
     LIMIT 1`,
    [request.source, request.destination],
  );
  const held = rows[0];
  if (held) {
    const which = held.hits_source ? 'source' : 'destination';
    const key = held.hits_source ? request.source : request.destination;
    throw new KetterError(
      held.hits_source ? ErrorCode.SOURCE_LOCKED : ErrorCode.DESTINATION_LOCKED,
      `[postgres] ${which} ${key} is locked by job ${held.job_id} on ${held.owner_host} (holding ${held.source} -> ${held.destination})`,
      { jobId: request.jobId },
    );
  }
  const token = randomUUID();
  try {
    await client.query(
      `INSERT INTO ${names.leases} (job_id, source, destination, owner_host, owner_pid, token, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp() + $7::double precision * interval '1 millisecond')`,
      [request.jobId, request.source, request.destination, owner.host, owner.pid, token, ttlMs],
    );
  } catch (error) {
    if (error && typeof error === 'object' && 'code' in error && error.code === '23505') {
      throw new KetterError(ErrorCode.SOURCE_LOCKED, `[postgres] job ${request.jobId} already holds a lock`, { jobId: request.jobId, cause: error });
    }
    throw error;
  }
  return token;
}

/** Extend the leases of `tokens`; returns the tokens still held (the others were reclaimed). */
export async function renewLeases(pool: pg.Pool, names: SchemaNames, tokens: string[], ttlMs: number): Promise<Set<string>> {
  const { rows } = await pool.query<{ token: string }>(
    `UPDATE ${names.leases} SET expires_at = clock_timestamp() + $2::double precision * interval '1 millisecond'
     WHERE token = ANY($1::uuid[]) RETURNING token`,
    [tokens, ttlMs],
  );
  return new Set(rows.map((r) => r.token));
}

export async function listLeases(pool: pg.Pool, names: SchemaNames): Promise<HeldLock[]> {
  const { rows } = await pool.query<{ job_id: string; source: string; destination: string; alive: boolean }>(
    `SELECT job_id, source, destination, expires_at > clock_timestamp() AS alive
     FROM ${names.leases} ORDER BY acquired_at, job_id`,
  );
  return rows.map((r) => ({ jobId: r.job_id, source: r.source, destination: r.destination, alive: r.alive }));
}
