import { mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { KetterEvent } from '../../events.js';
import type { JobStatus } from '../../store.js';
import { applyEvent, reduceJob } from '../job-state.js';
import { parseRecord } from './chain.js';
import {
  IndexUnreadable,
  newLogName,
  parseLogLine,
  seal,
  writeIndexHead,
  writeLogAt,
  INDEX_VERSION,
  type IndexBase,
  type IndexedJob,
  type LogRef,
} from './index-files.js';
import { eventTypeOf, lineMark, linesOf, readLineChunks } from './line-reader.js';
import { TRAIL_START, type TrailPosition } from './trail-position.js';

/** Events that change a job's summary (see `applyEvent`); all others leave the index alone. */
export const SUMMARY_EVENTS: ReadonlySet<string> = new Set([
  'job.created',
  'job.started',
  'plan.decided',
  'job.succeeded',
  'job.failed',
  'job.cancelled',
  'job.interrupted',
  'job.committed',
  'preflight.passed',
  'staging.removed',
]);
/** First bytes of those types (`j`, `p`, `s`): most lines (`file.*`) are rejected on one byte. */
const SUMMARY_FIRST_BYTES: ReadonlySet<number> = new Set([0x6a, 0x70, 0x73]);
const UNFINISHED: ReadonlySet<JobStatus> = new Set(['created', 'running']);
/**
 * Jobs kept in the head at most; beyond, the oldest go to the log only (jobs whose runs died
 * unrecorded, staging no recovery could reach).
 */
const MAX_ACTIVE = 1000;
/** A rebuild writes finished jobs to its log once this many are held, so its memory stays bounded. */
const REBUILD_FLUSH_AT = 2000;

/** Whether the head keeps a job: recovery or a resume may need it. */
function keptInHead(entry: IndexedJob): boolean {
  return UNFINISHED.has(entry.s.status) || entry.s.staging.length > 0;
}

/**
 * One pass of work on the index: start from its head (or from nothing, to rebuild it),
 * apply the summary-changing events of the trail past its position, then commit (under
 * the audit mutex, when nobody changed the head meanwhile) or just answer from memory.
 */
export class IndexSession {
  readonly base: IndexBase;
  readonly rebuilding: boolean;
  pos: TrailPosition;
  log: LogRef | null;
  readonly active: Map<string, IndexedJob>;
  /** See {@link IndexHead.spilled}. */
  spilled: boolean;
  /** Entries changed by this session, not yet in the log or head. */
  readonly changed = new Map<string, IndexedJob>();
  readonly #jobsDir: string;
  readonly #auditDir: string;
  /** Ids with summary events but no `job.created` seen: not jobs (reduceJob would say null). */
  readonly #notJobs = new Set<string>();
  /** A log this session created for a rebuild; removed unless the session commits it. */
  #ownLog: string | null = null;
  #logWritable = true;
  #committed = false;
  /** A rebuild's changed entries already in its log, with the line number they were written at. */
  readonly #logged = new Map<IndexedJob, number>();
  #flushAt = REBUILD_FLUSH_AT;

  private constructor(jobsDir: string, auditDir: string, base: IndexBase, rebuild: boolean) {
    this.#jobsDir = jobsDir;
    this.#auditDir = auditDir;
    this.base = base;
    this.rebuilding = rebuild || base.head === null;
    const head = this.rebuilding ? null : base.head;
    this.pos = head ? { ...head.trail } : { ...TRAIL_START };
    this.log = head ? head.log : null;
    this.active = new Map((head?.active ?? []).map((e) => [e.s.id, e]));
    this.spilled = head?.spilled ?? false;
  }

  /** Continue from a head known to hold against the trail. */
  static resume(jobsDir: string, auditDir: string, base: IndexBase): IndexSession {
    return new IndexSession(jobsDir, auditDir, base, false);
  }

  /** Start over from the first record (the head is missing, corrupt or no longer matches the trail). */
  static rebuild(jobsDir: string, auditDir: string, base: IndexBase): IndexSession {
    return new IndexSession(jobsDir, auditDir, base, true);
  }

  /**
   * Apply the trail past the position, streaming; stop before `until` when given. Lines of
   * other events are skipped on their type, without parsing.
   */
  async catchUp(files: readonly string[], until?: { file: string; size: number }): Promise<void> {
    const first = this.pos.file === null ? 0 : files.indexOf(this.pos.file);
    for (let i = Math.max(0, first); i < files.length; i++) {
      const file = files[i]!;
      if (until && file > until.file) break;
      const from = file === this.pos.file ? this.pos.size : 0;
      const to = until && file === until.file ? until.size : undefined;
      if (to !== undefined && to <= from) continue;
      for await (const { buf, base } of readLineChunks(join(this.#auditDir, file), from, to)) {
        let records = this.pos.records;
        let last: [number, number] | null = null;
        for (const span of linesOf(buf)) {
          const line = buf.subarray(span[0], span[1]);
          const type = eventTypeOf(line, SUMMARY_FIRST_BYTES);
          if (type !== null && SUMMARY_EVENTS.has(type)) {
            const event = eventOf(line);
            if (event) await this.apply(event, records, file);
          }
          records += 1;
          last = span;
        }
        if (last) {
          this.pos = {
            files: i + 1,
            first: files[0]!,
            file,
            size: base + last[1] + 1,
            lastStart: base + last[0],
            records,
            mark: lineMark(buf.subarray(last[0], last[1])),
          };
        }
        if (this.rebuilding && this.changed.size >= this.#flushAt) await this.#flushFinished();
      }
    }
  }

  /** Apply one event found at line `recordNo` of the trail, in daily file `file`. */
  async apply(event: KetterEvent, recordNo: number, file: string): Promise<void> {
    if (!SUMMARY_EVENTS.has(event.type)) return;
    const id = event.jobId;
    if (event.type === 'job.created') {
      // A second job.created of a known job changes nothing, as in reduceJob.
      if (this.changed.has(id) || this.active.has(id)) return;
      const job = reduceJob([event]);
      if (!job) return;
      const { events: _events, ...s } = job;
      this.changed.set(id, { s, o: recordNo, f: file, r: recordNo });
      this.#notJobs.delete(id);
      return;
    }
    const entry = await this.lookup(id);
    if (!entry) return;
    applyEvent(entry.s, event);
    entry.r = recordNo;
    this.changed.set(id, entry);
  }

  /** The newest entry of a job: changed here, unfinished in the head, or (rarely) in the log. */
  async lookup(id: string): Promise<IndexedJob | undefined> {
    const known = this.changed.get(id) ?? this.active.get(id);
    if (known) return known;
    if (this.#notJobs.has(id)) return undefined;
    const found = await this.#findInLog(id);
    if (!found) this.#notJobs.add(id);
    return found;
  }

  async #findInLog(id: string): Promise<IndexedJob | undefined> {
    if (!this.log || this.log.size === 0) return undefined;
    const needle = Buffer.from(`"id":${JSON.stringify(id)}`, 'utf8');
    let best: IndexedJob | undefined;
    for await (const { buf } of this.readLog()) {
      let at = buf.indexOf(needle);
      while (at >= 0) {
        const start = buf.lastIndexOf(0x0a, at) + 1;
        const end = buf.indexOf(0x0a, at);
        const entry = parseLogLine(buf.toString('utf8', start, end));
        if (entry.s.id === id && (!best || entry.r > best.r)) best = entry;
        at = buf.indexOf(needle, end);
      }
    }
    return best;
  }

  /** Stream the valid part of the log (from byte `from`, a line start); a log shorter than recorded is unreadable. */
  async *readLog(from = 0): AsyncGenerator<{ buf: Buffer; base: number }> {
    const log = this.log;
    if (!log || log.size <= from) return;
    let seen = from;
    try {
      for await (const chunk of readLineChunks(join(this.#jobsDir, log.name), from, log.size)) {
        seen = chunk.base + chunk.buf.length;
        yield chunk;
      }
    } catch (error) {
      if (error instanceof IndexUnreadable) throw error;
      throw new IndexUnreadable(`summary log unreadable: ${(error as Error).message}`);
    }
    if (seen !== log.size) throw new IndexUnreadable('summary log shorter than recorded');
  }

  /**
   * Write the session's changes: finished jobs appended to the log, unfinished ones in the
   * head, with the new position. The caller holds the audit mutex and has checked that the
   * head is still the one this session started from.
   */
  async commit(): Promise<void> {
    const active = new Map(this.active);
    const finished: IndexedJob[] = [];
    for (const [id, entry] of this.changed) {
      if (keptInHead(entry)) active.set(id, entry);
      else active.delete(id);
      if (!UNFINISHED.has(entry.s.status) && this.#logged.get(entry) !== entry.r) finished.push(entry);
    }
    if (active.size > MAX_ACTIVE) {
      const oldest = [...active.values()].sort((a, b) => a.r - b.r).slice(0, active.size - MAX_ACTIVE);
      for (const entry of oldest) {
        active.delete(entry.s.id);
        if (UNFINISHED.has(entry.s.status)) finished.push(entry);
      }
      this.spilled = true;
    }
    await mkdir(this.#jobsDir, { recursive: true });
    if (finished.length > 0 || this.rebuilding) await this.#appendToLog(finished);
    if (!this.#logWritable) throw new Error('the summary log cannot be written');
    await writeIndexHead(this.#jobsDir, { v: INDEX_VERSION, trail: this.pos, log: this.log, active: [...active.values()], spilled: this.spilled });
    this.#committed = true;
    const previous = this.base.head?.log?.name;
    if (previous && previous !== this.log?.name) await unlink(join(this.#jobsDir, previous)).catch(() => undefined);
  }

  /** Remove what an uncommitted rebuild wrote. */
  async dispose(): Promise<void> {
    if (this.#ownLog && !this.#committed) await unlink(join(this.#jobsDir, this.#ownLog)).catch(() => undefined);
  }

  async #flushFinished(): Promise<void> {
    if (!this.#logWritable) return;
    const finished = [...this.changed.values()].filter((e) => !UNFINISHED.has(e.s.status) && this.#logged.get(e) !== e.r);
    await this.#appendToLog(finished);
    if (!this.#logWritable) return;
    for (const e of finished) {
      // Those with staging left stay for the head.
      if (keptInHead(e)) this.#logged.set(e, e.r);
      else this.changed.delete(e.s.id);
    }
    this.#flushAt = this.changed.size + REBUILD_FLUSH_AT;
  }

  async #appendToLog(entries: readonly IndexedJob[]): Promise<void> {
    if (!this.#logWritable) return;
    if (this.rebuilding && this.#ownLog === null) {
      // A rebuild never writes into the log others may be reading.
      this.#ownLog = newLogName();
      this.log = { name: this.#ownLog, size: 0 };
    }
    this.log ??= { name: newLogName(), size: 0 };
    const data = Buffer.from(entries.map((e) => `${seal(JSON.stringify(e))}\n`).join(''), 'utf8');
    try {
      await mkdir(this.#jobsDir, { recursive: true });
      await writeLogAt(join(this.#jobsDir, this.log.name), this.log.size, data);
    } catch {
      // A read-only store: answer from memory, keep everything there.
      this.#logWritable = false;
      if (this.#ownLog !== null && this.log.size === 0) {
        this.log = null;
        this.#ownLog = null;
      }
      return;
    }
    this.log = { name: this.log.name, size: this.log.size + data.length };
  }
}

/** The event of a record line, or null when the line is not a readable record. */
export function eventOf(line: Buffer): KetterEvent | null {
  const parts = parseRecord(line);
  // Reads do not judge integrity (verifyAudit does): an unreadable line is skipped.
  if ('malformed' in parts) return null;
  try {
    const event = JSON.parse(parts.eventBytes.toString('utf8')) as KetterEvent;
    if (!event || typeof event !== 'object' || typeof event.jobId !== 'string' || typeof event.type !== 'string' || typeof event.seq !== 'number') {
      return null;
    }
    return event;
  } catch {
    return null;
  }
}

/** Bytes of the trail between a position and a point (file, offset) at or after it. */
export async function bytesBetween(auditDir: string, files: readonly string[], pos: TrailPosition, to: { file: string; size: number }): Promise<number> {
  if (pos.file === to.file) return to.size - pos.size;
  let total = to.size;
  for (const file of files) {
    if (file >= to.file) break;
    if (pos.file !== null && file < pos.file) continue;
    const size = (await stat(join(auditDir, file)).catch(() => ({ size: 0 }))).size;
    total += file === pos.file ? size - pos.size : size;
  }
  return total;
}
