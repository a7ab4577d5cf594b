import { readFile } from 'node:fs/promises';
import { ErrorCode, KetterError } from '../../errors.js';
import { pathsOverlap } from '../../paths.js';
import type { LockRequest } from '../../store.js';
import { writeFileAtomic } from './daily-files.js';
import { isAlive, type ProcessIdentity } from './process-liveness.js';

/** One held lock as stored in `locks.json`. */
export interface LockEntry extends ProcessIdentity {
  jobId: string;
  source: string;
  destination: string;
  acquiredAt: string;
}

/** Read the lock table; a missing file is an empty table. */
export async function readLockTable(path: string): Promise<LockEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new KetterError(ErrorCode.STORE_ERROR, `[ketter] [jsonl] cannot read the lock table: ${(error as Error).message}`, { cause: error });
  }
  try {
    const table = JSON.parse(text) as { locks?: unknown };
    if (Array.isArray(table.locks)) return table.locks.filter(isEntry);
  } catch {
    // reported below
  }
  // Refusing every lock would stop all transfers, and ignoring the file would let two jobs
  // write the same path; say what is wrong so an operator can remove the file.
  throw new KetterError(ErrorCode.STORE_ERROR, `[ketter] [jsonl] the lock table ${path} is corrupt; remove it when no job is running`);
}

export async function writeLockTable(path: string, locks: readonly LockEntry[]): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify({ v: 1, locks }, null, 1)}\n`, true);
}

/**
 * The error for a request that overlaps a live entry, or null when it may be granted.
 * The source is checked first: a job whose source is being written or moved elsewhere
 * must not start, whatever its destination.
 */
export function findConflict(request: LockRequest, live: readonly LockEntry[]): KetterError | null {
  for (const held of live) {
    const path = overlapping(request.source, held);
    if (path !== null) {
      return new KetterError(ErrorCode.SOURCE_LOCKED, `[ketter] source ${request.source} overlaps ${path}, locked by job ${held.jobId}`);
    }
  }
  for (const held of live) {
    const path = overlapping(request.destination, held);
    if (path !== null) {
      return new KetterError(
        ErrorCode.DESTINATION_LOCKED,
        `[ketter] destination ${request.destination} overlaps ${path}, locked by job ${held.jobId}`,
      );
    }
  }
  return null;
}

function overlapping(key: string, held: LockEntry): string | null {
  if (pathsOverlap(key, held.source)) return held.source;
  if (pathsOverlap(key, held.destination)) return held.destination;
  return null;
}

/** Split entries by whether their holder still runs. */
export function partitionByLiveness(entries: readonly LockEntry[]): { live: LockEntry[]; dead: LockEntry[] } {
  const live: LockEntry[] = [];
  const dead: LockEntry[] = [];
  for (const entry of entries) (isAlive(entry) ? live : dead).push(entry);
  return { live, dead };
}

function isEntry(value: unknown): value is LockEntry {
  if (!value || typeof value !== 'object') return false;
  const e = value as Record<string, unknown>;
  return (
    typeof e.jobId === 'string' &&
    typeof e.source === 'string' &&
    typeof e.destination === 'string' &&
    typeof e.pid === 'number' &&
    typeof e.host === 'string' &&
    typeof e.acquiredAt === 'string'
  );
}
