import pg from 'pg';
import { afterEach, describe, expect, test } from 'vitest';
import { isKetterError, type KetterError, type KetterEvent } from '@ketter/core';
import { JobEventFactory, jobEvents } from '@ketter/core/testing';
import { LATEST_MIGRATION, MIGRATIONS, PostgresStore, migrate } from '@ketter/store-postgres';
import { PG_URL, dropSchema, randomSchema, sql } from './support.js';

async function rejection(promise: Promise<unknown>): Promise<KetterError> {
  try {
    await promise;
  } catch (error) {
    if (isKetterError(error)) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

const schemas: string[] = [];
function schemaForTest(): string {
  const schema = randomSchema();
  schemas.push(schema);
  return schema;
}

afterEach(async () => {
  for (const schema of schemas.splice(0)) await dropSchema(schema);
});

describe('migrate()', () => {
  test('creates the tables, records each migration, and is idempotent', async () => {
    const schema = schemaForTest();
    const first = await migrate({ connectionString: PG_URL, schema });
    expect(first.applied).toEqual(MIGRATIONS.map((m) => m.name));
    expect(first.executed.at(-1)).toBe(LATEST_MIGRATION);
    const tables = await sql<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    );
    expect(tables.map((t) => t.table_name)).toEqual(['job_events', 'jobs', 'ketter_migrations', 'leases', 'portals']);
    const indexes = await sql<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs'`, [schema]);
    expect(indexes.map((i) => i.indexname)).toEqual(expect.arrayContaining(['jobs_created_idx', 'jobs_status_idx', 'jobs_mode_idx', 'jobs_strategy_idx']));

    const again = await migrate({ connectionString: PG_URL, schema });
    expect(again).toEqual({ applied: [], executed: first.executed });
  });

  test('two concurrent migrations both succeed and apply the schema once', async () => {
    const schema = schemaForTest();
    const results = await Promise.all([migrate({ connectionString: PG_URL, schema }), migrate({ connectionString: PG_URL, schema })]);
    expect(results.map((r) => r.applied.length).sort()).toEqual([0, MIGRATIONS.length]);
    const recorded = await sql(`SELECT name FROM "${schema}".ketter_migrations`);
    expect(recorded.length).toBe(MIGRATIONS.length);
  });

  test('works on a pool the caller owns, and leaves it open', async () => {
    const schema = schemaForTest();
    const pool = new pg.Pool({ connectionString: PG_URL });
    try {
      await migrate({ pool, schema });
      const store = new PostgresStore({ pool, schema });
      await store.open();
      await store.close();
      expect((await pool.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
    } finally {
      await pool.end();
    }
  });

  test('upgrading a schema of 0001: every job gets the staging its events leave, as the store derives it', async () => {
    const schema = schemaForTest();
    await migrate({ connectionString: PG_URL, schema });
    const store = new PostgresStore({ connectionString: PG_URL, schema });
    await store.open();
    try {
      const zip = jobEvents({ outcome: 'failed', strategy: 'ZIP_FIRST', files: 1 });
      const staging = (zip.find((e) => e.type === 'preflight.passed') as { staging: string }).staging;
      const f = new JobEventFactory({ jobId: zip[0]!.jobId, start: zip.at(-1)!.ts });
      // The staging directory is on record as removed, the archive is not.
      const removed = { ...f.next('staging.removed', { portal: 'dubbing', path: staging }), seq: zip.length } as KetterEvent;
      await store.append([...zip, removed]);
      for (const outcome of ['succeeded', 'running', 'cancelled'] as const) await store.append(jobEvents({ outcome, files: 1 }));
      const derived = new Map((await store.listJobs()).map((j) => [j.id, j.staging]));
      expect(derived.get(zip[0]!.jobId)).toEqual([`incoming/.ketter-${zip[0]!.jobId}.archive.zip`]);
      expect([...derived.values()].filter((s) => s.length > 0)).toHaveLength(3);

      // The schema as 0001 left it: no column, no record of 0002.
      await sql(`ALTER TABLE "${schema}".jobs DROP COLUMN staging`);
      await sql(`DELETE FROM "${schema}".ketter_migrations WHERE name = '0002_job_staging'`);
      expect((await migrate({ connectionString: PG_URL, schema })).applied).toEqual(['0002_job_staging']);
      expect(new Map((await store.listJobs()).map((j) => [j.id, j.staging]))).toEqual(derived);
      expect((await store.listJobs({ withStaging: true, status: 'failed' })).map((j) => j.id)).toEqual([zip[0]!.jobId]);
    } finally {
      await store.close();
    }
  });

  test('refuses a schema name that is not a plain identifier', async () => {
    const error = await rejection(migrate({ connectionString: PG_URL, schema: 'ketter"; DROP TABLE x; --' }));
    expect(error.code).toBe('INVALID_REQUEST');
    expect(() => new PostgresStore({ connectionString: PG_URL, schema: 'a b' })).toThrow(/invalid schema name/);
  });
});

describe('open() checks the schema version', () => {
  test('an unmigrated schema is refused with a message to run `ketter migrate`', async () => {
    const schema = schemaForTest();
    const store = new PostgresStore({ connectionString: PG_URL, schema });
    const missing = await rejection(store.open());
    expect(missing.code).toBe('STORE_ERROR');
    expect(missing.message).toMatch(/not migrated.*ketter migrate/);

    // An existing but empty schema is no better.
    await sql(`CREATE SCHEMA "${schema}"`);
    const empty = await rejection(store.open());
    expect(empty.code).toBe('STORE_ERROR');
    expect(empty.message).toMatch(/ketter migrate/);
  });

  test('a schema missing a migration this package knows is refused', async () => {
    const schema = schemaForTest();
    await migrate({ connectionString: PG_URL, schema });
    await sql(`DELETE FROM "${schema}".ketter_migrations WHERE name = $1`, [LATEST_MIGRATION]);
    const error = await rejection(new PostgresStore({ connectionString: PG_URL, schema }).open());
    expect(error.code).toBe('STORE_ERROR');
    expect(error.message).toContain(LATEST_MIGRATION);
    expect(error.message).toMatch(/ketter migrate/);
  });

  test('a schema newer than this package knows is refused', async () => {
    const schema = schemaForTest();
    await migrate({ connectionString: PG_URL, schema });
    await sql(`INSERT INTO "${schema}".ketter_migrations (name) VALUES ('9999_from_the_future')`);
    const error = await rejection(new PostgresStore({ connectionString: PG_URL, schema }).open());
    expect(error.code).toBe('STORE_ERROR');
    expect(error.message).toMatch(/newer than this version/);
    expect(error.message).toContain('9999_from_the_future');
    // migrate() leaves a newer schema alone rather than failing on it.
    expect((await migrate({ connectionString: PG_URL, schema })).applied).toEqual([]);
  });

  test('a migrated schema opens; a closed store refuses work', async () => {
    const schema = schemaForTest();
    await migrate({ connectionString: PG_URL, schema });
    const store = new PostgresStore({ connectionString: PG_URL, schema });
    await store.open();
    expect(await store.listJobs()).toEqual([]);
    await store.close();
    expect((await rejection(store.listJobs())).code).toBe('STORE_ERROR');
  });
});

describe('connection errors', () => {
  const password = 'S3cret-Pa55word';

  function assertRedacted(error: KetterError): void {
    const texts = [error.message, String(error.stack), JSON.stringify(error.toJSON())];
    for (const text of texts) expect(text).not.toContain(password);
  }

  test('an unreachable server is a transient CONNECTION_ERROR that never shows the password', async () => {
    const store = new PostgresStore({ connectionString: `postgres://ketter:${password}@127.0.0.1:1/test` });
    const error = await rejection(store.open());
    expect(error.code).toBe('CONNECTION_ERROR');
    expect(error.transient).toBe(true);
    expect(error.message).toContain('postgres://ketter:***@127.0.0.1:1/test');
    assertRedacted(error);
  });

  test('a server-side failure is a STORE_ERROR that never shows the password', async () => {
    const error = await rejection(migrate({ connectionString: `postgres://postgres:${password}@127.0.0.1:5432/ketter_no_such_db` }));
    expect(error.code).toBe('STORE_ERROR');
    expect(error.message).toMatch(/ketter_no_such_db/);
    assertRedacted(error);
  });
});
