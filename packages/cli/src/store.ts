import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { JsonlStore, type Store } from '@ketter/core';
import type { LoadedConfig } from './config.js';
import { UsageError } from './exit.js';
import { importOptional } from './optional-import.js';
import { redact } from './redact.js';

/** Where the audit trail and locks live, before anything is opened. */
export type StoreTarget =
  | { kind: 'jsonl'; dir: string }
  | { kind: 'postgres'; connectionString: string };

/** What the CLI uses of `@ketter/store-postgres`, loaded only when a postgres store is named. */
interface PostgresModule {
  PostgresStore: new (options: { connectionString: string; operator?: string }) => Store;
  migrate(options: { connectionString: string }): Promise<unknown>;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i;

/**
 * Pick the store: `--store`, else the config's `store:`, else `$KETTER_HOME`, else
 * `~/.ketter`. Directories are JSONL stores; `postgres://` URLs are PostgreSQL stores.
 */
export function resolveStoreTarget(flag: string | undefined, loaded: LoadedConfig, env: Record<string, string | undefined>, cwd: string): StoreTarget {
  if (flag !== undefined && flag !== '') return targetOf(flag, cwd);
  const configured = loaded.config.store;
  if (typeof configured === 'string') return targetOf(configured, loaded.baseDir);
  if (configured !== undefined) {
    if (!POSTGRES_URL.test(configured.url)) throw new UsageError(`config 'store.url': expected a postgres:// URL`);
    return { kind: 'postgres', connectionString: withPassword(configured.url, configured.passwordEnv, env) };
  }
  const home = env.KETTER_HOME;
  if (home !== undefined && home !== '') return { kind: 'jsonl', dir: resolve(cwd, home) };
  return { kind: 'jsonl', dir: join(env.HOME || homedir(), '.ketter') };
}

function targetOf(spec: string, baseDir: string): StoreTarget {
  if (POSTGRES_URL.test(spec)) return { kind: 'postgres', connectionString: spec };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) throw new UsageError(`unsupported store '${redact(spec)}' (a directory or a postgres:// URL)`);
  return { kind: 'jsonl', dir: resolve(baseDir, spec) };
}

// Keeps the password out of the config file: it is read from the environment at run time.
function withPassword(url: string, passwordEnv: string | undefined, env: Record<string, string | undefined>): string {
  if (passwordEnv === undefined) return url;
  const password = env[passwordEnv];
  if (password === undefined) throw new UsageError(`config 'store.passwordEnv': environment variable ${passwordEnv} is not set`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`config 'store.url': not a valid URL`);
  }
  parsed.password = password;
  return parsed.toString();
}

/** A store target for messages: the directory, or the URL with its password masked. */
export function describeStore(target: StoreTarget): string {
  return target.kind === 'jsonl' ? target.dir : redact(target.connectionString);
}

/** Create and open the store; the caller closes it. `operator` names who writes recovery events. */
export async function openStore(target: StoreTarget, cwd: string, operator?: string): Promise<Store> {
  let store: Store;
  if (target.kind === 'jsonl') {
    store = new JsonlStore({ dir: target.dir });
  } else {
    const pg = await importOptional<PostgresModule>('@ketter/store-postgres', 'a postgres:// store', cwd);
    store = new pg.PostgresStore({ connectionString: target.connectionString, ...(operator === undefined ? {} : { operator }) });
  }
  await store.open();
  return store;
}

/** Apply pending migrations of a PostgreSQL store. */
export async function migratePostgres(target: Extract<StoreTarget, { kind: 'postgres' }>, cwd: string): Promise<unknown> {
  const pg = await importOptional<PostgresModule>('@ketter/store-postgres', 'ketter migrate', cwd);
  return pg.migrate({ connectionString: target.connectionString });
}
