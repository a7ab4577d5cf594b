import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditReport } from '../../store.js';
import { GENESIS_HASH, checkRecord, identifyRecord } from './chain.js';
import { listDailyFiles, readRange, splitLines } from './daily-files.js';
import { HEAD_FILE, readHead, type ChainHead } from './head.js';

/** What verification looks at: the head and the files' sizes, taken together under the mutex. */
export interface AuditSnapshot {
  head: ChainHead | null | 'corrupt';
  files: { name: string; size: number }[];
}

export async function takeSnapshot(auditDir: string): Promise<AuditSnapshot> {
  const head = await readHead(auditDir);
  const files = [];
  for (const name of await listDailyFiles(auditDir)) {
    files.push({ name, size: (await stat(join(auditDir, name))).size });
  }
  return { head, files };
}

/**
 * Walk every record of every daily file in order, checking each record's framing, its link
 * to the previous record and its own hash, then that the chain reaches the recorded head.
 * Valid records past the head are accepted: a process can die between writing a batch and
 * moving the head, and the next append adopts them.
 */
export async function verifyChain(auditDir: string, snapshot: AuditSnapshot): Promise<AuditReport> {
  const { head } = snapshot;
  if (head === 'corrupt') return bad(0, HEAD_FILE, 'the chain head file is unreadable');
  let prev = GENESIS_HASH;
  let records = 0;
  let headReached = head === null || head.records === 0;
  const linesIn = new Map<string, number>();
  for (const { name, size } of snapshot.files) {
    const chunk = await readRange(join(auditDir, name), 0, size);
    let lines = 0;
    for (const line of splitLines(chunk)) {
      const location = `${name}:${line.lineNo}`;
      if (!line.complete) return bad(records, location, 'incomplete record (no line end): write cut short or bytes removed', line.bytes);
      const check = checkRecord(line.bytes, prev);
      if (!check.ok) return bad(records, location, check.reason, line.bytes);
      prev = check.hash;
      records += 1;
      lines = line.lineNo;
      if (head !== null && records === head.records) {
        if (check.hash !== head.hash) return bad(records, location, 'record differs from the recorded chain head', line.bytes);
        headReached = true;
      }
    }
    linesIn.set(name, lines);
  }
  if (head === null && records > 0) return bad(records, HEAD_FILE, 'the chain head file is missing');
  if (!headReached && head !== null) {
    const file = head.file ?? snapshot.files.at(-1)?.name ?? 'audit';
    return bad(
      records,
      `${file}:${(linesIn.get(file) ?? 0) + 1}`,
      `chain ends after ${records} records but the head records ${head.records}: records removed from the end`,
    );
  }
  return { ok: true, records };
}

function bad(records: number, location: string, reason: string, line?: Buffer): AuditReport {
  return { ok: false, records, firstBad: { location, ...(line ? identifyRecord(line) : {}), reason } };
}
