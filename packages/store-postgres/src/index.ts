/**
 * PostgreSQL store for Ketter: jobs, hash-chained events, portals and cross-machine locks,
 * created by versioned migrations.
 *
 * @packageDocumentation
 */
export { PostgresStore, type PostgresStoreOptions } from './postgres-store.js';
export { migrate, type MigrateOptions, type MigrateResult } from './migrate.js';
export { MIGRATIONS, LATEST_MIGRATION, type Migration } from './migrations.js';
export type { ConnectionOptions } from './connection.js';
export { DEFAULT_SCHEMA } from './identifiers.js';
