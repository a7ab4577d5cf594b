import { join } from 'node:path';
import type { KetterEvent } from '../../events.js';
import type { JobDetail } from '../../store.js';
import { reduceJob } from '../job-state.js';
import { listDailyFiles } from './daily-files.js';
import { eventOf } from './index-session.js';
import { readLineChunks } from './line-reader.js';

/**
 * One job with its events, read by streaming the daily files from `startFile` (or the
 * first): only lines holding the job's id are parsed, so memory follows the job's size,
 * not the history's.
 */
export async function readJob(auditDir: string, id: string, startFile: string | null): Promise<JobDetail | null> {
  // JSON.stringify writes the id exactly as the record holds it (same escaping).
  const needle = Buffer.from(`"jobId":${JSON.stringify(id)}`, 'utf8');
  const events: KetterEvent[] = [];
  let sorted = true;
  for (const file of await listDailyFiles(auditDir)) {
    if (startFile !== null && file < startFile) continue;
    for await (const { buf } of readLineChunks(join(auditDir, file), 0)) {
      let at = buf.indexOf(needle);
      while (at >= 0) {
        const start = buf.lastIndexOf(0x0a, at) + 1;
        const end = buf.indexOf(0x0a, at);
        const event = eventOf(buf.subarray(start, end));
        if (event && event.jobId === id) {
          const last = events.at(-1);
          if (last && last.seq > event.seq) sorted = false;
          events.push(event);
        }
        at = buf.indexOf(needle, end);
      }
    }
  }
  if (!sorted) events.sort((a, b) => a.seq - b.seq);
  return reduceJob(events);
}
