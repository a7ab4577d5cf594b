import { appendFile, cp, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, test } from 'vitest';
import { JsonlStore, type JobFilter, type JobSummary, type KetterEvent } from '@ketter/core';
import { reduceJob } from '../src/store/job-state.js';
import { encodeRecord } from '../src/store/jsonl/chain.js';
import { dailyFileName } from '../src/store/jsonl/daily-files.js';
import { readHead, writeHead } from '../src/store/jsonl/head.js';
import { seal, unseal } from '../src/store/jsonl/index-files.js';
import { JobEventFactory, jobEvents, type JobEventsOptions } from '../src/testing/event-factory.js';

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ketter-jsonl-index-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

const SUMMARY_KEYS = [
  'id',
  'status',
  'mode',
  'source',
  'destination',
  'strategy',
  'nFiles',
  'totalBytes',
  'filesCopied',
  'bytesCopied',
  'operator',
  'host',
  'createdAt',
  'finishedAt',
  'durationMs',
  'error',
  'staging',
] as const;
const summaryOf = (job: JobSummary) => Object.fromEntries(SUMMARY_KEYS.map((k) => [k, job[k]]));

/** Every job derived from every record of the trail with reduceJob, most recent first. */
async function derive(dir: string): Promise<Record<string, unknown>[]> {
  const auditDir = join(dir, 'audit');
  const byJob = new Map<string, { order: number; events: KetterEvent[] }>();
  let n = 0;
  for (const file of (await readdir(auditDir)).filter((f) => f.startsWith('events-')).sort()) {
    for (const line of (await readFile(join(auditDir, file), 'utf8')).split('\n')) {
      if (line === '') continue;
      const event = (JSON.parse(line) as { event: KetterEvent }).event;
      const entry = byJob.get(event.jobId) ?? { order: n, events: [] };
      entry.events.push(event);
      byJob.set(event.jobId, entry);
      n += 1;
    }
  }
  const jobs = [...byJob.values()].flatMap(({ order, events }) => {
    const job = reduceJob([...events].sort((a, b) => a.seq - b.seq));
    return job ? [{ job, order }] : [];
  });
  jobs.sort((a, b) => Date.parse(b.job.createdAt) - Date.parse(a.job.createdAt) || b.order - a.order);
  return jobs.map(({ job }) => summaryOf(job));
}

/** What a fresh store instance (a new CLI process) lists. */
async function listFresh(dir: string, filter: JobFilter = { limit: 100_000 }): Promise<Record<string, unknown>[]> {
  const store = new JsonlStore({ dir, durable: false });
  await store.open();
  try {
    return (await store.listJobs(filter)).map(summaryOf);
  } finally {
    await store.close();
  }
}

async function indexHead(dir: string): Promise<{ trail: { records: number }; log: { name: string; size: number } | null; active: unknown[] }> {
  // The head is sealed: {"c":"<digest>","j":<head>}
  return (JSON.parse(await readFile(join(dir, 'jobs', 'index.json'), 'utf8')) as { j: never }).j;
}

/** Append records the way a writer that knows nothing of the index would (an older version). */
async function appendBehindTheIndex(dir: string, events: readonly KetterEvent[], day: Date): Promise<void> {
  const auditDir = join(dir, 'audit');
  const head = await readHead(auditDir);
  if (head === 'corrupt') throw new Error('corrupt head');
  let prev = head?.hash ?? '0'.repeat(64);
  const file = head?.file && head.file > dailyFileName(day) ? head.file : dailyFileName(day);
  const lines: Buffer[] = [];
  for (const event of events) {
    const record = encodeRecord(prev, JSON.stringify(event));
    lines.push(record.line);
    prev = record.hash;
  }
  await appendFile(join(auditDir, file), Buffer.concat(lines));
  const { size } = await stat(join(auditDir, file));
  await writeHead(auditDir, { file, size, records: (head?.records ?? 0) + events.length, hash: prev }, false);
}

/** The staging a job left, recorded as removed after it ended (what recovery appends). */
function stagingRemoved(events: readonly KetterEvent[]): KetterEvent {
  const staging = (events.find((e) => e.type === 'preflight.passed') as { staging: string }).staging;
  const f = new JobEventFactory({ jobId: events[0]!.jobId, start: events.at(-1)!.ts });
  return { ...f.next('staging.removed', { portal: 'dubbing', path: staging }), seq: events.length } as KetterEvent;
}

type Listed = Record<string, unknown>;
/** The jobs a filter of recovery or resume picks, from jobs listed in full. */
const picked = (jobs: Listed[], f: { status?: string; withStaging?: boolean }) =>
  jobs.filter((j) => (!f.status || j.status === f.status) && (!f.withStaging || (j.staging as string[]).length > 0));

/** Ids per line of the index's summary log. */
async function logIds(dir: string): Promise<string[]> {
  const { log } = await indexHead(dir);
  const text = await readFile(join(dir, 'jobs', log!.name), 'utf8');
  return text.split('\n').filter(Boolean).map((line) => (JSON.parse(unseal(line)!) as { s: { id: string } }).s.id);
}

const base = Date.parse('2026-06-01T08:00:00.000Z');
let minute = 0;
/** A job with a distinct creation time, so the expected order has no ties. */
const job = (options: JobEventsOptions = {}) => jobEvents({ start: new Date(base + minute++ * 60_000), files: 2, ...options });

describe('JSONL job summary index', () => {
  let dir: string;
  let clock: Date;
  let store: JsonlStore;

  beforeEach(async () => {
    dir = await tempDir();
    clock = new Date('2026-06-01T12:00:00.000Z');
    store = new JsonlStore({ dir, durable: false, now: () => clock });
    await store.open();
  });
  afterEach(async () => {
    await store.close();
  });

  /** A varied history over three daily files, jobs interleaved across batches. */
  async function history(): Promise<KetterEvent[][]> {
    const jobs = [
      job({ files: 30 }),
      job({ outcome: 'failed' }),
      job({ outcome: 'cancelled', mode: 'move' }),
      job({ outcome: 'running', strategy: 'ZIP_FIRST' }),
      job({ outcome: 'created' }),
      job({ files: 5, strategy: 'ZIP_FIRST', mode: 'move' }),
    ];
    await store.append(jobs[0]!.slice(0, 10));
    await store.append([...jobs[1]!, ...jobs[0]!.slice(10, 40)]);
    clock = new Date('2026-06-02T12:00:00.000Z');
    await store.append(jobs[0]!.slice(40));
    await store.append([...jobs[2]!, ...jobs[3]!]);
    clock = new Date('2026-06-04T12:00:00.000Z');
    await store.append(jobs[4]!);
    for (let i = 0; i < jobs[5]!.length; i += 3) await store.append(jobs[5]!.slice(i, i + 3));
    return jobs;
  }

  test('appends keep the index at the chain head; batches of other events leave it untouched', async () => {
    const jobs = await history();
    const head = await readHead(join(dir, 'audit'));
    expect((await indexHead(dir)).trail.records).toBe((head as { records: number }).records);
    expect(await listFresh(dir)).toEqual(await derive(dir));
    expect((await store.listJobs({ status: 'running' })).map((j) => j.id)).toEqual([jobs[3]![0]!.jobId]);

    // A long job: its file events do not rewrite the index, its end does.
    const long = job({ files: 200 });
    await store.append(long.slice(0, 4));
    const before = await readFile(join(dir, 'jobs', 'index.json'), 'utf8');
    for (let i = 4; i < long.length - 2; i += 50) await store.append(long.slice(i, Math.min(i + 50, long.length - 2)));
    expect(await readFile(join(dir, 'jobs', 'index.json'), 'utf8')).toBe(before);
    expect((await listFresh(dir)).find((j) => j.id === long[0]!.jobId)).toMatchObject({ status: 'running' });
    await store.append(long.slice(-2));
    expect((await listFresh(dir)).find((j) => j.id === long[0]!.jobId)).toMatchObject({ status: 'succeeded', filesCopied: 200 });
    expect(await listFresh(dir)).toEqual(await derive(dir));
  });

  test('during a long job the index position follows the trail without re-reading it', async () => {
    await history();
    const long = job({ files: 7000 }); // 14,006 events
    await store.append(long.slice(0, 4));
    const startRecords = (await indexHead(dir)).trail.records;
    for (let i = 4; i < long.length - 2; i += 1000) await store.append(long.slice(i, Math.min(i + 1000, long.length - 2)));
    // Past 10,000 records of file events the position moved, the running job unchanged.
    const mid = await indexHead(dir);
    expect(mid.trail.records).toBeGreaterThanOrEqual(startRecords + 10_000);
    expect(await listFresh(dir)).toEqual(await derive(dir));
    // Another process appending in between makes this one stop trusting what it wrote last.
    const other = new JsonlStore({ dir, durable: false, now: () => clock });
    await other.open();
    await other.append(job({ outcome: 'created' }));
    await other.close();
    await store.append(long.slice(-2));
    expect(await listFresh(dir)).toEqual(await derive(dir));
    expect((await indexHead(dir)).trail.records).toBe(((await readHead(join(dir, 'audit'))) as { records: number }).records);
  });

  test('a deleted index is rebuilt by the next reader, and saved', async () => {
    await history();
    const expected = await derive(dir);
    await rm(join(dir, 'jobs'), { recursive: true });
    expect(await listFresh(dir)).toEqual(expected);
    const again = await indexHead(dir);
    expect(again.trail.records).toBe(((await readHead(join(dir, 'audit'))) as { records: number }).records);
    expect(await listFresh(dir)).toEqual(expected);
    // The store writing next continues from the rebuilt index.
    await store.append(job());
    expect(await listFresh(dir)).toEqual(await derive(dir));
  });

  test('records appended by a writer that does not maintain the index are applied (stale index)', async () => {
    const jobs = await history();
    const running = jobs[3]!;
    const finish = job({ strategy: 'ZIP_FIRST', jobId: running[0]!.jobId })
      .slice(running.length)
      .map((e, i) => ({ ...e, seq: running.length + i }));
    const newcomer = job({ outcome: 'failed' });
    await appendBehindTheIndex(dir, [...finish, ...newcomer], clock);

    const expected = await derive(dir);
    expect(expected.find((j) => j.id === running[0]!.jobId)).toMatchObject({ status: 'succeeded' });
    expect(await listFresh(dir)).toEqual(expected);
    // The reader saved what it applied.
    expect((await indexHead(dir)).trail.records).toBe(((await readHead(join(dir, 'audit'))) as { records: number }).records);
    expect((await store.getJob(newcomer[0]!.jobId))!.events).toEqual(newcomer);

    // A writer maintaining the index catches up with what it did not see before its own batch.
    await appendBehindTheIndex(dir, job({ outcome: 'cancelled' }), clock);
    await store.append(job());
    expect(await listFresh(dir)).toEqual(await derive(dir));
  });

  test('an index left behind by a crash (records written, index not updated) is caught up', async () => {
    await history();
    const saved = join(await tempDir(), 'jobs');
    await cp(join(dir, 'jobs'), saved, { recursive: true });
    const later = [job({ outcome: 'failed' }), job({ outcome: 'running' }), job()];
    for (const events of later) await store.append(events);
    await rm(join(dir, 'jobs'), { recursive: true });
    await cp(saved, join(dir, 'jobs'), { recursive: true });
    expect(await listFresh(dir)).toEqual(await derive(dir));
    // The same with a restored head but a log longer than it records (a crash between the two writes).
    await store.append(job({ outcome: 'cancelled' }));
    expect(await listFresh(dir)).toEqual(await derive(dir));
  });

  test('an index of the previous format (summaries without staging) is rebuilt, not served', async () => {
    await history();
    const expected = await derive(dir);
    expect(expected.some((j) => (j.staging as string[]).length > 0)).toBe(true);
    const headPath = join(dir, 'jobs', 'index.json');
    const head = JSON.parse(unseal((await readFile(headPath, 'utf8')).trimEnd())!) as { v: number; active: { s: Partial<JobSummary> }[] };
    for (const entry of head.active) delete entry.s.staging;
    await writeFile(headPath, `${seal(JSON.stringify({ ...head, v: 1 }))}\n`);
    expect(await listFresh(dir)).toEqual(expected);
    expect((await indexHead(dir)) as unknown).toMatchObject({ v: 2 });
  });

  test('a corrupt index is rebuilt: garbage head, garbage or truncated log, bytes past the recorded log size', async () => {
    await history();
    const expected = await derive(dir);
    const headPath = join(dir, 'jobs', 'index.json');
    const logPath = async () => join(dir, 'jobs', (await indexHead(dir)).log!.name);

    await writeFile(headPath, '{"v":1,"trail":');
    expect(await listFresh(dir)).toEqual(expected);

    await writeFile(headPath, 'not json at all\n');
    expect(await listFresh(dir)).toEqual(expected);

    const log = await logPath();
    const bytes = await readFile(log);
    bytes[Math.floor(bytes.length / 2)] = 0x7b; // '{' in the middle of a line: not JSON any more
    await writeFile(log, bytes);
    expect(await listFresh(dir)).toEqual(expected);

    const log2 = await logPath();
    await truncate(log2, (await stat(log2)).size - 10);
    expect(await listFresh(dir)).toEqual(expected);

    const log3 = await logPath();
    await appendFile(log3, '{"garbage": tr');
    expect(await listFresh(dir)).toEqual(expected);
    await store.append(job({ outcome: 'failed' }));
    expect(await listFresh(dir)).toEqual(await derive(dir));
    const text = await readFile(await logPath(), 'utf8');
    expect(text).not.toContain('garbage');
    expect(text.endsWith('\n')).toBe(true);
  });

  test('an index that no longer matches the trail (trail replaced, truncated or a file removed) is rebuilt', async () => {
    await history();
    // Another store's trail put in place of this one.
    const other = await tempDir();
    const otherStore = new JsonlStore({ dir: other, durable: false, now: () => new Date('2026-06-01T12:00:00.000Z') });
    await otherStore.open();
    for (let i = 0; i < 4; i++) await otherStore.append(job({ files: 3 }));
    await otherStore.close();
    const saved = join(await tempDir(), 'audit');
    await cp(join(dir, 'audit'), saved, { recursive: true });
    await rm(join(dir, 'audit'), { recursive: true });
    await cp(join(other, 'audit'), join(dir, 'audit'), { recursive: true });
    expect(await listFresh(dir)).toEqual(await derive(other));

    // Back to the original trail, then its first daily file removed.
    await rm(join(dir, 'audit'), { recursive: true });
    await cp(saved, join(dir, 'audit'), { recursive: true });
    expect(await listFresh(dir)).toEqual(await derive(dir));
    const first = (await readdir(join(dir, 'audit'))).filter((f) => f.startsWith('events-')).sort()[0]!;
    await rm(join(dir, 'audit', first));
    expect(await listFresh(dir)).toEqual(await derive(dir));

    // The last file cut short, below the index's position.
    const last = (await readdir(join(dir, 'audit'))).filter((f) => f.startsWith('events-')).sort().at(-1)!;
    const lines = (await readFile(join(dir, 'audit', last), 'utf8')).split('\n').slice(0, -1);
    await writeFile(join(dir, 'audit', last), lines.slice(0, -4).map((l) => `${l}\n`).join(''));
    expect(await listFresh(dir)).toEqual(await derive(dir));
  });

  test('getJob reads one job from its first daily file, with or without a usable index', async () => {
    const jobs = await history();
    const fresh = new JsonlStore({ dir, durable: false });
    await fresh.open();
    for (const events of jobs) expect((await fresh.getJob(events[0]!.jobId))!.events).toEqual(events);
    await writeFile(join(dir, 'jobs', 'index.json'), 'garbage');
    for (const events of jobs) expect((await fresh.getJob(events[0]!.jobId))!.events).toEqual(events);
    await rm(join(dir, 'jobs'), { recursive: true });
    const late = job({ outcome: 'failed' });
    await appendBehindTheIndex(dir, late, clock);
    expect((await fresh.getJob(late[0]!.jobId))!.events).toEqual(late);
    expect(await fresh.getJob('no-such-job')).toBeNull();
    await fresh.close();
  });

  test('records longer than a read chunk (a 3 MB error message) are read whole', async () => {
    const jobs = await history();
    const error = { code: 'IO_ERROR', message: `[ketter] ${'x'.repeat(3 << 20)}` } as const;
    const big = job({ outcome: 'failed', error, files: 3 });
    await store.append(big);
    await store.append(job());
    await rm(join(dir, 'jobs'), { recursive: true });
    expect(await listFresh(dir)).toEqual(await derive(dir));
    expect(await listFresh(dir)).toEqual(await derive(dir));
    expect((await store.getJob(big[0]!.jobId))!.events).toEqual(big);
    expect((await store.getJob(jobs[5]![0]!.jobId))!.events).toEqual(jobs[5]);
  });

  test('many unfinished jobs: the oldest move to the log and are still updated and listed', async () => {
    const created: KetterEvent[] = [];
    for (let i = 0; i < 1100; i++) created.push(...job({ outcome: 'created' }));
    await store.append(created);
    expect((await indexHead(dir)).active.length).toBeLessThanOrEqual(1000);
    expect(await listFresh(dir, { limit: 5000 })).toEqual(await derive(dir));

    // The very first job (now in the log) starts and finishes.
    const firstId = created[0]!.jobId;
    const rest = jobEvents({ jobId: firstId, files: 1, start: created[0]!.ts })
      .slice(1)
      .map((e, i) => ({ ...e, seq: 1 + i }));
    await store.append(rest.slice(0, 2));
    expect((await listFresh(dir, { limit: 5000 })).find((j) => j.id === firstId)).toMatchObject({ status: 'running' });
    await store.append(rest.slice(2));
    expect(await listFresh(dir, { limit: 5000 })).toEqual(await derive(dir));
    expect((await store.listJobs({ status: 'created', limit: 5000 })).length).toBe(1099);
  });
  test('one store listing again and again: each listing sees what the log gained, newer entries winning', async () => {
    const all = (filter = {}) => store.listJobs({ limit: 5000, ...filter }).then((jobs) => jobs.map(summaryOf));
    const created: KetterEvent[] = [];
    for (let i = 0; i < 1100; i++) created.push(...job({ outcome: 'created' }));
    await store.append(created);
    expect(await all()).toEqual(await derive(dir));

    // A job the log holds as created starts and finishes: its newer entries win over the parsed one.
    const firstId = created[0]!.jobId;
    const rest = jobEvents({ jobId: firstId, files: 1, start: created[0]!.ts })
      .slice(1)
      .map((e, i) => ({ ...e, seq: 1 + i }));
    await store.append(rest.slice(0, 2));
    expect((await all()).find((j) => j.id === firstId)).toMatchObject({ status: 'running' });
    await store.append(rest.slice(2));
    await store.append([...job({ outcome: 'failed' }), ...job({ mode: 'move' })]);
    expect(await all()).toEqual(await derive(dir));

    // Listings made at the same time agree with each other and with the trail.
    const [running, created2, everything] = await Promise.all([all({ status: 'running' }), all({ status: 'created' }), all()]);
    const derived = await derive(dir);
    expect(everything).toEqual(derived);
    expect(running).toEqual(derived.filter((j) => j.status === 'running'));
    expect(created2).toEqual(derived.filter((j) => j.status === 'created'));

    // The index removed under the store: rebuilt into a new log, listed the same.
    await rm(join(dir, 'jobs'), { recursive: true, force: true });
    await store.append(job());
    expect(await all()).toEqual(await derive(dir));
  });

  test('what recovery and resume ask for is answered from the head: the log is not read', async () => {
    await history();
    const failed = job({ outcome: 'failed' }); // its staging is left
    const cancelled = job({ outcome: 'cancelled' });
    const interrupted = job({ outcome: 'running' });
    const f = new JobEventFactory({ jobId: interrupted[0]!.jobId, start: interrupted.at(-1)!.ts });
    await store.append([...failed, ...cancelled, stagingRemoved(cancelled), interrupted.at(0)!, ...interrupted.slice(1)]);
    await store.append([{ ...f.next('job.interrupted', { reason: 'process ended before commit; staging kept' }), seq: interrupted.length } as KetterEvent]);
    const all = await derive(dir);
    expect(await listFresh(dir)).toEqual(all);

    // A log that would fail to parse: any listing that reads it has to rebuild the index.
    const headPath = join(dir, 'jobs', 'index.json');
    const logPath = join(dir, 'jobs', (await indexHead(dir)).log!.name);
    const headBefore = await readFile(headPath, 'utf8');
    const garbage = Buffer.alloc((await stat(logPath)).size, 'x\n');
    await writeFile(logPath, garbage);
    const filters = [
      { status: 'running' },
      { status: 'created' },
      { withStaging: true },
      { status: 'failed', withStaging: true },
      { status: 'cancelled', withStaging: true },
      { status: 'interrupted', withStaging: true },
    ] as const;
    for (const filter of filters) {
      const expected = picked(all, filter);
      expect(await listFresh(dir, { ...filter, limit: 100_000 })).toEqual(expected);
    }
    expect(picked(all, { withStaging: true }).map((j) => j.id)).toEqual(expect.arrayContaining([failed[0]!.jobId, interrupted[0]!.jobId]));
    expect(picked(all, { withStaging: true }).map((j) => j.id)).not.toContain(cancelled[0]!.jobId);
    expect(await readFile(headPath, 'utf8')).toBe(headBefore);
    expect(await readFile(logPath)).toEqual(garbage);

    // Other listings read the log, find it altered, and rebuild.
    expect(await listFresh(dir, { status: 'succeeded', limit: 100_000 })).toEqual(picked(all, { status: 'succeeded' }));
    expect(await readFile(headPath, 'utf8')).not.toBe(headBefore);
  });

  test('a rebuild keeps jobs with staging left in the head, and logs each job once', async () => {
    const staged: string[] = [];
    const batch: KetterEvent[] = [];
    for (let i = 0; i < 2300; i++) {
      const events = job({ files: 0, outcome: i % 100 === 7 ? 'failed' : 'succeeded' });
      if (i % 100 === 7) staged.push(events[0]!.jobId);
      batch.push(...events);
      // One failed job has its staging removed later: it must leave the head.
      if (i === 7) batch.push(stagingRemoved(events));
    }
    await store.append(batch);
    staged.shift();
    await rm(join(dir, 'jobs'), { recursive: true });

    const all = await derive(dir);
    expect((await listFresh(dir, { withStaging: true, limit: 100_000 })).map((j) => j.id).sort()).toEqual([...staged].sort());
    const head = (await indexHead(dir)) as unknown as { active: { s: { id: string } }[]; spilled: boolean };
    expect(head.active.map((e) => e.s.id).sort()).toEqual([...staged].sort());
    expect(head.spilled).toBe(false);
    const ids = await logIds(dir);
    expect(ids.length).toBe(2300);
    expect(new Set(ids).size).toBe(2300);
    expect(await listFresh(dir)).toEqual(all);
  });

  test('more jobs with staging left than the head keeps: listings read the log and stay right', async () => {
    const batch: KetterEvent[] = [];
    for (let i = 0; i < 1010; i++) batch.push(...job({ files: 0, outcome: 'failed' }));
    await store.append(batch);
    const all = await derive(dir);
    expect(await listFresh(dir, { withStaging: true, limit: 100_000 })).toEqual(all);
    const head = (await indexHead(dir)) as unknown as { active: unknown[]; spilled: boolean };
    expect(head.spilled).toBe(true);
    expect(head.active.length).toBe(1000);
    // The one removed last is found whether the head or the log holds it.
    const oldest = all.at(-1)!;
    expect(oldest.staging).not.toEqual([]);
    expect(await listFresh(dir, { status: 'failed', withStaging: true, limit: 100_000 })).toHaveLength(1010);
  });
});
