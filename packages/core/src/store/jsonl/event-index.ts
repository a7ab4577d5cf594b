import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { KetterEvent } from '../../events.js';
import type { JobDetail, JobFilter, JobSummary } from '../../store.js';
import { filterJobs, reduceJob } from '../job-state.js';
import { parseRecord } from './chain.js';
import { listDailyFiles, readRange, splitLines } from './daily-files.js';

interface JobEntry {
  events: KetterEvent[];
  /** Position of the job's first record in the log: breaks ties between equal timestamps. */
  order: number;
  sorted: boolean;
  /** Derived state; undefined when events arrived since it was computed. */
  summary?: JobDetail | null;
  createdMs?: number;
}

/**
 * Jobs and their events, read from the daily files. Files only grow, so each refresh
 * reads just the bytes added since the previous one; a file that shrank or vanished
 * (tampering, manual cleanup) makes the index start over.
 */
export class EventIndex {
  readonly #auditDir: string;
  #offsets = new Map<string, number>();
  #jobs = new Map<string, JobEntry>();
  #records = 0;

  constructor(auditDir: string) {
    this.#auditDir = auditDir;
  }

  async refresh(): Promise<void> {
    const files = await listDailyFiles(this.#auditDir);
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(this.#auditDir, f))).size));
    const shrank = files.some((f, i) => (sizes[i] ?? 0) < (this.#offsets.get(f) ?? 0));
    const vanished = [...this.#offsets.keys()].some((f) => !files.includes(f));
    if (shrank || vanished) this.clear();
    for (const [i, file] of files.entries()) {
      const size = sizes[i] ?? 0;
      const from = this.#offsets.get(file) ?? 0;
      if (size <= from) continue;
      const chunk = await readRange(join(this.#auditDir, file), from, size);
      let offset = from;
      for (const line of splitLines(chunk, 1, from)) {
        // An unterminated tail is a batch still being written: read it next time.
        if (!line.complete) break;
        offset = line.end;
        this.#add(line.bytes);
      }
      this.#offsets.set(file, offset);
    }
  }

  clear(): void {
    this.#offsets.clear();
    this.#jobs.clear();
    this.#records = 0;
  }

  getJob(id: string): JobDetail | null {
    const entry = this.#jobs.get(id);
    if (!entry) return null;
    const job = this.#summary(entry);
    // Callers get their own copy: the cache must not change when they edit what they got.
    return job ? structuredClone({ ...job, events: entry.events }) : null;
  }

  listJobs(filter?: JobFilter): JobSummary[] {
    const rows: { job: JobDetail; createdMs: number; order: number }[] = [];
    for (const entry of this.#jobs.values()) {
      const job = this.#summary(entry);
      if (job) rows.push({ job, createdMs: entry.createdMs ?? 0, order: entry.order });
    }
    rows.sort((a, b) => b.createdMs - a.createdMs || b.order - a.order);
    return filterJobs(
      rows.map((r) => r.job),
      filter,
    ).map(({ events: _events, ...summary }) => structuredClone(summary));
  }

  #add(line: Buffer): void {
    const parts = parseRecord(line);
    // Reads do not judge integrity (verifyAudit does); a record that cannot be read is
    // skipped so one damaged line does not hide the whole history.
    if ('malformed' in parts) return;
    let event: KetterEvent;
    try {
      event = JSON.parse(parts.eventBytes.toString('utf8')) as KetterEvent;
    } catch {
      return;
    }
    if (!event || typeof event.jobId !== 'string') return;
    let entry = this.#jobs.get(event.jobId);
    if (!entry) {
      entry = { events: [], order: this.#records, sorted: true };
      this.#jobs.set(event.jobId, entry);
    }
    const last = entry.events.at(-1);
    if (last && last.seq > event.seq) entry.sorted = false;
    entry.events.push(event);
    entry.summary = undefined;
    this.#records += 1;
  }

  #summary(entry: JobEntry): JobDetail | null {
    if (entry.summary !== undefined) return entry.summary;
    if (!entry.sorted) {
      entry.events.sort((a, b) => a.seq - b.seq);
      entry.sorted = true;
    }
    const job = reduceJob(entry.events);
    // The summary keeps no copy of the events; getJob attaches them on the way out.
    entry.summary = job ? { ...job, events: [] } : null;
    entry.createdMs = job ? Date.parse(job.createdAt) : 0;
    return entry.summary;
  }
}
