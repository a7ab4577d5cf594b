import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { KetterEvent } from '../../events.js';
import type { JobFilter, JobSummary } from '../../store.js';
import { filterJobs } from '../job-state.js';
import type { WrittenBatch } from './audit-writer.js';
import { listDailyFiles } from './daily-files.js';
import { INDEX_DIR, IndexUnreadable, parseLogLine, readIndexBase, readIndexRaw, writeIndexHead, type IndexBase, type IndexedJob } from './index-files.js';
import { bytesBetween, IndexSession, SUMMARY_EVENTS } from './index-session.js';
import { linesOf } from './line-reader.js';
import { positionHolds, samePosition, type TrailPosition } from './trail-position.js';

/** An append scans at most this much trail the index has not seen (under the mutex); more is left to readers. */
const WRITER_GAP_BYTES = 64 << 20;
/** Records of other events after which the head's position is moved anyway, bounding what readers scan. */
const CLEAN_LAG_RECORDS = 10_000;
/** A reader that had to scan this many records past the index saves its work. */
const READER_SAVE_RECORDS = 10_000;

/** What listJobs keeps per job while reading the log: the sort and filter keys, and where the line is. */
interface Row {
  id: string;
  r: number;
  createdMs: number;
  o: number;
  status: JobSummary['status'];
  mode: JobSummary['mode'];
  strategy: JobSummary['strategy'];
  staging: readonly string[];
  /** Held in memory (head or session), or found at `off`/`len` in the log. */
  entry?: IndexedJob;
  off?: number;
  len?: number;
}

/**
 * The persisted job summary index under `dir/jobs/`: a head (`index.json`: the trail
 * position it is valid up to, and the unfinished jobs) and a log of finished jobs' summaries
 * (`summaries-*.jsonl`). It is a cache derived from the audit trail, never evidence: when
 * missing, corrupt or not matching the trail it is rebuilt by streaming the trail, and
 * records appended past its position (a crash, another version) are applied on reading.
 */
export class SummaryIndex {
  readonly #jobsDir: string;
  readonly #auditDir: string;
  readonly #withMutex: <T>(fn: () => Promise<T>) => Promise<T>;
  /**
   * Set when this process's appends are known to follow the index position with no
   * summary-changing event in between; lets it move the position without reading the trail.
   */
  #clean: { from: TrailPosition; to: TrailPosition } | null = null;
  /**
   * The log's rows as parsed by this process, newest per job, for its first `size` bytes.
   * Bytes below a recorded size never change under the same log name (appends go past it;
   * a rebuild writes a new log), so a later listing parses only what the log gained, and
   * listings made at the same time share one parse.
   */
  #logRows: { name: string; size: number; rows: Promise<Map<string, Row>> } | null = null;

  constructor(storeDir: string, auditDir: string, withMutex: <T>(fn: () => Promise<T>) => Promise<T>) {
    this.#jobsDir = join(storeDir, INDEX_DIR);
    this.#auditDir = auditDir;
    this.#withMutex = withMutex;
  }

  reset(): void {
    this.#clean = null;
    this.#logRows = null;
  }

  /** Jobs most recent first, filtered, from the index (brought up to date first). */
  async list(filter?: JobFilter): Promise<JobSummary[]> {
    let distrust: string | null | undefined;
    for (let attempt = 0; ; attempt++) {
      const session = await this.#readySession(distrust);
      try {
        const logRows = answersFromHead(session, filter) ? NO_ROWS : await this.#rowsOfLog(session);
        return await listFrom(session, logRows, this.#jobsDir, filter);
      } catch (error) {
        if (!(error instanceof IndexUnreadable) || attempt >= 2) throw error;
        // Read again: a rebuild may have replaced the log; if the head is the same, rebuild.
        distrust = session.base.raw;
      } finally {
        await session.dispose();
      }
    }
  }

  /**
   * The daily file a job's events start in, or null to read from the first file. A job
   * the index does not know was created after its position, if at all.
   */
  async startFile(id: string): Promise<string | null> {
    try {
      const base = await readIndexBase(this.#jobsDir);
      if (!base.head) return null;
      const files = await listDailyFiles(this.#auditDir);
      if (!(await positionHolds(this.#auditDir, base.head.trail, files))) return null;
      const entry = await IndexSession.resume(this.#jobsDir, this.#auditDir, base).lookup(id);
      return entry?.f ?? base.head.trail.file;
    } catch {
      return null;
    }
  }

  /**
   * Bring the index past a batch just appended. The caller holds the audit mutex. Only
   * batches with summary-changing events touch the files; failures are left for the next
   * reader to repair (the batch itself is already stored).
   */
  async afterAppend(events: readonly KetterEvent[], written: WrittenBatch): Promise<void> {
    if (!events.some((e) => SUMMARY_EVENTS.has(e.type))) {
      await this.#extendClean(events.length, written);
      return;
    }
    const clean = this.#clean;
    this.#clean = null;
    const base = await readIndexBase(this.#jobsDir);
    const files = await listDailyFiles(this.#auditDir);
    const holds = base.head !== null && (await positionHolds(this.#auditDir, base.head.trail, files));
    const session = holds ? IndexSession.resume(this.#jobsDir, this.#auditDir, base) : IndexSession.rebuild(this.#jobsDir, this.#auditDir, base);
    try {
      const until = { file: written.file, size: written.start };
      // This process wrote everything since the index's position, none of it summary-changing: no need to read it.
      if (holds && clean && samePosition(session.pos, clean.from) && clean.to.file === until.file && clean.to.size === until.size) {
        session.pos = { ...clean.to };
      }
      // A long history the index has not seen is rebuilt by a reader, outside the mutex.
      if ((await bytesBetween(this.#auditDir, files, session.pos, until)) > WRITER_GAP_BYTES) return;
      await session.catchUp(files, until);
      let recordNo = session.pos.records;
      for (const event of events) await session.apply(event, recordNo++, written.file);
      session.pos = {
        files: files.indexOf(written.file) + 1,
        first: files[0] ?? written.file,
        file: written.file,
        size: written.end,
        lastStart: written.end - written.lastLength,
        records: recordNo,
        mark: written.hash,
      };
      await session.commit();
      this.#clean = { from: session.pos, to: session.pos };
    } finally {
      await session.dispose();
    }
  }

  async #extendClean(count: number, written: WrittenBatch): Promise<void> {
    const clean = this.#clean;
    if (!clean || clean.to.file !== written.file || clean.to.size !== written.start) {
      this.#clean = null;
      return;
    }
    clean.to = {
      ...clean.to,
      size: written.end,
      lastStart: written.end - written.lastLength,
      records: clean.to.records + count,
      mark: written.hash,
    };
    if (clean.to.records - clean.from.records < CLEAN_LAG_RECORDS) return;
    const base = await readIndexBase(this.#jobsDir);
    if (!base.head || !samePosition(base.head.trail, clean.from)) {
      this.#clean = null;
      return;
    }
    await writeIndexHead(this.#jobsDir, { ...base.head, trail: clean.to });
    clean.from = clean.to;
  }

  /** The newest row per job in the session's log, parsed once per process and then only as the log grows. */
  #rowsOfLog(session: IndexSession): Promise<Map<string, Row>> {
    const log = session.log;
    if (!log || log.size === 0) return Promise.resolve(new Map());
    const cached = this.#logRows;
    if (cached?.name === log.name && cached.size === log.size) return cached.rows;
    const from = cached?.name === log.name && cached.size < log.size ? cached : null;
    const rows = (async () => {
      const parsed = new Map(from ? await from.rows : []);
      for await (const { buf, base } of session.readLog(from?.size ?? 0)) {
        for (const [start, end] of linesOf(buf)) {
          offerRow(parsed, { ...rowKeys(parseLogLine(buf.toString('utf8', start, end))), off: base + start, len: end - start });
        }
      }
      return parsed;
    })();
    this.#logRows = { name: log.name, size: log.size, rows };
    // A failed parse (an altered or rewritten log) is never served again.
    rows.catch(() => {
      if (this.#logRows?.rows === rows) this.#logRows = null;
    });
    return rows;
  }

  /** A session holding the index as of now: resumed or rebuilt, caught up, saved when worth it. */
  async #readySession(distrust: string | null | undefined): Promise<IndexSession> {
    const base = await readIndexBase(this.#jobsDir);
    const files = await listDailyFiles(this.#auditDir);
    const trusted = base.head !== null && (distrust === undefined || base.raw !== distrust);
    const holds = trusted && (await positionHolds(this.#auditDir, base.head!.trail, files));
    const session = holds ? IndexSession.resume(this.#jobsDir, this.#auditDir, base) : IndexSession.rebuild(this.#jobsDir, this.#auditDir, base);
    const from = session.pos.records;
    try {
      await session.catchUp(files);
    } catch (error) {
      await session.dispose();
      throw error;
    }
    if (session.rebuilding || session.changed.size > 0 || session.pos.records - from >= READER_SAVE_RECORDS) await this.#save(session);
    return session;
  }

  /** Commit a reader's session unless the head changed meanwhile; a cache, so failures are ignored. */
  async #save(session: IndexSession): Promise<void> {
    try {
      await this.#withMutex(async () => {
        if ((await readIndexRaw(this.#jobsDir)) === session.base.raw) await session.commit();
      });
    } catch {
      // Read-only store, mutex busy...: the answer is computed all the same.
    }
  }
}

const NO_ROWS: ReadonlyMap<string, Row> = new Map();

/**
 * Whether every job the filter can match is held in the head (or this session): unfinished
 * jobs and jobs with staging left are, unless more of them than the head keeps ever
 * existed. Recovery and resume ask only for those, so a transfer never reads the log.
 */
function answersFromHead(session: IndexSession, filter: JobFilter | undefined): boolean {
  if (session.spilled || !filter) return false;
  return filter.withStaging === true || filter.status === 'created' || filter.status === 'running';
}

/** Keep the newest row per job. */
function offerRow(rows: Map<string, Row>, row: Row): void {
  const known = rows.get(row.id);
  if (!known || row.r >= known.r) rows.set(row.id, row);
}

/** Answer listJobs from a session: the log's rows, overridden by newer entries held in memory. */
async function listFrom(session: IndexSession, logRows: ReadonlyMap<string, Row>, jobsDir: string, filter?: JobFilter): Promise<JobSummary[]> {
  const rows = new Map(logRows);
  for (const e of session.active.values()) offerRow(rows, { ...rowKeys(e), entry: e });
  for (const e of session.changed.values()) offerRow(rows, { ...rowKeys(e), entry: e });

  const sorted = [...rows.values()].sort((a, b) => b.createdMs - a.createdMs || b.o - a.o);
  rows.clear();
  const picked = filterJobs(sorted as unknown as JobSummary[], filter) as unknown as Row[];
  return materialize(picked, session, jobsDir);
}

/** Shared by the rows of the (many) jobs with no staging left, so a listing stays small. */
const NO_STAGING: readonly string[] = Object.freeze([]);

function rowKeys(e: IndexedJob): Row {
  const staging = e.s.staging.length === 0 ? NO_STAGING : e.s.staging;
  return { id: e.s.id, r: e.r, createdMs: Date.parse(e.s.createdAt) || 0, o: e.o, status: e.s.status, mode: e.s.mode, strategy: e.s.strategy, staging };
}

/** Full summaries of the picked rows: copies of those in memory, the others read from the log by offset. */
async function materialize(picked: readonly Row[], session: IndexSession, jobsDir: string): Promise<JobSummary[]> {
  const fromLog = picked.filter((r) => r.entry === undefined);
  const read = new Map<Row, JobSummary>();
  if (fromLog.length > 0 && session.log) {
    let handle;
    try {
      handle = await open(join(jobsDir, session.log.name), 'r');
    } catch (error) {
      throw new IndexUnreadable(`summary log unreadable: ${(error as Error).message}`);
    }
    try {
      for (const row of fromLog) {
        const buf = Buffer.allocUnsafe(row.len!);
        const { bytesRead } = await handle.read(buf, 0, buf.length, row.off!);
        if (bytesRead !== buf.length) throw new IndexUnreadable('summary log changed while reading');
        read.set(row, parseLogLine(buf.toString('utf8')).s);
      }
    } finally {
      await handle.close();
    }
  }
  return picked.map((row) => (row.entry ? structuredClone(row.entry.s) : read.get(row)!));
}

export type { IndexBase };
