import { hash } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobSummary } from '../../store.js';
import { writeFileAtomic } from './daily-files.js';
import { isTrailPosition, type TrailPosition } from './trail-position.js';

/** Directory of the job summary index, beside `audit/`. */
export const INDEX_DIR = 'jobs';
/** The index head: how far into the trail the index is valid, its log, and the jobs recovery looks for. */
export const INDEX_HEAD = 'index.json';
/**
 * Format of the head and its log. A head of another version is rebuilt from the trail:
 * 2 added `staging` to the summaries, and keeps in the head the finished jobs that have some.
 */
export const INDEX_VERSION = 2;

/** One job as the index keeps it. */
export interface IndexedJob {
  /** The summary, as {@link applyEvent} leaves it after the job's summary-changing events. */
  s: JobSummary;
  /** Line number of the job's `job.created` in the trail: orders jobs created at the same instant. */
  o: number;
  /** Daily file holding `job.created`: reading the job's events starts there. */
  f: string;
  /** Line number of the last event applied: of two entries for a job, the higher wins. */
  r: number;
}

/** The summary log: finished jobs, one sealed JSON line each, only `size` bytes of which are valid. */
export interface LogRef {
  name: string;
  size: number;
}

export interface IndexHead {
  v: typeof INDEX_VERSION;
  trail: TrailPosition;
  log: LogRef | null;
  /**
   * Jobs recovery and resume look for: not finished yet (created or running), or finished
   * with staging left. Few, and rewritten with the head; finished ones are in the log too.
   */
  active: IndexedJob[];
  /**
   * Whether such jobs ever outnumbered what the head keeps, so that some of them are in the
   * log only: listings for them must then read the log.
   */
  spilled: boolean;
}

/** The head as read: `raw` tells whether it changed since (null when absent); `head` is null when absent or unreadable. */
export interface IndexBase {
  raw: string | null;
  head: IndexHead | null;
}

/** A file of the index that cannot be read as written: the index is rebuilt. */
export class IndexUnreadable extends Error {}

export async function readIndexRaw(jobsDir: string): Promise<string | null> {
  try {
    return await readFile(join(jobsDir, INDEX_HEAD), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

export async function readIndexBase(jobsDir: string): Promise<IndexBase> {
  const raw = await readIndexRaw(jobsDir);
  return { raw, head: raw === null ? null : parseHead(raw) };
}

// Index lines carry a digest of their JSON, so a flipped byte that still parses (inside a
// string, a digit) is caught and the index rebuilt instead of serving a wrong summary.
// Each line stays a JSON object: {"c":"<16 hex>","j":<json>}
const SEAL_PREFIX = '{"c":"';
const SEAL_MIDDLE = '","j":';
const SEAL_HEX = 16;
const SEALED_AT = SEAL_PREFIX.length + SEAL_HEX + SEAL_MIDDLE.length;

function digest(json: string): string {
  return hash('sha1', json, 'hex').slice(0, SEAL_HEX);
}

/** Wrap a JSON text with its digest (no newline). */
export function seal(json: string): string {
  return `${SEAL_PREFIX}${digest(json)}${SEAL_MIDDLE}${json}}`;
}

/** The JSON text inside a sealed line, or null when the line was altered. */
export function unseal(line: string): string | null {
  if (!line.startsWith(SEAL_PREFIX) || line.slice(SEAL_PREFIX.length + SEAL_HEX, SEALED_AT) !== SEAL_MIDDLE || !line.endsWith('}')) return null;
  const json = line.slice(SEALED_AT, -1);
  return digest(json) === line.slice(SEAL_PREFIX.length, SEAL_PREFIX.length + SEAL_HEX) ? json : null;
}

function parseHead(raw: string): IndexHead | null {
  try {
    const json = unseal(raw.endsWith('\n') ? raw.slice(0, -1) : raw);
    if (json === null) return null;
    const head = JSON.parse(json) as Partial<IndexHead>;
    if (head.v !== INDEX_VERSION || typeof head.spilled !== 'boolean' || !isTrailPosition(head.trail) || !Array.isArray(head.active) || !head.active.every(isIndexedJob)) return null;
    const log = head.log;
    if (log !== null && !(log && typeof log.name === 'string' && /^summaries-[\w.-]+\.jsonl$/.test(log.name) && typeof log.size === 'number')) return null;
    return { v: INDEX_VERSION, trail: head.trail, log, active: head.active, spilled: head.spilled };
  } catch {
    return null;
  }
}

export async function writeIndexHead(jobsDir: string, head: IndexHead): Promise<void> {
  await mkdir(jobsDir, { recursive: true });
  // A cache, not evidence: no flush. A head lost or torn by a power cut is rebuilt.
  await writeFileAtomic(join(jobsDir, INDEX_HEAD), `${seal(JSON.stringify(head))}\n`, false);
}

export function isIndexedJob(value: unknown): value is IndexedJob {
  if (!value || typeof value !== 'object') return false;
  const e = value as Partial<IndexedJob>;
  const s = e.s as Partial<JobSummary> | undefined;
  return (
    typeof e.o === 'number' &&
    typeof e.r === 'number' &&
    typeof e.f === 'string' &&
    !!s &&
    typeof s === 'object' &&
    typeof s.id === 'string' &&
    typeof s.status === 'string' &&
    typeof s.mode === 'string' &&
    typeof s.createdAt === 'string' &&
    Array.isArray(s.staging)
  );
}

/** Parse one log line, or throw {@link IndexUnreadable}. */
export function parseLogLine(text: string): IndexedJob {
  const json = unseal(text);
  if (json === null) throw new IndexUnreadable('summary log line altered');
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new IndexUnreadable('summary log line is not JSON');
  }
  if (!isIndexedJob(value)) throw new IndexUnreadable('summary log line is not a job entry');
  return value;
}

/**
 * Write `data` at `offset` of a log and cut the file there: bytes past the recorded size
 * (left by a writer that died before moving the head) are dropped, never read as valid.
 */
export async function writeLogAt(path: string, offset: number, data: Buffer): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    handle = await open(path, 'w+');
  }
  try {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await handle.write(data, written, data.length - written, offset + written);
      written += bytesWritten;
    }
    await handle.truncate(offset + data.length);
  } finally {
    await handle.close();
  }
}

/** A fresh, unique log name (a rebuild writes a new log; readers of the old one keep theirs). */
export function newLogName(): string {
  return `summaries-${Date.now().toString(36)}-${process.pid}-${Math.random().toString(36).slice(2, 8)}.jsonl`;
}
