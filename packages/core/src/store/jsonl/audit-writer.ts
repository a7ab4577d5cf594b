import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { checkRecord, encodeRecords } from './chain.js';
import { dailyFileName, listDailyFiles, readRange, splitLines } from './daily-files.js';
import { EMPTY_HEAD, readHead, writeHead, type ChainHead } from './head.js';

/** Where an appended batch landed. */
export interface WrittenBatch {
  /** Daily file the batch went to. */
  file: string;
  /** Whether this batch created that file. */
  created: boolean;
  /** Offset of the batch's first record in the file. */
  start: number;
  /** Offset just past its last record (the file's size). */
  end: number;
  /** Byte length of its last record, `\n` included. */
  lastLength: number;
  /** Hash of its last record. */
  hash: string;
}

/**
 * Append serialised events as chained records. The caller holds the audit mutex, so the
 * head read here is the true end of the chain and nobody else writes until we return.
 */
export async function appendRecords(auditDir: string, eventJsons: readonly string[], now: Date, durable: boolean): Promise<WrittenBatch> {
  const recorded = await readHead(auditDir);
  const head = await adoptUnrecorded(auditDir, recorded === 'corrupt' ? null : recorded);

  // Chain order is file-name order: never write behind the head's file, even if the clock
  // went backwards.
  let file = dailyFileName(now);
  if (head.file !== null && file < head.file) file = head.file;

  const { bytes: batch, hash: prev, lastLength } = encodeRecords(head.hash, eventJsons);

  const path = join(auditDir, file);
  const created = file !== head.file;
  const handle = await open(path, 'a');
  let size: number;
  try {
    let written = 0;
    while (written < batch.length) {
      const { bytesWritten } = await handle.write(batch, written, batch.length - written);
      written += bytesWritten;
    }
    if (durable) await handle.datasync();
    size = (await handle.stat()).size;
  } finally {
    await handle.close();
  }
  if (durable && created) await syncDir(auditDir);
  await writeHead(auditDir, { file, size, records: head.records + eventJsons.length, hash: prev }, durable);
  return { file, created, start: size - batch.length, end: size, lastLength, hash: prev };
}

/**
 * Records past the recorded head are left by a process that died between writing a batch
 * and updating the head. Adopt those that chain correctly; drop an unterminated last line
 * (a write cut short, never acknowledged). Anything else past the head is left in place
 * for `verifyAudit` to report.
 */
async function adoptUnrecorded(auditDir: string, recorded: ChainHead | null): Promise<ChainHead> {
  const head = { ...(recorded ?? EMPTY_HEAD) };
  const files = await listDailyFiles(auditDir);
  const pending = head.file === null ? files : files.filter((f) => f >= (head.file as string));
  for (const [i, file] of pending.entries()) {
    const from = file === recorded?.file ? recorded.size : 0;
    const path = join(auditDir, file);
    const chunk = await readRange(path, from);
    for (const line of splitLines(chunk, 1, from)) {
      if (!line.complete) {
        if (i === pending.length - 1) await truncate(path, line.end - line.bytes.length);
        return head;
      }
      const check = checkRecord(line.bytes, head.hash);
      if (!check.ok) return head;
      head.file = file;
      head.size = line.end;
      head.records += 1;
      head.hash = check.hash;
    }
  }
  return head;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the data file itself is synced.
  } finally {
    await handle.close();
  }
}
