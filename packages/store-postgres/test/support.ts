import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate, PostgresStore, type PostgresStoreOptions } from '@ketter/store-postgres';

/** The test database; trust auth on the loopback. */
export const PG_URL = process.env.KETTER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other test uses. */
export function randomSchema(): string {
  return `ketter_t_${randomBytes(6).toString('hex')}`;
}

/** Run SQL as the test user, outside any store. */
export async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** A migrated schema and an opened store on it; `cleanup` closes the store and drops the schema. */
export async function openStore(options: Partial<PostgresStoreOptions> = {}): Promise<{
  store: PostgresStore;
  schema: string;
  cleanup(): Promise<void>;
}> {
  const schema = options.schema ?? randomSchema();
  await migrate({ connectionString: PG_URL, schema });
  const store = new PostgresStore({ connectionString: PG_URL, ...options, schema });
  await store.open();
  return {
    store,
    schema,
    async cleanup() {
      await store.close();
      await dropSchema(schema);
    },
  };
}

/**
 * Change one character of one stored event's payload, as someone editing the table by hand
 * would (the append-only trigger is switched off first, as a table owner could). Returns
 * the altered event's id.
 */
export async function tamperOneEvent(schema: string, offset = 7): Promise<string> {
  const table = `"${schema}".job_events`;
  await sql(`ALTER TABLE ${table} DISABLE TRIGGER job_events_append_only`);
  try {
    const rows = await sql<{ id: string }>(
      `UPDATE ${table} SET payload = jsonb_set(payload, '{host}', to_jsonb(overlay(payload->>'host' placing 'X' from 1 for 1)))
       WHERE record_no = (SELECT record_no FROM ${table} ORDER BY record_no OFFSET $1 LIMIT 1)
       RETURNING id::text AS id`,
      [offset],
    );
    const id = rows[0]?.id;
    if (!id) throw new Error('no event to tamper with');
    return id;
  } finally {
    await sql(`ALTER TABLE ${table} ENABLE TRIGGER job_events_append_only`);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
