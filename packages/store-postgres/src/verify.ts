import type pg from 'pg';
import type { AuditReport } from '@ketter/core';
import { GENESIS_HASH, canonicalJson, eventHash } from './chain.js';
import type { SchemaNames } from './identifiers.js';

const PAGE = 5000;

interface EventRow {
  record_no: string;
  id: string;
  job_id: string;
  seq: number;
  type: string;
  payload: Record<string, unknown> | null;
  prev_hash: string;
  hash: string;
  head_seq: number | null;
  head_hash: string | null;
}

type Bad = NonNullable<AuditReport['firstBad']>;

function bad(row: EventRow, reason: string): Bad {
  return { location: `job_events#${row.record_no}`, eventId: row.id, jobId: row.job_id, reason };
}

/** Why a row breaks the chain, or null when it continues it. */
function checkRow(row: EventRow, expectedPrev: string, expectedSeq: number): string | null {
  const p = row.payload;
  if (!p || typeof p !== 'object') return 'payload is not an event (record altered)';
  if (String(p.id).toLowerCase() !== row.id || p.jobId !== row.job_id || p.seq !== row.seq || p.type !== row.type) {
    return 'row columns disagree with the recorded event (record altered)';
  }
  if (row.seq !== expectedSeq) return `seq ${row.seq} where ${expectedSeq} was expected (record missing or reordered)`;
  if (row.prev_hash !== expectedPrev) return 'prev_hash does not match the previous event of the job (record missing, reordered or altered)';
  if (eventHash(row.prev_hash, canonicalJson(p)) !== row.hash) return 'hash does not match the record content (record altered)';
  return null;
}

/**
 * Recompute every job's hash chain from its first event, page by page in one consistent
 * snapshot (REPEATABLE READ), so concurrent appends neither appear half-written nor make
 * a later page disagree with an earlier one. The jobs row stores the head of each chain,
 * so removing a job's last events is caught too.
 */
export async function verifyChains(client: pg.PoolClient, names: SchemaNames): Promise<AuditReport> {
  let records = 0;
  let after: [string, number] = ['', -1];
  let current: { jobId: string; prev: string; seq: number; last: EventRow } | null = null;

  const endOfJob = (c: NonNullable<typeof current>): Bad | null => {
    const row = c.last;
    if (row.head_hash === null) return bad(row, 'event names a job missing from the jobs table (record altered)');
    if (row.head_hash !== c.prev || row.head_seq !== c.seq - 1) {
      return bad(row, `the job's recorded chain head is seq ${row.head_seq}, but its events end here (events removed or altered)`);
    }
    return null;
  };

  for (;;) {
    const { rows } = await client.query<EventRow>(
      `SELECT e.record_no, e.id::text AS id, e.job_id, e.seq, e.type, e.payload, e.prev_hash, e.hash,
              j.last_seq AS head_seq, j.last_hash AS head_hash
       FROM ${names.events} e LEFT JOIN ${names.jobs} j ON j.id = e.job_id
       WHERE (e.job_id, e.seq) > ($1::text, $2::integer)
       ORDER BY e.job_id, e.seq
       LIMIT ${PAGE}`,
      after,
    );
    for (const row of rows) {
      if (current && current.jobId !== row.job_id) {
        const tail = endOfJob(current);
        if (tail) return { ok: false, records, firstBad: tail };
        current = null;
      }
      current ??= { jobId: row.job_id, prev: GENESIS_HASH, seq: 0, last: row };
      records++;
      const reason = checkRow(row, current.prev, current.seq);
      if (reason) return { ok: false, records, firstBad: bad(row, reason) };
      current.prev = row.hash;
      current.seq = row.seq + 1;
      current.last = row;
    }
    const last = rows[rows.length - 1];
    if (rows.length < PAGE || !last) break;
    after = [last.job_id, last.seq];
  }
  if (current) {
    const tail = endOfJob(current);
    if (tail) return { ok: false, records, firstBad: tail };
  }
  const { rows: empty } = await client.query<{ id: string }>(
    `SELECT j.id FROM ${names.jobs} j WHERE NOT EXISTS (SELECT 1 FROM ${names.events} e WHERE e.job_id = j.id) ORDER BY j.id LIMIT 1`,
  );
  if (empty[0]) {
    return { ok: false, records, firstBad: { location: `jobs#${empty[0].id}`, jobId: empty[0].id, reason: 'job has no events left (records removed)' } };
  }
  return { ok: true, records };
}
