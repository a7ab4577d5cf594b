import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { parseRecord } from './chain.js';

/** Bytes read per step when streaming a file: big enough for few syscalls, small enough to bound memory. */
const CHUNK_BYTES = 1 << 20;

/** A run of complete lines read from a file; `base` is the file offset of `buf[0]`. */
export interface LineChunk {
  buf: Buffer;
  base: number;
}

/**
 * Stream the complete lines of `[from, to)` of a file (`to` defaults to its size when
 * opened), a chunk at a time. An unterminated tail is not yielded: it is a write still in
 * progress or cut short. A file that does not exist yields nothing.
 *
 * One read buffer is reused: a chunk is valid only until the next one is requested, so
 * consumers copy (or parse) what they keep. That keeps a scan of any length to about one
 * chunk of memory instead of leaving garbage buffers for the collector.
 */
export async function* readLineChunks(path: string, from: number, to?: number): AsyncGenerator<LineChunk> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    const end = to ?? (await handle.stat()).size;
    let buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(1, end - from)));
    let pos = from;
    /** Bytes at the front of `buf` carried over: the start of a line not yet complete. */
    let held = 0;
    while (pos < end) {
      if (held === buf.length) {
        // One line longer than the buffer: grow it (rare; records are small).
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, held);
        buf = bigger;
      }
      const { bytesRead } = await handle.read(buf, held, Math.min(buf.length - held, end - pos), pos);
      if (bytesRead === 0) break;
      const base = pos - held;
      pos += bytesRead;
      const filled = held + bytesRead;
      const lastNl = buf.lastIndexOf(0x0a, filled - 1);
      if (lastNl < 0) {
        held = filled;
        continue;
      }
      yield { buf: buf.subarray(0, lastNl + 1), base };
      // The consumer is done with the chunk: move the incomplete tail to the front.
      held = filled - (lastNl + 1);
      if (held > 0) buf.copy(buf, 0, lastNl + 1, filled);
    }
  } finally {
    await handle.close();
  }
}

/** Offsets `[start, end)` of each line of a chunk of complete lines, `end` at its `\n`. */
export function* linesOf(buf: Buffer): Generator<[start: number, end: number]> {
  let start = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    if (nl < 0) return;
    yield [start, nl];
    start = nl + 1;
  }
}

const TYPE_KEY = Buffer.from('"type":"', 'latin1');

/**
 * The event type of a record line without parsing it. Only the top-level event object has
 * a `type` key, and a JSON string cannot contain the unescaped `"type":"`, so the first hit
 * is the event's type. `firstBytes` lets callers reject most lines (`file.*`) before
 * building a string.
 */
export function eventTypeOf(line: Buffer, firstBytes?: ReadonlySet<number>): string | null {
  const at = line.indexOf(TYPE_KEY);
  if (at < 0) return null;
  const from = at + TYPE_KEY.length;
  if (firstBytes && !firstBytes.has(line[from] ?? -1)) return null;
  const end = line.indexOf(0x22, from);
  return end < 0 ? null : line.toString('latin1', from, end);
}

/**
 * What identifies a line's content cheaply: the record's own hash, or a digest of the bytes
 * when the line is not a record. Used to tell that a file still holds the line a cache saw.
 */
export function lineMark(line: Buffer): string {
  const parts = parseRecord(line);
  if (!('malformed' in parts)) return parts.hash;
  return `x${createHash('sha256').update(line).digest('hex')}`;
}
