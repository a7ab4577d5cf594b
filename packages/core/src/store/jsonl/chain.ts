import { createHash, hash as digestOf } from 'node:crypto';

/** The `prev` of the very first record: nothing came before it. */
export const GENESIS_HASH = '0'.repeat(64);

// A record line is itself valid JSON, so SIEM shippers can ingest the files as they are:
//   {"prev":"<64 hex>","hash":"<64 hex>","event":<event JSON>}\n
// The two hashes have a fixed width, so the event's bytes start at a fixed offset and
// verification hashes exactly the bytes on disk, never a re-serialisation of them.
const PREFIX_TEXT = '{"prev":"';
const AFTER_PREV_TEXT = '","hash":"';
const AFTER_HASH_TEXT = '","event":';
const PREFIX = Buffer.from(PREFIX_TEXT, 'latin1');
const AFTER_PREV = Buffer.from(AFTER_PREV_TEXT, 'latin1');
const AFTER_HASH = Buffer.from(AFTER_HASH_TEXT, 'latin1');
const SUFFIX = 0x7d; // '}'
const HASH_HEX = 64;
const PREV_AT = PREFIX.length;
const HASH_AT = PREV_AT + HASH_HEX + AFTER_PREV.length;
const EVENT_AT = HASH_AT + HASH_HEX + AFTER_HASH.length;
const HEX = /^[0-9a-f]{64}$/;

/** A record's hash: SHA-256 over the previous record's hash (hex) and the event's exact bytes. */
export function recordHash(prev: string, eventBytes: Uint8Array): string {
  return createHash('sha256').update(prev, 'latin1').update(eventBytes).digest('hex');
}

/** Encode one event (already serialised, no newline) as a chained record line ending in `\n`. */
export function encodeRecord(prev: string, eventJson: string): { line: Buffer; hash: string } {
  const { bytes, hash } = encodeRecords(prev, [eventJson]);
  return { line: bytes, hash };
}

/**
 * Encode a batch of serialised events as consecutive chained records: their bytes, the hash
 * of the last one and its byte length. Built as one string and encoded once — per record,
 * a buffer for each part cost more than hashing it.
 */
export function encodeRecords(prev: string, eventJsons: readonly string[]): { bytes: Buffer; hash: string; lastLength: number } {
  let text = '';
  let line = '';
  for (const json of eventJsons) {
    // recordHash(prev, Buffer.from(json, 'utf8')) in one call: `prev` is hex, the same bytes in UTF-8.
    const hash = digestOf('sha256', prev + json, 'hex');
    line = `${PREFIX_TEXT}${prev}${AFTER_PREV_TEXT}${hash}${AFTER_HASH_TEXT}${json}}\n`;
    text += line;
    prev = hash;
  }
  return { bytes: Buffer.from(text, 'utf8'), hash: prev, lastLength: Buffer.byteLength(line, 'utf8') };
}

/** The parts of a record line, before any check of its hashes. */
export interface RecordParts {
  prev: string;
  hash: string;
  eventBytes: Buffer;
}

/** Split a record line (without its `\n`) into its parts, or say why it is not a record. */
export function parseRecord(line: Buffer): RecordParts | { malformed: string } {
  if (line.length < EVENT_AT + 3) return { malformed: 'line too short to be a record' };
  if (!startsWithAt(line, PREFIX, 0) || !startsWithAt(line, AFTER_PREV, PREV_AT + HASH_HEX) || !startsWithAt(line, AFTER_HASH, HASH_AT + HASH_HEX)) {
    return { malformed: 'record framing altered' };
  }
  if (line[line.length - 1] !== SUFFIX) return { malformed: 'record does not end with }' };
  const prev = line.toString('latin1', PREV_AT, PREV_AT + HASH_HEX);
  const hash = line.toString('latin1', HASH_AT, HASH_AT + HASH_HEX);
  if (!HEX.test(prev)) return { malformed: 'prev is not a SHA-256 hex digest' };
  if (!HEX.test(hash)) return { malformed: 'hash is not a SHA-256 hex digest' };
  return { prev, hash, eventBytes: line.subarray(EVENT_AT, line.length - 1) };
}

/** Outcome of checking one record against the chain so far. */
export type RecordCheck = { ok: true; hash: string; eventBytes: Buffer } | { ok: false; reason: string };

/** Check one record line: framing, link to the previous record, and its own hash. */
export function checkRecord(line: Buffer, expectedPrev: string): RecordCheck {
  const parts = parseRecord(line);
  if ('malformed' in parts) return { ok: false, reason: parts.malformed };
  if (parts.prev !== expectedPrev) {
    return { ok: false, reason: 'prev does not match the previous record (record missing, reordered or altered)' };
  }
  if (recordHash(parts.prev, parts.eventBytes) !== parts.hash) {
    return { ok: false, reason: 'hash does not match the record content (record altered)' };
  }
  return { ok: true, hash: parts.hash, eventBytes: parts.eventBytes };
}

/**
 * Best-effort event and job ids of a record, for reports. Tries JSON first and falls back
 * to a textual search, so an altered record is still named when its ids survived.
 */
export function identifyRecord(line: Buffer): { eventId?: string; jobId?: string } {
  const text = line.toString('utf8');
  try {
    const parsed: unknown = JSON.parse(text);
    const event = parsed && typeof parsed === 'object' && 'event' in parsed ? (parsed as { event: unknown }).event : undefined;
    if (event && typeof event === 'object') {
      const { id, jobId } = event as { id?: unknown; jobId?: unknown };
      return {
        ...(typeof id === 'string' ? { eventId: id } : {}),
        ...(typeof jobId === 'string' ? { jobId } : {}),
      };
    }
  } catch {
    // fall through to the textual search
  }
  const eventId = /"id":"([^"\\]+)"/.exec(text)?.[1];
  const jobId = /"jobId":"([^"\\]+)"/.exec(text)?.[1];
  return { ...(eventId ? { eventId } : {}), ...(jobId ? { jobId } : {}) };
}

function startsWithAt(buf: Buffer, part: Buffer, at: number): boolean {
  return buf.compare(part, 0, part.length, at, at + part.length) === 0;
}
