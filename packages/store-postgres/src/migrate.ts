import type pg from 'pg';
import { Umzug, type UmzugStorage } from 'umzug';
import { ErrorCode, KetterError } from '@ketter/core';
import { connect, inTransaction, query, type Connection, type ConnectionOptions } from './connection.js';
import { SchemaNames } from './identifiers.js';
import { MIGRATIONS } from './migrations.js';

/** Options of {@link migrate}. */
export interface MigrateOptions extends ConnectionOptions {
  /** Schema to create or upgrade; `ketter` by default. */
  schema?: string;
}

/** What {@link migrate} did. */
export interface MigrateResult {
  /** Migrations applied by this call, oldest first (empty when already up to date). */
  applied: string[];
  /** Every migration now recorded in the schema. */
  executed: string[];
}

interface MigrationContext {
  client: pg.PoolClient;
  names: SchemaNames;
}

/** Umzug storage kept in `<schema>.ketter_migrations`, written in the migration transaction. */
function migrationsTable(context: MigrationContext): UmzugStorage<MigrationContext> {
  const { client, names } = context;
  return {
    async executed() {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${names.quoted}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${names.migrations} (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${names.migrations} ORDER BY name`);
      return rows.map((r) => r.name);
    },
    async logMigration({ name }) {
      await client.query(`INSERT INTO ${names.migrations} (name) VALUES ($1)`, [name]);
    },
    async unlogMigration({ name }) {
      await client.query(`DELETE FROM ${names.migrations} WHERE name = $1`, [name]);
    },
  };
}

/**
 * Create or upgrade Ketter's tables in `schema`. Idempotent, and safe when several
 * processes or machines run it at once: the whole run holds a transaction-scoped advisory
 * lock and is one transaction, so either every pending step is applied and recorded or
 * none is.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const names = new SchemaNames(options.schema);
  const connection = connect(options);
  try {
    return await inTransaction(connection, `migrate schema "${names.schema}"`, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [names.migrateLockName]);
      const context: MigrationContext = { client, names };
      const umzug = new Umzug<MigrationContext>({
        migrations: MIGRATIONS.map((m) => ({
          name: m.name,
          up: async ({ context: c }) => {
            await c.client.query(m.sql(c.names).join(';\n'));
          },
        })),
        context,
        storage: migrationsTable(context),
        logger: undefined,
      });
      const applied = await umzug.up();
      const executed = await umzug.executed();
      return { applied: applied.map((m) => m.name), executed: executed.map((m) => m.name) };
    });
  } finally {
    if (connection.ownsPool) await connection.pool.end();
  }
}

/**
 * Refuse to work on a schema this package does not match: unmigrated or behind (run
 * `ketter migrate`), or ahead (written by a newer Ketter).
 */
export async function checkSchemaVersion(connection: Connection, names: SchemaNames): Promise<void> {
  const operation = `check schema "${names.schema}"`;
  const { rows: exists } = await query<{ table: string | null }>(connection, operation, 'SELECT to_regclass($1)::text AS table', [
    `${names.quoted}.ketter_migrations`,
  ]);
  const known = MIGRATIONS.map((m) => m.name);
  if (!exists[0]?.table) {
    throw new KetterError(
      ErrorCode.STORE_ERROR,
      `[postgres] schema "${names.schema}" is not migrated: run \`ketter migrate\` (or migrate() from @ketter/store-postgres) before using this store`,
    );
  }
  const { rows } = await query<{ name: string }>(connection, operation, `SELECT name FROM ${names.migrations} ORDER BY name`);
  const recorded = new Set(rows.map((r) => r.name));
  const unknown = [...recorded].filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new KetterError(
      ErrorCode.STORE_ERROR,
      `[postgres] schema "${names.schema}" is newer than this version of @ketter/store-postgres knows (unknown migrations: ${unknown.join(', ')}): upgrade Ketter`,
    );
  }
  const missing = known.filter((name) => !recorded.has(name));
  if (missing.length > 0) {
    throw new KetterError(
      ErrorCode.STORE_ERROR,
      `[postgres] schema "${names.schema}" is not migrated to this version (pending: ${missing.join(', ')}): run \`ketter migrate\``,
    );
  }
}
