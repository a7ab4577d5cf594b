// Where a Ketter job's time went, from the timestamps of its recorded events
// (`ketter jobs show ID --json`): for each event type, in the order each last occurred, the
// time since the previous one's last occurrence. Per-file events (file.copied, file.verified)
// thus read as "until the last file was copied / verified".
import { execFileSync } from 'node:child_process';

/** @returns {Array<{ phase: string, seconds: number, count: number }>} */
export function phaseBreakdown(cli, configPath, jobId) {
  const out = execFileSync(process.execPath, [cli, '--config', configPath, 'jobs', 'show', jobId, '--json'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const job = JSON.parse(out);
  const events = (job.events ?? []).filter((e) => e.type !== 'job.progress').sort((a, b) => a.seq - b.seq);
  if (events.length === 0) return [];
  const last = new Map();
  const count = new Map();
  for (const e of events) {
    last.set(e.type, Date.parse(e.ts));
    count.set(e.type, (count.get(e.type) ?? 0) + 1);
  }
  const ordered = [...last.entries()].sort((a, b) => a[1] - b[1]);
  const phases = [];
  let prev = Date.parse(events[0].ts);
  for (const [type, ts] of ordered) {
    phases.push({ phase: count.get(type) > 1 ? `${type}×${count.get(type)}` : type, seconds: (ts - prev) / 1000, count: count.get(type) });
    prev = ts;
  }
  return phases.filter((p) => p.phase !== events[0].type);
}
