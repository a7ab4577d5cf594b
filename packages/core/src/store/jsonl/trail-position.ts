import { join } from 'node:path';
import { readRange } from './daily-files.js';
import { lineMark } from './line-reader.js';

/**
 * A point in the audit trail, just past a line: everything before it (earlier daily files
 * whole, `file` up to `size`) is covered. Enough is kept to tell cheaply whether the trail
 * still starts with what was covered: the files before it, and the mark of the line that
 * ends there.
 */
export interface TrailPosition {
  /** Daily files up to and including `file`: catches a file removed or inserted before it. */
  files: number;
  /** The first daily file. */
  first: string | null;
  /** Daily file of the last covered line, or null when nothing is covered. */
  file: string | null;
  /** Offset just past that line. */
  size: number;
  /** Offset where that line starts. */
  lastStart: number;
  /** Lines covered; a line's number (from 0) orders jobs created at the same instant. */
  records: number;
  /** {@link lineMark} of the last covered line. */
  mark: string;
}

export const TRAIL_START: TrailPosition = { files: 0, first: null, file: null, size: 0, lastStart: 0, records: 0, mark: '' };

export function samePosition(a: TrailPosition, b: TrailPosition): boolean {
  return a.file === b.file && a.size === b.size && a.mark === b.mark && a.records === b.records && a.files === b.files && a.first === b.first;
}

export function isTrailPosition(value: unknown): value is TrailPosition {
  if (!value || typeof value !== 'object') return false;
  const p = value as Record<string, unknown>;
  return (
    typeof p.files === 'number' &&
    (p.first === null || typeof p.first === 'string') &&
    (p.file === null || typeof p.file === 'string') &&
    typeof p.size === 'number' &&
    typeof p.lastStart === 'number' &&
    typeof p.records === 'number' &&
    typeof p.mark === 'string'
  );
}

/**
 * Whether the trail (its daily files `files`, in order) still begins with what `pos`
 * covers: same files before it, and the line ending at `pos` unchanged. Files only grow,
 * so this is what an older version appending, a crash or another process leave intact,
 * and what removing, truncating or replacing files breaks.
 */
export async function positionHolds(auditDir: string, pos: TrailPosition, files: readonly string[]): Promise<boolean> {
  if (pos.file === null) return pos.records === 0 && pos.size === 0 && pos.files === 0;
  const i = files.indexOf(pos.file);
  if (i < 0 || i + 1 !== pos.files || files[0] !== pos.first) return false;
  if (pos.lastStart < 0 || pos.size <= pos.lastStart) return false;
  // One byte before the line too: it must start a line, not sit inside a longer one.
  const from = pos.lastStart === 0 ? 0 : pos.lastStart - 1;
  const bytes = await readRange(join(auditDir, pos.file), from, pos.size);
  if (bytes.length !== pos.size - from || bytes[bytes.length - 1] !== 0x0a) return false;
  if (pos.lastStart > 0 && bytes[0] !== 0x0a) return false;
  return lineMark(bytes.subarray(pos.lastStart - from, bytes.length - 1)) === pos.mark;
}
