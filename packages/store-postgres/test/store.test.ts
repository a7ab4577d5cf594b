import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, test } from 'vitest';
import { isKetterError, type KetterEvent } from '@ketter/core';
import { jobEvents } from '@ketter/core/testing';
import { PostgresStore } from '@ketter/store-postgres';
import { PG_URL, openStore, sleep, sql } from './support.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fresh(options: ConstructorParameters<typeof PostgresStore>[0] | object = {}) {
  const opened = await openStore(options);
  cleanups.push(opened.cleanup);
  return opened;
}

/** A second store on the same schema, as another Automation Node would open it. */
async function peer(schema: string, options: object = {}): Promise<PostgresStore> {
  const store = new PostgresStore({ connectionString: PG_URL, schema, ...options });
  await store.open();
  cleanups.push(() => store.close());
  return store;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isKetterError(error) ? error.code : String(error);
  }
}

describe('history queries', () => {
  test('listJobs({ status, strategy, mode }) returns the matching rows, most recent first', async () => {
    const { store } = await fresh();
    const start = Date.parse('2026-05-01T09:00:00.000Z');
    const specs = [
      { outcome: 'failed', strategy: 'ZIP_FIRST', mode: 'copy' },
      { outcome: 'failed', strategy: 'DIRECT', mode: 'copy' },
      { outcome: 'succeeded', strategy: 'ZIP_FIRST', mode: 'move' },
      { outcome: 'failed', strategy: 'ZIP_FIRST', mode: 'move' },
      { outcome: 'running', strategy: 'ZIP_FIRST', mode: 'copy' },
    ] as const;
    const ids: string[] = [];
    for (const [i, spec] of specs.entries()) {
      const events = jobEvents({ ...spec, start: new Date(start + i * 1000), files: 2 });
      ids.push(events[0]!.jobId);
      await store.append(events);
    }
    const idsOf = async (filter: Parameters<typeof store.listJobs>[0]) => (await store.listJobs(filter)).map((j) => j.id);
    expect(await idsOf({ status: 'failed', strategy: 'ZIP_FIRST' })).toEqual([ids[3], ids[0]]);
    expect(await idsOf({ status: 'failed', strategy: 'ZIP_FIRST', mode: 'copy' })).toEqual([ids[0]]);
    expect(await idsOf({ status: 'failed', limit: 1 })).toEqual([ids[3]]);
    expect(await idsOf({ strategy: 'DIRECT' })).toEqual([ids[1]]);
    expect(await idsOf({ status: 'interrupted' })).toEqual([]);
    const [failedZip] = await store.listJobs({ status: 'failed', strategy: 'ZIP_FIRST', mode: 'move' });
    expect(failedZip).toMatchObject({ mode: 'move', nFiles: 2, error: { code: 'CHECKSUM_MISMATCH' } });
    expect(typeof failedZip!.durationMs).toBe('number');
  });
});

describe('append', () => {
  test('refuses gaps, unknown jobs and a second job.created, writing nothing of the batch', async () => {
    const { store } = await fresh();
    const events = jobEvents({ files: 2 });
    const jobId = events[0]!.jobId;
    await store.append(events.slice(0, 3));

    expect(await codeOf(store.append([events[4]!, events[5]!]))).toBe('STORE_ERROR'); // seq 3 missing
    expect(await codeOf(store.append([events[3]!, events[2]!]))).toBe('STORE_ERROR'); // seq 2 again
    expect(await codeOf(store.append([events[3]!, { ...events[0]!, id: randomUUID(), seq: 4 }]))).toBe('STORE_ERROR');
    const stranger = jobEvents({ files: 1 });
    expect(await codeOf(store.append([events[3]!, stranger[1]!]))).toBe('STORE_ERROR'); // job never created
    expect((await store.getJob(jobId))!.events.length).toBe(3);
    expect(await store.getJob(stranger[0]!.jobId)).toBeNull();

    await store.append(events.slice(3));
    expect((await store.getJob(jobId))!.status).toBe('succeeded');
    expect((await store.verifyAudit()).ok).toBe(true);
  });

  test('two nodes appending to their own jobs at once keep both chains intact', async () => {
    const { store, schema } = await fresh();
    const other = await peer(schema);
    const a = jobEvents({ files: 300 });
    const b = jobEvents({ files: 300 });
    const write = async (s: PostgresStore, events: KetterEvent[]) => {
      for (let i = 0; i < events.length; i += 50) await s.append(events.slice(i, i + 50));
    };
    await Promise.all([write(store, a), write(other, b)]);
    expect(await store.verifyAudit()).toEqual({ ok: true, records: a.length + b.length });
    expect((await other.getJob(a[0]!.jobId))!.events).toEqual(a);
  });

  test('costs a fixed number of statements per batch, not one per event', async () => {
    const pool = new pg.Pool({ connectionString: PG_URL });
    let statements = 0;
    pool.on('connect', (client) => {
      const original = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        statements++;
        return original(...args);
      };
    });
    cleanups.push(() => pool.end());
    const { store } = await fresh({ pool });
    const events = jobEvents({ files: 9_997 }); // 20,000 events
    expect(events.length).toBe(20_000);
    statements = 0;
    const started = performance.now();
    for (let i = 0; i < events.length; i += 1000) await store.append(events.slice(i, i + 1000));
    const seconds = (performance.now() - started) / 1000;
    console.log(`[store-postgres] appended ${events.length} events in batches of 1000: ${Math.round(events.length / seconds)} events/s`);
    expect(statements).toBeLessThanOrEqual(20 * 7);
    const verifyStarted = performance.now();
    expect(await store.verifyAudit()).toEqual({ ok: true, records: 20_000 });
    console.log(`[store-postgres] verified ${events.length} events: ${Math.round(events.length / ((performance.now() - verifyStarted) / 1000))} events/s`);
  });
});

describe('tamper evidence', () => {
  test('the audit table refuses UPDATE, DELETE and TRUNCATE', async () => {
    const { store, schema } = await fresh();
    await store.append(jobEvents({ files: 1 }));
    await expect(sql(`UPDATE "${schema}".job_events SET type = 'job.failed'`)).rejects.toThrow(/append-only/);
    await expect(sql(`DELETE FROM "${schema}".job_events`)).rejects.toThrow(/append-only/);
    await expect(sql(`TRUNCATE "${schema}".job_events CASCADE`)).rejects.toThrow(/append-only/);
  });

  async function withTriggerOff(schema: string, statement: string, values?: unknown[]): Promise<void> {
    await sql(`ALTER TABLE "${schema}".job_events DISABLE TRIGGER USER`);
    try {
      await sql(statement, values);
    } finally {
      await sql(`ALTER TABLE "${schema}".job_events ENABLE TRIGGER USER`);
    }
  }

  test('a removed event is detected at the next one, a removed tail at the job head', async () => {
    const { store, schema } = await fresh();
    const a = jobEvents({ files: 3 });
    const b = jobEvents({ files: 3 });
    await store.append([...a, ...b]);
    await withTriggerOff(schema, `DELETE FROM "${schema}".job_events WHERE id = $1`, [a[4]!.id]);
    const middle = await store.verifyAudit();
    expect(middle.ok).toBe(false);
    expect(middle.firstBad).toMatchObject({ eventId: a[5]!.id, jobId: a[0]!.jobId });
    expect(middle.firstBad!.location).toMatch(/^job_events#\d+$/);
    expect(middle.firstBad!.reason).toMatch(/missing/);

    const { store: other, schema: otherSchema } = await fresh();
    await other.append(b);
    await withTriggerOff(otherSchema, `DELETE FROM "${otherSchema}".job_events WHERE id = $1`, [b.at(-1)!.id]);
    const tail = await other.verifyAudit();
    expect(tail.ok).toBe(false);
    expect(tail.firstBad).toMatchObject({ eventId: b.at(-2)!.id, jobId: b[0]!.jobId });
    expect(tail.firstBad!.reason).toMatch(/removed/);
  });

  test('a row whose columns no longer match its payload is detected', async () => {
    const { store, schema } = await fresh();
    const events = jobEvents({ outcome: 'failed', files: 1 });
    await store.append(events);
    await withTriggerOff(schema, `UPDATE "${schema}".job_events SET type = 'job.succeeded' WHERE id = $1`, [events.at(-1)!.id]);
    const report = await store.verifyAudit();
    expect(report.firstBad).toMatchObject({ eventId: events.at(-1)!.id, reason: expect.stringMatching(/altered/) });
  });
});

describe('leases', () => {
  const lockOf = (source: string) => ({ jobId: randomUUID(), source, destination: `fs:/elsewhere/${randomUUID()}` });

  test('heartbeats keep a lease alive well past its TTL', async () => {
    const { store, schema } = await fresh({ leaseTtlMs: 1000, heartbeatMs: 100 });
    const other = await peer(schema);
    const lease = await store.acquireLocks(lockOf('fs:/mnt/ingest/held'));
    await sleep(2500);
    expect(await other.reclaimExpired()).toEqual([]);
    expect(await codeOf(other.acquireLocks(lockOf('fs:/mnt/ingest/held/sub')))).toBe('SOURCE_LOCKED');
    expect((await other.listLocks()).find((l) => l.jobId === lease.jobId)?.alive).toBe(true);
    await lease.release();
  });

  test('a lease nobody renews expires: listLocks shows it dead, reclaimExpired interrupts its running job', async () => {
    const { store, schema } = await fresh();
    const holder = new PostgresStore({ connectionString: PG_URL, schema, leaseTtlMs: 600, heartbeatMs: 200 });
    await holder.open();
    const running = jobEvents({ outcome: 'running', files: 1 });
    const finished = jobEvents({ outcome: 'succeeded', files: 1 });
    await holder.append([...running, ...finished]);
    await holder.acquireLocks({ jobId: running[0]!.jobId, source: 'fs:/mnt/a', destination: 'fs:/mnt/out/a' });
    await holder.acquireLocks({ jobId: finished[0]!.jobId, source: 'fs:/mnt/b', destination: 'fs:/mnt/out/b' });
    // The holder stops without releasing (as a crashed node would); its leases run out.
    await holder.close();
    await sleep(900);

    const locks = await store.listLocks();
    expect(locks.map((l) => l.alive)).toEqual([false, false]);
    expect(await store.reclaimExpired()).toEqual([running[0]!.jobId]);
    expect(await store.listLocks()).toEqual([]);
    const job = await store.getJob(running[0]!.jobId);
    expect(job).toMatchObject({ status: 'interrupted', error: { code: 'IO_ERROR' } });
    expect(job!.events.at(-1)).toMatchObject({ type: 'job.interrupted', seq: running.length, reason: expect.stringMatching(/lease expired/) });
    expect((await store.getJob(finished[0]!.jobId))!.status).toBe('succeeded');
    expect(await store.reclaimExpired()).toEqual([]);
    expect((await store.verifyAudit()).ok).toBe(true);
  });

  test('a holder whose lease was reclaimed cannot append over the interruption', async () => {
    const { store, schema } = await fresh();
    const holder = new PostgresStore({ connectionString: PG_URL, schema, leaseTtlMs: 300, heartbeatMs: 100 });
    await holder.open();
    cleanups.push(() => holder.close());
    const events = jobEvents({ files: 1 });
    const cut = events.length - 2;
    await holder.append(events.slice(0, cut));
    const lease = await holder.acquireLocks({ jobId: events[0]!.jobId, source: 'fs:/mnt/slow', destination: 'fs:/mnt/out/slow' });
    // Simulate a node that froze: the lease expires under it.
    await sql(`UPDATE "${schema}".leases SET expires_at = now() - interval '1 second'`);
    expect(await store.reclaimExpired()).toEqual([events[0]!.jobId]);
    // Its next events collide with job.interrupted's seq and are refused.
    expect(await codeOf(holder.append(events.slice(cut)))).toBe('STORE_ERROR');
    expect((await store.getJob(events[0]!.jobId))!.status).toBe('interrupted');
    await lease.release();
  });

  test('lock keys: trailing slashes and storage prefixes', async () => {
    const { store } = await fresh();
    const lease = await store.acquireLocks({ jobId: randomUUID(), source: 'fs:/mnt/ingest/', destination: 'fs:/mnt/out' });
    expect(await codeOf(store.acquireLocks(lockOf('fs:/mnt/ingest/EP1')))).toBe('SOURCE_LOCKED');
    // A LIKE metacharacter in a key is matched literally.
    const pct = await store.acquireLocks({ jobId: randomUUID(), source: 'fs:/mnt/a%', destination: 'fs:/mnt/out2' });
    expect(await codeOf(store.acquireLocks(lockOf('fs:/mnt/ab')))).toBe('resolved');
    expect(await codeOf(store.acquireLocks(lockOf('sftp:nas:/mnt/ingest')))).toBe('resolved');
    await lease.release();
    await pct.release();
  });
});
