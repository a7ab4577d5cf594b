import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS_HASH } from './chain.js';
import { writeFileAtomic } from './daily-files.js';

/** Name of the file that records where the chain ends, beside the daily files. */
export const HEAD_FILE = 'head.json';

/**
 * Where the chain ended after the last acknowledged append. It makes removal of records
 * from the end detectable (the files alone would still form a valid, shorter chain), and
 * new records always chain from it, so a truncation stays visible after later appends.
 */
export interface ChainHead {
  /** Daily file holding the last record, or null before the first record. */
  file: string | null;
  /** Size of that file just after the last record. */
  size: number;
  /** Records in the whole chain. */
  records: number;
  /** Hash of the last record (the genesis hash before the first). */
  hash: string;
}

export const EMPTY_HEAD: ChainHead = { file: null, size: 0, records: 0, hash: GENESIS_HASH };

/** The recorded head; null when there is none yet, `corrupt` when it cannot be read. */
export async function readHead(auditDir: string): Promise<ChainHead | null | 'corrupt'> {
  let text: string;
  try {
    text = await readFile(join(auditDir, HEAD_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const head = JSON.parse(text) as Partial<ChainHead>;
    if (
      (head.file === null || typeof head.file === 'string') &&
      typeof head.size === 'number' &&
      typeof head.records === 'number' &&
      typeof head.hash === 'string' &&
      /^[0-9a-f]{64}$/.test(head.hash)
    ) {
      return { file: head.file, size: head.size, records: head.records, hash: head.hash };
    }
  } catch {
    // not JSON: corrupt, like a JSON object of the wrong shape
  }
  return 'corrupt';
}

export async function writeHead(auditDir: string, head: ChainHead, durable: boolean): Promise<void> {
  await writeFileAtomic(join(auditDir, HEAD_FILE), `${JSON.stringify({ v: 1, ...head })}\n`, durable);
}
