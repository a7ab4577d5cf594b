import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { appendFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { JsonlStore, type KetterEvent } from '@ketter/core';
import { describeStoreConformance } from '../src/testing/store-suite.js';
import { jobEvents } from '../src/testing/event-factory.js';
import { reduceJob } from '../src/store/job-state.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const childScript = fileURLToPath(new URL('./fixtures/jsonl-child.mjs', import.meta.url));
const GENESIS = '0'.repeat(64);

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ketter-jsonl-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function dailyFiles(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'audit'))).filter((n) => n.endsWith('.jsonl')).sort();
}

/** The record lines of a daily file (without the final empty string). */
async function recordLines(dir: string, file: string): Promise<string[]> {
  const text = await readFile(join(dir, 'audit', file), 'utf8');
  return text.split('\n').slice(0, -1);
}

/** Flip one bit of the operator name in the middle record of the newest file. */
async function flipByteInMiddleRecord(dir: string): Promise<string> {
  const file = (await dailyFiles(dir)).at(-1)!;
  const path = join(dir, 'audit', file);
  const buf = await readFile(path);
  const lines = buf.toString('utf8').split('\n').slice(0, -1);
  const k = Math.floor(lines.length / 2);
  const lineStart = lines.slice(0, k).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
  const at = lineStart + Buffer.from(lines[k]!).indexOf('"operator":"') + '"operator":"'.length;
  buf[at]! ^= 0x01;
  await writeFile(path, buf);
  return (JSON.parse(lines[k]!) as { event: KetterEvent }).event.id;
}

describeStoreConformance(
  { describe, test, expect, beforeEach, afterEach },
  async () => {
    const dir = await tempDir();
    const store = new JsonlStore({ dir });
    await store.open();
    return {
      store,
      tamper: () => flipByteInMiddleRecord(dir),
      cleanup: async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { name: 'jsonl' },
);

describe('JsonlStore on disk', () => {
  let dir: string;
  let store: JsonlStore;
  let clock: Date;

  beforeEach(async () => {
    dir = await tempDir();
    clock = new Date('2026-05-01T12:00:00.000Z');
    store = new JsonlStore({ dir, now: () => clock });
    await store.open();
  });

  afterEach(async () => {
    await store.close();
  });

  test('the constructor touches nothing; open creates the layout; a closed store refuses work', async () => {
    const fresh = join(await tempDir(), 'nested', 'store');
    const s = new JsonlStore({ dir: fresh });
    expect(existsSync(fresh)).toBe(false);
    await expect(s.append(jobEvents())).rejects.toMatchObject({ code: 'STORE_ERROR' });
    await s.open();
    expect(existsSync(join(fresh, 'audit'))).toBe(true);
    await s.close();
    await expect(s.listJobs()).rejects.toMatchObject({ code: 'STORE_ERROR' });
  });

  test('records are chained JSON lines in the UTC day file, holding the events as given', async () => {
    clock = new Date('2026-05-01T23:30:00.000-02:00'); // already 2 May in UTC
    const events = jobEvents({ files: 2 });
    await store.append(events);
    expect(await dailyFiles(dir)).toEqual(['events-2026-05-02.jsonl']);
    const lines = await recordLines(dir, 'events-2026-05-02.jsonl');
    expect(lines.length).toBe(events.length);
    let prev = GENESIS;
    for (const [i, line] of lines.entries()) {
      const record = JSON.parse(line) as { prev: string; hash: string; event: KetterEvent };
      expect(Object.keys(record)).toEqual(['prev', 'hash', 'event']);
      expect(record.prev).toBe(prev);
      expect(record.event).toEqual(events[i]);
      prev = record.hash;
    }
    const head = JSON.parse(await readFile(join(dir, 'audit', 'head.json'), 'utf8')) as { records: number; hash: string };
    expect(head).toMatchObject({ records: events.length, hash: prev });
  });

  test('altering any single byte of a middle record is detected and located by file:line', async () => {
    for (let j = 0; j < 3; j++) await store.append(jobEvents({ files: 3 }));
    const file = (await dailyFiles(dir))[0]!;
    const path = join(dir, 'audit', file);
    const original = await readFile(path);
    const lines = original.toString('utf8').split('\n');
    const k = 11; // 0-based: the 12th record
    const start = lines.slice(0, k).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
    const end = start + Buffer.byteLength(lines[k]!); // the '\n' at `end` is part of the record too
    const record = JSON.parse(lines[k]!) as { event: KetterEvent };

    for (let at = start; at <= end; at++) {
      const altered = Buffer.from(original);
      altered[at]! ^= 0x01;
      await writeFile(path, altered);
      const report = await store.verifyAudit();
      expect(report.ok, `byte ${at - start} of the record`).toBe(false);
      expect(report.firstBad?.location, `byte ${at - start} of the record`).toBe(`${file}:${k + 1}`);
      expect(report.firstBad?.reason).toMatch(/\S/);
    }

    // A change inside the event body names the event and its job.
    const body = Buffer.from(original);
    body[start + Buffer.from(lines[k]!).indexOf('"size":') + 8]! ^= 0x01;
    await writeFile(path, body);
    expect((await store.verifyAudit()).firstBad).toMatchObject({
      location: `${file}:${k + 1}`,
      eventId: record.event.id,
      jobId: record.event.jobId,
    });

    await writeFile(path, original);
    expect(await store.verifyAudit()).toEqual({ ok: true, records: lines.length - 1 });
  });

  test('a deleted middle record, swapped records and a removed first file are detected', async () => {
    await store.append(jobEvents({ files: 4 }));
    clock = new Date('2026-05-02T09:00:00.000Z');
    await store.append(jobEvents({ files: 4 }));
    const [day1, day2] = await dailyFiles(dir);
    const path2 = join(dir, 'audit', day2!);
    const original = await readFile(path2, 'utf8');
    const lines = original.split('\n');

    await writeFile(path2, [...lines.slice(0, 5), ...lines.slice(6)].join('\n'));
    let report = await store.verifyAudit();
    expect(report.ok).toBe(false);
    expect(report.firstBad).toMatchObject({
      location: `${day2}:6`,
      eventId: (JSON.parse(lines[6]!) as { event: KetterEvent }).event.id,
    });
    expect(report.firstBad?.reason).toMatch(/prev/);

    await writeFile(path2, [...lines.slice(0, 3), lines[4], lines[3], ...lines.slice(5)].join('\n'));
    report = await store.verifyAudit();
    expect(report.firstBad?.location).toBe(`${day2}:4`);

    await writeFile(path2, original);
    await rm(join(dir, 'audit', day1!));
    report = await store.verifyAudit();
    expect(report.firstBad?.location).toBe(`${day2}:1`);
  });

  test('truncating the last record is detected, and stays detected after later appends', async () => {
    await store.append(jobEvents({ files: 2 }));
    const file = (await dailyFiles(dir))[0]!;
    const path = join(dir, 'audit', file);
    const lines = await recordLines(dir, file);
    await writeFile(path, lines.slice(0, -1).map((l) => `${l}\n`).join(''));
    let report = await store.verifyAudit();
    expect(report.ok).toBe(false);
    expect(report.firstBad?.location).toBe(`${file}:${lines.length}`);
    expect(report.firstBad?.reason).toMatch(/removed/);

    await store.append(jobEvents({ files: 1 }));
    report = await store.verifyAudit();
    expect(report.ok).toBe(false);
    expect(report.firstBad?.location).toBe(`${file}:${lines.length}`);

    // Cutting a record in half is detected too.
    const fresh = await tempDir();
    const other = new JsonlStore({ dir: fresh });
    await other.open();
    await other.append(jobEvents({ files: 2 }));
    const [otherFile] = await dailyFiles(fresh);
    const bytes = await readFile(join(fresh, 'audit', otherFile!));
    await writeFile(join(fresh, 'audit', otherFile!), bytes.subarray(0, bytes.length - 40));
    const cut = await other.verifyAudit();
    expect(cut.ok).toBe(false);
    expect(cut.firstBad?.location).toBe(`${otherFile}:${(await recordLines(fresh, otherFile!)).length + 1}`);
    await other.close();
  });

  test('the chain continues across a day boundary', async () => {
    const events = jobEvents({ files: 6, start: '2026-05-01T23:59:50.000Z' });
    clock = new Date('2026-05-01T23:59:59.900Z');
    await store.append(events.slice(0, 7));
    clock = new Date('2026-05-02T00:00:00.100Z');
    await store.append(events.slice(7, 12));
    clock = new Date('2026-05-04T08:00:00.000Z');
    await store.append(events.slice(12));

    const files = await dailyFiles(dir);
    expect(files).toEqual(['events-2026-05-01.jsonl', 'events-2026-05-02.jsonl', 'events-2026-05-04.jsonl']);
    const day1 = await recordLines(dir, files[0]!);
    const day2 = await recordLines(dir, files[1]!);
    expect((JSON.parse(day2[0]!) as { prev: string }).prev).toBe((JSON.parse(day1.at(-1)!) as { hash: string }).hash);
    expect(await store.verifyAudit()).toEqual({ ok: true, records: events.length });
    expect((await store.getJob(events[0]!.jobId))!.events).toEqual(events);

    // A clock that goes back never writes behind the newest file.
    clock = new Date('2026-05-03T00:00:00.000Z');
    await store.append(jobEvents({ files: 1 }));
    expect(await dailyFiles(dir)).toEqual(files);
    expect((await store.verifyAudit()).ok).toBe(true);
  });

  test('a batch written before a crash moved the head is adopted; a torn tail is dropped', async () => {
    const first = jobEvents({ files: 2 });
    await store.append(first);
    const headPath = join(dir, 'audit', 'head.json');
    const staleHead = await readFile(headPath);
    const second = jobEvents({ files: 2 });
    await store.append(second);
    await writeFile(headPath, staleHead); // as if the process died before moving the head

    expect(await store.verifyAudit()).toEqual({ ok: true, records: first.length + second.length });

    // A write cut short: half a record, no line end.
    const file = (await dailyFiles(dir))[0]!;
    const lastLine = (await recordLines(dir, file)).at(-1)!;
    await appendFile(join(dir, 'audit', file), lastLine.slice(0, 60));
    expect((await store.verifyAudit()).firstBad?.reason).toMatch(/incomplete/);

    const third = jobEvents({ files: 1 });
    await store.append(third);
    expect(await store.verifyAudit()).toEqual({ ok: true, records: first.length + second.length + third.length });
    for (const events of [first, second, third]) expect((await store.getJob(events[0]!.jobId))!.events).toEqual(events);
  });

  test('a second store on the same directory sees new appends', async () => {
    const reader = new JsonlStore({ dir });
    await reader.open();
    const a = jobEvents({ outcome: 'running', files: 1 });
    await store.append(a);
    expect((await reader.getJob(a[0]!.jobId))!.status).toBe('running');
    const more = jobEvents({ files: 1, jobId: a[0]!.jobId });
    // Finish the job with events continuing its seq.
    const rest = more.slice(a.length).map((e, i) => ({ ...e, seq: a.length + i }));
    await store.append(rest);
    expect((await reader.getJob(a[0]!.jobId))!.status).toBe('succeeded');
    expect((await reader.listJobs()).length).toBe(1);
    await reader.close();
  });
});

/** The job index head (sealed as {"c":"<digest>","j":<head>}). */
async function indexHead(dir: string): Promise<{ trail: { records: number } }> {
  return (JSON.parse(await readFile(join(dir, 'jobs', 'index.json'), 'utf8')) as { j: { trail: { records: number } } }).j;
}

/** A fresh store lists exactly these jobs, most recent first, each summary as reduceJob derives it. */
async function expectIndexAgrees(dir: string, jobs: readonly (readonly KetterEvent[])[]): Promise<void> {
  const store = new JsonlStore({ dir });
  await store.open();
  const expected = jobs
    .map((events) => reduceJob(events)!)
    .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt))
    .map(({ events: _events, ...summary }) => summary);
  const listed = await store.listJobs();
  expect(listed.map((j) => j.id).sort()).toEqual(expected.map((j) => j.id).sort());
  for (const job of expected) expect(listed.find((j) => j.id === job.id)).toEqual(job);
  expect(listed.map((j) => Date.parse(j.createdAt))).toEqual(expected.map((j) => Date.parse(j.createdAt)));
  await store.close();
}

describe('JsonlStore across processes', () => {
  let bundle: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    // Child processes run plain node, which cannot load the TypeScript sources: bundle the
    // store (with its dependencies) from the current sources.
    const out = await tempDir();
    bundle = join(out, 'jsonl-store.mjs');
    // esbuild comes with tsup (a dev dependency of the workspace); resolve it from there.
    const fromTsup = createRequire(realpathSync(join(repoRoot, 'node_modules', 'tsup', 'package.json')));
    const esbuild = fromTsup('esbuild') as { build(options: Record<string, unknown>): Promise<unknown> };
    await esbuild.build({
      entryPoints: [join(repoRoot, 'packages/core/src/store/jsonl/jsonl-store.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      logLevel: 'warning',
      outfile: bundle,
      // proper-lockfile is CommonJS and requires node built-ins.
      banner: { js: "import { createRequire as __ketterRequire } from 'node:module'; const require = __ketterRequire(import.meta.url);" },
    });
  });

  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  function startChild(dir: string, command: string, args: object): { child: ChildProcess; firstLine: Promise<string>; exited: Promise<number | null> } {
    const child = spawn(process.execPath, [childScript, bundle, dir, command, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const firstLine = new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      void exited.then((code) => reject(new Error(`child exited (${code}) before answering: ${stderr}`)));
    });
    return { child, firstLine, exited };
  }

  async function eventsFile(dir: string, events: readonly KetterEvent[]): Promise<string> {
    const path = join(dir, `events-${randomUUID()}.json`);
    await writeFile(path, JSON.stringify(events));
    return path;
  }

  test('processes appending at once keep one valid chain with every record', async () => {
    const dir = await tempDir();
    const work = await tempDir();
    const jobs = Array.from({ length: 4 }, () => jobEvents({ files: 497 })); // 1,000 events each
    const runs = await Promise.all(
      jobs.map(async (events) => startChild(dir, 'append', { eventsFile: await eventsFile(work, events), batchSize: 25 })),
    );
    const codes = await Promise.all(runs.map((r) => r.exited));
    expect(codes).toEqual([0, 0, 0, 0]);

    const store = new JsonlStore({ dir });
    await store.open();
    expect(await store.verifyAudit()).toEqual({ ok: true, records: 4000 });
    for (const events of jobs) expect((await store.getJob(events[0]!.jobId))!.events).toEqual(events);
    await store.close();
    // The job index the writers kept between them is at the end of the chain and agrees with the events.
    expect((await indexHead(dir)).trail.records).toBe(4000);
    await expectIndexAgrees(dir, jobs);
  });

  test('readers rebuilding the job index while processes append leave index and trail consistent', async () => {
    const dir = await tempDir();
    const work = await tempDir();
    const jobs = Array.from({ length: 4 }, (_, i) =>
      jobEvents({ files: 300, outcome: (['succeeded', 'failed', 'running', 'cancelled'] as const)[i], start: new Date(Date.UTC(2026, 4, 1, 8, i)) }),
    );
    const runs = await Promise.all(
      jobs.map(async (events) => startChild(dir, 'append', { eventsFile: await eventsFile(work, events), batchSize: 10 })),
    );
    let done = false;
    const codes = Promise.all(runs.map((r) => r.exited)).finally(() => (done = true));
    let reads = 0;
    while (!done) {
      // Drop the index now and then, so readers rebuild and save it while writers update it.
      if (reads % 3 === 0) await rm(join(dir, 'jobs'), { recursive: true, force: true });
      const reader = new JsonlStore({ dir });
      await reader.open();
      const listed = await reader.listJobs();
      await reader.close();
      for (const row of listed) {
        const events = jobs.find((e) => e[0]!.jobId === row.id);
        expect(events, 'only jobs that were appended are listed').toBeDefined();
      }
      reads += 1;
    }
    expect(await codes).toEqual([0, 0, 0, 0]);
    expect(reads).toBeGreaterThan(0);
    await expectIndexAgrees(dir, jobs);
    // Batches of file events do not move the index (the running job ends with some); it covers
    // at least every summary-changing record and never more than the trail.
    const types: string[] = [];
    for (const file of await dailyFiles(dir)) {
      for (const line of await recordLines(dir, file)) types.push((JSON.parse(line) as { event: KetterEvent }).event.type);
    }
    const lastSummaryChange = types.findLastIndex((t) => t.startsWith('job.') || t === 'plan.decided');
    const covered = (await indexHead(dir)).trail.records;
    expect(covered).toBeGreaterThan(lastSummaryChange);
    expect(covered).toBeLessThanOrEqual(types.length);
  });

  test("a child's lock blocks this process; after kill -9 it is reported dead and reclaimable", async () => {
    const dir = await tempDir();
    const work = await tempDir();
    const store = new JsonlStore({ dir });
    await store.open();

    const heldJob = jobEvents({ outcome: 'running', files: 0 });
    const heldId = heldJob[0]!.jobId;
    const holder = startChild(dir, 'lock', {
      eventsFile: await eventsFile(work, heldJob),
      request: { jobId: heldId, source: 'fs:/mnt/ingest/EP201', destination: 'fs:/mnt/dub/in' },
    });
    const bystander = startChild(dir, 'lock', {
      request: { jobId: 'bystander', source: 'fs:/mnt/vfx/shot9', destination: 'fs:/mnt/qc/in' },
    });
    expect(await holder.firstLine).toBe('locked');
    expect(await bystander.firstLine).toBe('locked');

    const mine = { jobId: randomUUID(), source: 'fs:/mnt/ingest/EP201/audio', destination: 'fs:/mnt/out' };
    await expect(store.acquireLocks(mine)).rejects.toMatchObject({ code: 'SOURCE_LOCKED' });
    await expect(store.acquireLocks({ ...mine, source: 'fs:/mnt/other', destination: 'fs:/mnt/dub' })).rejects.toMatchObject({
      code: 'DESTINATION_LOCKED',
    });
    expect((await store.listLocks()).find((l) => l.jobId === heldId)).toMatchObject({ alive: true });

    holder.child.kill('SIGKILL');
    bystander.child.kill('SIGKILL');
    await Promise.all([holder.exited, bystander.exited]);

    // Recovery is another module's job: the store still shows the job running, but says its holder is gone.
    expect((await store.getJob(heldId))!.status).toBe('running');
    const locks = await store.listLocks();
    expect(locks.find((l) => l.jobId === heldId)).toMatchObject({ source: 'fs:/mnt/ingest/EP201', alive: false });
    expect(locks.find((l) => l.jobId === 'bystander')).toMatchObject({ alive: false });

    const lease = await store.acquireLocks(mine);
    const after = await store.listLocks();
    expect(after.find((l) => l.jobId === heldId)).toBeUndefined(); // reclaimed: it was in the way
    expect(after.find((l) => l.jobId === 'bystander')).toMatchObject({ alive: false }); // left for recovery
    expect(after.find((l) => l.jobId === mine.jobId)).toMatchObject({ alive: true });
    await lease.release();
    await store.close();
  });
});
