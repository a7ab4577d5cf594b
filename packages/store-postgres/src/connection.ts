import pg from 'pg';
import { ErrorCode, KetterError } from '@ketter/core';
import { Redactor, toStoreError } from './pg-errors.js';

/** How to reach the database: a connection string, or a pool the caller owns. */
export interface ConnectionOptions {
  /** e.g. `postgres://ketter@db.internal:5432/ketter`. Never logged or echoed with its password. */
  connectionString?: string;
  /** An existing pool; the caller keeps ownership and ends it. */
  pool?: pg.Pool;
}

/** A pool plus what is needed to report its errors safely. */
export interface Connection {
  pool: pg.Pool;
  redactor: Redactor;
  /** Whether this connection created the pool (and so must end it). */
  ownsPool: boolean;
}

export function connect(options: ConnectionOptions): Connection {
  if (options.pool) return { pool: options.pool, redactor: new Redactor(options.connectionString), ownsPool: false };
  if (!options.connectionString) {
    throw new KetterError(ErrorCode.INVALID_REQUEST, '[postgres] a connectionString or a pool is required');
  }
  const redactor = new Redactor(options.connectionString);
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    application_name: 'ketter',
    connectionTimeoutMillis: 10_000,
    max: 5,
  });
  // An idle client losing its link emits 'error' on the pool; unhandled, that would end
  // the process. The next query reports the failure as a CONNECTION_ERROR instead.
  pool.on('error', () => undefined);
  return { pool, redactor, ownsPool: true };
}

/** Run `fn` inside a transaction on one pooled client; any failure rolls back. */
export async function inTransaction<T>(
  connection: Connection,
  operation: string,
  fn: (client: pg.PoolClient) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await connection.pool.connect();
  } catch (error) {
    throw toStoreError(error, operation, connection.redactor);
  }
  let broken = false;
  // A checked-out client losing its link emits 'error' on itself (the pool listens only
  // while it is idle); unheard, that ends the process. The query in flight rejects with the
  // same failure, which is what the caller sees.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw toStoreError(error, operation, connection.redactor);
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** Run one query outside any explicit transaction, with errors mapped. */
export async function query<R extends pg.QueryResultRow>(
  connection: Connection,
  operation: string,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await connection.pool.query<R>(text, values);
  } catch (error) {
    throw toStoreError(error, operation, connection.redactor);
  }
}
