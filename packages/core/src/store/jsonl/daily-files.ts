import { open, readdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const DAILY_FILE = /^events-\d{4}-\d{2}-\d{2}\.jsonl$/;

/** The daily file a record written at `date` goes to (UTC day). */
export function dailyFileName(date: Date): string {
  return `events-${date.toISOString().slice(0, 10)}.jsonl`;
}

/** Daily files in chain order (their names sort by day). */
export async function listDailyFiles(auditDir: string): Promise<string[]> {
  const names = await readdir(auditDir);
  return names.filter((n) => DAILY_FILE.test(n)).sort();
}

/** One line of a file, without its `\n`; `complete` is false for an unterminated tail. */
export interface Line {
  bytes: Buffer;
  /** 1-based line number within the file. */
  lineNo: number;
  /** Offset just past the line's `\n` (or past its last byte when incomplete). */
  end: number;
  complete: boolean;
}

/** Split a chunk read from `firstLineNo`'s start into lines. */
export function* splitLines(chunk: Buffer, firstLineNo = 1, baseOffset = 0): Generator<Line> {
  let start = 0;
  let lineNo = firstLineNo;
  while (start < chunk.length) {
    const nl = chunk.indexOf(0x0a, start);
    if (nl < 0) {
      yield { bytes: chunk.subarray(start), lineNo, end: baseOffset + chunk.length, complete: false };
      return;
    }
    yield { bytes: chunk.subarray(start, nl), lineNo, end: baseOffset + nl + 1, complete: true };
    start = nl + 1;
    lineNo += 1;
  }
}

/** Read `[from, to)` of a file; a file that is gone or shorter yields what exists. */
export async function readRange(path: string, from: number, to?: number): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw error;
  }
  try {
    const end = to ?? (await handle.stat()).size;
    const length = Math.max(0, end - from);
    const buf = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await handle.read(buf, read, length - read, from + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return buf.subarray(0, read);
  } finally {
    await handle.close();
  }
}

/** Replace a small file atomically: readers see the old or the new content, never a mix. */
export async function writeFileAtomic(path: string, data: string, durable: boolean): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  await writeFile(tmp, data, { flush: durable });
  await rename(tmp, path);
}
