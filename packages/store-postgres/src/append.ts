import type pg from 'pg';
import {
  EPHEMERAL_EVENTS,
  ErrorCode,
  KetterError,
  KetterEventSchema,
  applyEvent,
  reduceJob,
  type JobSummary,
  type KetterEvent,
} from '@ketter/core';
import { GENESIS_HASH, canonicalJson, eventHash } from './chain.js';
import type { SchemaNames } from './identifiers.js';
import { JOB_COLUMNS, JOB_RECORD_TYPE, rowToSummary, summaryToRecord, type JobRow } from './job-rows.js';

/**
 * Check a batch before anything is written: every event must match its schema and be
 * persistent. One bad event refuses the whole batch.
 */
export function validateBatch(events: readonly unknown[]): KetterEvent[] {
  if (!Array.isArray(events)) throw new KetterError(ErrorCode.INVALID_REQUEST, '[postgres] append expects an array of events');
  return events.map((raw, i) => {
    const parsed = KetterEventSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
      throw new KetterError(
        ErrorCode.INVALID_REQUEST,
        `[postgres] event ${i} of the batch is not a valid Ketter event${where}: ${issue?.message ?? 'invalid'}; nothing was written`,
      );
    }
    if (EPHEMERAL_EVENTS.has(parsed.data.type)) {
      throw new KetterError(
        ErrorCode.INVALID_REQUEST,
        `[postgres] event ${i} of the batch is ephemeral (${parsed.data.type}) and is not persisted; nothing was written`,
      );
    }
    return parsed.data;
  });
}

interface JobHead {
  summary: JobSummary;
  lastSeq: number;
  lastHash: string;
}

function refuse(message: string): KetterError {
  return new KetterError(ErrorCode.STORE_ERROR, `[postgres] ${message}; nothing of the batch was written`);
}

/**
 * Write validated events and update their jobs rows inside the caller's transaction.
 * The cost is a fixed handful of statements per batch whatever its size: the jobs rows are
 * locked and read once, and the events go in as one multi-row INSERT from arrays.
 */
export async function appendInTransaction(client: pg.PoolClient, names: SchemaNames, events: readonly KetterEvent[]): Promise<void> {
  if (events.length === 0) return;
  const jobIds = [...new Set(events.map((e) => e.jobId))].sort();
  // Locking the rows in id order serialises writers of the same job (each chain has one
  // head) without deadlocks between batches that touch several jobs.
  const { rows } = await client.query<JobRow>(
    `SELECT ${JOB_COLUMNS} FROM ${names.jobs} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
    [jobIds],
  );
  const heads = new Map<string, JobHead>(rows.map((r) => [r.id, { summary: rowToSummary(r), lastSeq: r.last_seq, lastHash: r.last_hash }]));

  const cols = { id: [] as string[], jobId: [] as string[], seq: [] as number[], type: [] as string[], ts: [] as string[] };
  const payloads: string[] = [];
  const prevHashes: string[] = [];
  const hashes: string[] = [];
  const portals = new Set<string>();

  for (const e of events) {
    let head = heads.get(e.jobId);
    if (e.type === 'job.created') {
      if (head) throw refuse(`job ${e.jobId} already exists (second job.created, event ${e.id})`);
      const created = reduceJob([e]);
      if (!created) throw refuse(`cannot start job ${e.jobId}`);
      const { events: _events, ...summary } = created;
      head = { summary, lastSeq: -1, lastHash: GENESIS_HASH };
      heads.set(e.jobId, head);
      portals.add(e.source.portal).add(e.destination.portal);
    } else if (!head) {
      throw refuse(`event ${e.id} (${e.type}) names job ${e.jobId}, which has no job.created event`);
    } else {
      applyEvent(head.summary, e);
    }
    if (e.seq !== head.lastSeq + 1) {
      throw refuse(`event ${e.id} of job ${e.jobId} has seq ${e.seq}, expected ${head.lastSeq + 1}`);
    }
    const canonical = canonicalJson(e);
    const hash = eventHash(head.lastHash, canonical);
    cols.id.push(e.id);
    cols.jobId.push(e.jobId);
    cols.seq.push(e.seq);
    cols.type.push(e.type);
    cols.ts.push(e.ts);
    payloads.push(canonical);
    prevHashes.push(head.lastHash);
    hashes.push(hash);
    head.lastSeq = e.seq;
    head.lastHash = hash;
  }

  if (portals.size > 0) {
    await client.query(
      `INSERT INTO ${names.portals} (name)
       SELECT DISTINCT p FROM unnest($1::text[]) AS p ORDER BY p
       ON CONFLICT (name) DO UPDATE SET last_used_at = now()`,
      [[...portals]],
    );
  }
  const touched = jobIds.map((id) => heads.get(id)!).map((h) => summaryToRecord(h.summary, h.lastSeq, h.lastHash));
  await client.query(
    `INSERT INTO ${names.jobs} (id, status, mode, source_portal, source_path, destination_portal, destination_path, strategy,
       n_files, total_bytes, files_copied, bytes_copied, operator, host, created_at, created_ts, finished_at, finished_ts,
       duration_ms, error, staging, last_seq, last_hash)
     SELECT r.id, r.status, r.mode, r.source_portal, r.source_path, r.destination_portal, r.destination_path, r.strategy,
       r.n_files, r.total_bytes, r.files_copied, r.bytes_copied, r.operator, r.host, r.created_ts::timestamptz, r.created_ts,
       r.finished_ts::timestamptz, r.finished_ts, r.duration_ms, r.error, r.staging, r.last_seq, r.last_hash
     FROM jsonb_to_recordset($1::jsonb) AS r(${JOB_RECORD_TYPE})
     ORDER BY r.id
     ON CONFLICT (id) DO UPDATE SET
       status = EXCLUDED.status, strategy = EXCLUDED.strategy, n_files = EXCLUDED.n_files, total_bytes = EXCLUDED.total_bytes,
       files_copied = EXCLUDED.files_copied, bytes_copied = EXCLUDED.bytes_copied, finished_at = EXCLUDED.finished_at,
       finished_ts = EXCLUDED.finished_ts, duration_ms = EXCLUDED.duration_ms, error = EXCLUDED.error,
       staging = EXCLUDED.staging, last_seq = EXCLUDED.last_seq, last_hash = EXCLUDED.last_hash`,
    [JSON.stringify(touched)],
  );
  // A concurrent writer creating the same job is caught here: (job_id, seq) is unique.
  await client.query(
    `INSERT INTO ${names.events} (id, job_id, seq, type, ts, payload, prev_hash, hash)
     SELECT u.id, u.job_id, u.seq, u.type, u.ts, u.payload::jsonb, u.prev_hash, u.hash
     FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[])
       WITH ORDINALITY AS u(id, job_id, seq, type, ts, payload, prev_hash, hash, n)
     ORDER BY u.n`,
    [cols.id, cols.jobId, cols.seq, cols.type, cols.ts, payloads, prevHashes, hashes],
  );
}
