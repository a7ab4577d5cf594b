import { createHash } from 'node:crypto';

/** `prev_hash` of a job's first event: nothing came before it. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * Deterministic JSON: object keys sorted, no whitespace, `undefined` members dropped.
 * jsonb reorders keys and normalises spacing, so the chain hashes this form, which
 * survives the round trip through the database unchanged.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const parts: string[] = [];
  for (const key of Object.keys(value).sort()) {
    const member = (value as Record<string, unknown>)[key];
    if (member === undefined || typeof member === 'function') continue;
    parts.push(`${JSON.stringify(key)}:${canonicalJson(member)}`);
  }
  return `{${parts.join(',')}}`;
}

/** An event row's hash: SHA-256 over the previous hash (hex) and the event's canonical JSON. */
export function eventHash(prevHash: string, canonicalEvent: string): string {
  return createHash('sha256').update(prevHash, 'latin1').update(canonicalEvent, 'utf8').digest('hex');
}
