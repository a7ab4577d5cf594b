import { randomUUID } from 'node:crypto';
import { KetterEventSchema, type KetterEvent } from '../events.js';
import { reduceJob } from '../store/job-state.js';
import type { JobSummary, LockLease, Store } from '../store.js';
import type { TestApi } from './adapter-suite.js';
import { JobEventFactory, jobEvents, jobStart } from './event-factory.js';

export type { TestApi };

/** A fresh, empty, opened store for one test, and how to dispose of it. */
export interface StoreFixture {
  store: Store;
  /** Alter one byte of one stored record; return its event id. Enables the tamper test. */
  tamper?(): Promise<string>;
  /** Close the store and remove everything the fixture created. */
  cleanup(): Promise<void>;
}

/** What the store under test supports and how hard to push it; all optional. */
export interface StoreSuiteOptions {
  /** Shown in the test names, e.g. `jsonl`. */
  name: string;
  /** Run the lock tests. Default true. */
  locks?: boolean;
  /** Run the audit-chain tests (tampering only when the fixture has `tamper`). Default true. */
  audit?: boolean;
  /** Events in the bulk test. Default 20,000; 0 skips it. */
  bulkEvents?: number;
  /** Batch size of the bulk test. Default 1,000, the engine's largest batch. */
  bulkBatchSize?: number;
  /** Concurrent `acquireLocks` calls racing for one source. Default 20. */
  lockRace?: number;
}

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
] as const satisfies readonly (keyof JobSummary)[];

/** The summary fields of a job, for comparing a store's answer with {@link reduceJob}. */
function summaryOf(job: JobSummary): Pick<JobSummary, (typeof SUMMARY_KEYS)[number]> {
  return Object.fromEntries(SUMMARY_KEYS.map((k) => [k, job[k]])) as Pick<JobSummary, (typeof SUMMARY_KEYS)[number]>;
}

async function appendInBatches(store: Store, events: readonly KetterEvent[], size: number): Promise<void> {
  for (let i = 0; i < events.length; i += size) await store.append(events.slice(i, i + size));
}

/** The `code` of the KetterError a promise rejects with (fails if it resolves). */
async function rejectionCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown };
    return e?.name === 'KetterError' && typeof e.code === 'string' ? e.code : `not a KetterError: ${String(error)}`;
  }
  return 'resolved';
}

/**
 * The store contract as tests: event round trips, job state derived from events, history
 * queries, batch validation, locks and the audit chain. Every store runs it; backend
 * differences are options, not copied tests. `factory` must return a fresh, empty, opened
 * store isolated from every other fixture.
 *
 * @example
 * ```ts
 * import { describe, test, expect, beforeEach, afterEach } from 'vitest';
 * describeStoreConformance({ describe, test, expect, beforeEach, afterEach }, makeFixture, { name: 'jsonl' });
 * ```
 */
export function describeStoreConformance(api: TestApi, factory: () => Promise<StoreFixture>, options: StoreSuiteOptions): void {
  const { describe, test, expect, beforeEach, afterEach } = api;
  const bulkEvents = options.bulkEvents ?? 20_000;
  const bulkBatch = options.bulkBatchSize ?? 1000;
  const race = options.lockRace ?? 20;

  describe(`store conformance: ${options.name}`, () => {
    let fixture: StoreFixture | undefined;
    let store: Store;
    const leases: LockLease[] = [];

    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });

    afterEach(async () => {
      for (const lease of leases.splice(0)) await lease.release().catch(() => undefined);
      const done = fixture;
      fixture = undefined;
      await done?.cleanup();
    });

    test('declares its kind', () => {
      expect(typeof store.kind).toBe('string');
      expect(store.kind.length).toBeGreaterThan(0);
    });

    describe('events and job state', () => {
      test('getJob returns the appended events, schema-valid and in seq order', async () => {
        const a = jobEvents({ start: '2026-03-01T10:00:00.000Z', files: 4 });
        const b = jobEvents({ start: '2026-03-01T10:00:00.500Z', files: 2, outcome: 'failed' });
        // Two jobs interleaved across two batches, as two engines sharing a store write them.
        const cut = 5;
        await store.append([...a.slice(0, cut), ...b.slice(0, cut)]);
        await store.append([...b.slice(cut), ...a.slice(cut)]);

        for (const events of [a, b]) {
          const job = await store.getJob(events[0]!.jobId);
          expect(job).not.toBeNull();
          expect(job!.events).toEqual(events);
          expect(job!.events.map((e) => e.seq)).toEqual(events.map((_, i) => i));
          for (const e of job!.events) expect(KetterEventSchema.safeParse(e).success).toBe(true);
        }
      });

      test('getJob of an unknown id is null', async () => {
        await store.append(jobEvents());
        expect(await store.getJob(randomUUID())).toBeNull();
      });

      test('an empty batch stores nothing', async () => {
        await store.append([]);
        expect(await store.listJobs()).toEqual([]);
      });

      test('a succeeded job: strategy, counts, duration and times from its events', async () => {
        const events = jobEvents({ outcome: 'succeeded', mode: 'move', strategy: 'ZIP_FIRST', files: 5, fileBytes: 2048, stepMs: 10 });
        await store.append(events);
        const job = await store.getJob(events[0]!.jobId);
        expect(job).not.toBeNull();
        expect(summaryOf(job!)).toEqual(summaryOf(reduceJob(events)!));
        expect(job).toMatchObject({
          status: 'succeeded',
          mode: 'move',
          strategy: 'ZIP_FIRST',
          nFiles: 5,
          totalBytes: 10_240,
          filesCopied: 5,
          bytesCopied: 10_240,
          createdAt: events[0]!.ts,
          finishedAt: events.at(-1)!.ts,
          error: null,
        });
      });

      test('a failed job keeps its error', async () => {
        const error = { code: 'PERMISSION_DENIED', message: '[ketter] [fs] write: permission denied', portal: 'delivery', path: 'out/a.wav' } as const;
        const events = jobEvents({ outcome: 'failed', error, files: 1 });
        await store.append(events);
        const job = await store.getJob(events[0]!.jobId);
        expect(summaryOf(job!)).toEqual(summaryOf(reduceJob(events)!));
        expect(job!.status).toBe('failed');
        expect(job!.error).toEqual(error);
        expect(job!.finishedAt).toBe(events.at(-1)!.ts);
      });

      test('a cancelled job', async () => {
        const events = jobEvents({ outcome: 'cancelled', files: 2 });
        await store.append(events);
        const job = await store.getJob(events[0]!.jobId);
        expect(summaryOf(job!)).toEqual(summaryOf(reduceJob(events)!));
        expect(job!.status).toBe('cancelled');
        expect(job!.finishedAt).toBe(events.at(-1)!.ts);
      });

      test('a started job without a terminal event is running', async () => {
        const events = jobEvents({ outcome: 'running', files: 2 });
        await store.append(events);
        const job = await store.getJob(events[0]!.jobId);
        expect(summaryOf(job!)).toEqual(summaryOf(reduceJob(events)!));
        expect(job).toMatchObject({ status: 'running', finishedAt: null, durationMs: null, error: null, strategy: 'DIRECT' });
      });

      test.skipIf(bulkEvents === 0)(`${bulkEvents} events of one job in batches of ${bulkBatch}`, async () => {
        const files = Math.max(0, Math.floor((bulkEvents - 6) / 2));
        const events = jobEvents({ files, fileBytes: 16_384 });
        await appendInBatches(store, events, bulkBatch);
        const job = await store.getJob(events[0]!.jobId);
        expect(job!.events.length).toBe(events.length);
        expect(job!.events.every((e, i) => e.seq === i && e.id === events[i]!.id)).toBe(true);
        expect(job).toMatchObject({ status: 'succeeded', filesCopied: files, bytesCopied: files * 16_384 });
      });
    });

    describe('history', () => {
      const base = Date.parse('2026-04-01T08:00:00.000Z');
      const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString();

      test('most recent first, with limit and a default limit of 50', async () => {
        const ids: string[] = [];
        for (let i = 0; i < 4; i++) {
          const events = jobEvents({ start: at(i), files: 1 });
          ids.push(events[0]!.jobId);
          await store.append(events);
        }
        expect((await store.listJobs()).map((j) => j.id)).toEqual([...ids].reverse());
        expect((await store.listJobs({ limit: 2 })).map((j) => j.id)).toEqual([ids[3], ids[2]]);

        const many: KetterEvent[] = [];
        for (let i = 0; i < 52; i++) many.push(...jobEvents({ start: at(10 + i), outcome: 'created' }));
        await store.append(many);
        const page = await store.listJobs();
        expect(page.length).toBe(50);
        expect(page[0]!.id).toBe(many.at(-1)!.jobId);
        const times = page.map((j) => Date.parse(j.createdAt));
        expect(times).toEqual([...times].sort((x, y) => y - x));
      });

      test('filters mode, status and strategy, alone and combined', async () => {
        const specs = [
          { mode: 'copy', outcome: 'succeeded', strategy: 'DIRECT' },
          { mode: 'copy', outcome: 'succeeded', strategy: 'ZIP_FIRST' },
          { mode: 'move', outcome: 'succeeded', strategy: 'ZIP_FIRST' },
          { mode: 'move', outcome: 'failed', strategy: 'ZIP_FIRST' },
          { mode: 'copy', outcome: 'cancelled', strategy: 'DIRECT' },
          { mode: 'move', outcome: 'running', strategy: 'DIRECT' },
        ] as const;
        const ids: string[] = [];
        for (const [i, spec] of specs.entries()) {
          const events = jobEvents({ ...spec, start: at(i), files: 1 });
          ids.push(events[0]!.jobId);
          await store.append(events);
        }
        const idsOf = (jobs: JobSummary[]) => jobs.map((j) => j.id);
        const expected = (pick: (s: (typeof specs)[number]) => boolean) =>
          specs.flatMap((s, i) => (pick(s) ? [ids[i]] : [])).reverse();

        expect(idsOf(await store.listJobs({ mode: 'move' }))).toEqual(expected((s) => s.mode === 'move'));
        expect(idsOf(await store.listJobs({ status: 'succeeded' }))).toEqual(expected((s) => s.outcome === 'succeeded'));
        expect(idsOf(await store.listJobs({ strategy: 'ZIP_FIRST' }))).toEqual(expected((s) => s.strategy === 'ZIP_FIRST'));
        expect(idsOf(await store.listJobs({ status: 'running' }))).toEqual(expected((s) => s.outcome === 'running'));
        expect(idsOf(await store.listJobs({ mode: 'move', strategy: 'ZIP_FIRST' }))).toEqual(
          expected((s) => s.mode === 'move' && s.strategy === 'ZIP_FIRST'),
        );
        expect(idsOf(await store.listJobs({ mode: 'copy', status: 'succeeded', strategy: 'DIRECT' }))).toEqual([ids[0]]);
        expect(idsOf(await store.listJobs({ mode: 'move', status: 'cancelled' }))).toEqual([]);
        expect(idsOf(await store.listJobs({ strategy: 'ZIP_FIRST', limit: 1 }))).toEqual([ids[3]]);

        const rows = await store.listJobs();
        for (const row of rows) {
          const detail = await store.getJob(row.id);
          expect(summaryOf(row)).toEqual(summaryOf(detail!));
        }
      });

      test('staging: what a job created and has not recorded removing, and the withStaging filter', async () => {
        const destination = { portal: 'dubbing', path: 'incoming' };
        const plan = (f: JobEventFactory, strategy: 'DIRECT' | 'ZIP_FIRST') => jobStart(f, { strategy, destination, files: 1 });
        // A ZIP_FIRST job whose rollback removed its staging directory but not its archive.
        const zip = new JobEventFactory({ start: at(0) });
        const zipStaging = `incoming/.ketter-${zip.jobId}.partial`;
        const zipArchive = `incoming/.ketter-${zip.jobId}.archive.zip`;
        await store.append([
          ...plan(zip, 'ZIP_FIRST'),
          zip.next('staging.removed', { portal: 'dubbing', path: zipStaging }),
          zip.next('job.failed', { error: { code: 'IO_ERROR', message: 'rollback incomplete' }, committed: false, durationMs: 5 }),
        ]);
        // A running DIRECT job, and one that committed.
        const running = new JobEventFactory({ start: at(1) });
        await store.append(plan(running, 'DIRECT'));
        const done = new JobEventFactory({ start: at(2) });
        await store.append([
          ...plan(done, 'DIRECT'),
          done.next('job.committed', { destination, files: 1, bytes: 1024 }),
          done.next('job.succeeded', { strategy: 'DIRECT', filesCopied: 1, bytesCopied: 1024, durationMs: 5, sourcesKept: [] }),
        ]);

        const byId = async () => new Map((await store.listJobs()).map((j) => [j.id, j.staging]));
        expect(await byId()).toEqual(
          new Map([
            [done.jobId, []],
            [running.jobId, [`incoming/.ketter-${running.jobId}.partial`]],
            [zip.jobId, [zipArchive]],
          ]),
        );
        expect((await store.listJobs({ withStaging: true })).map((j) => j.id)).toEqual([running.jobId, zip.jobId]);
        expect((await store.listJobs({ withStaging: true, status: 'failed' })).map((j) => j.id)).toEqual([zip.jobId]);
        expect((await store.getJob(zip.jobId))!.staging).toEqual([zipArchive]);

        // Removed after the job ended (recovery): the job drops out of the filter.
        await store.append([zip.next('staging.removed', { portal: 'dubbing', path: zipArchive })]);
        expect((await store.getJob(zip.jobId))!.staging).toEqual([]);
        expect((await store.listJobs({ withStaging: true })).map((j) => j.id)).toEqual([running.jobId]);
        for (const row of await store.listJobs()) expect(summaryOf(row)).toEqual(summaryOf((await store.getJob(row.id))!));
      });
    });

    describe('batch validation', () => {
      test('an invalid event is rejected and nothing of its batch is stored', async () => {
        const events = jobEvents({ files: 2 });
        const broken = { ...events[3]!, seq: -1 } as KetterEvent;
        const code = await rejectionCode(store.append([...events.slice(0, 3), broken, ...events.slice(4)]));
        expect(['INVALID_REQUEST', 'STORE_ERROR']).toContain(code);
        expect(await store.getJob(events[0]!.jobId)).toBeNull();
        expect(await store.listJobs()).toEqual([]);

        const wrongType = { ...events[1]!, type: 'job.exploded' } as unknown as KetterEvent;
        expect(['INVALID_REQUEST', 'STORE_ERROR']).toContain(await rejectionCode(store.append([events[0]!, wrongType])));
        const missing = { ...events[0]! } as Partial<KetterEvent>;
        delete missing.id;
        expect(['INVALID_REQUEST', 'STORE_ERROR']).toContain(await rejectionCode(store.append([missing as KetterEvent])));
        expect(await store.listJobs()).toEqual([]);

        // The store still works afterwards.
        await store.append(events);
        expect((await store.getJob(events[0]!.jobId))!.events).toEqual(events);
      });

      test('an ephemeral event (job.progress) is rejected with its batch', async () => {
        const f = new JobEventFactory();
        const created = f.next('job.created', {
          mode: 'copy',
          source: { portal: 'a', path: 'x' },
          destination: { portal: 'b', path: '' },
          algorithm: 'sha256',
          onConflict: 'fail',
          requestedStrategy: 'auto',
        });
        const progress = f.next('job.progress', { phase: 'stage', filesDone: 1, filesTotal: 2, bytesDone: 10, bytesTotal: 20 });
        expect(['INVALID_REQUEST', 'STORE_ERROR']).toContain(await rejectionCode(store.append([created, progress])));
        expect(await store.getJob(f.jobId)).toBeNull();
      });
    });

    if (options.locks ?? true) {
      describe('locks', () => {
        let root: string;
        const request = (source: string, destination: string) => ({ jobId: randomUUID(), source: `${root}${source}`, destination: `${root}${destination}` });
        const hold = async (source: string, destination: string) => {
          const lease = await store.acquireLocks(request(source, destination));
          leases.push(lease);
          return lease;
        };
        const codeFor = (source: string, destination: string) => rejectionCode(hold(source, destination));

        beforeEach(() => {
          root = `fs:/suite-${randomUUID().slice(0, 8)}`;
        });

        test('a held source blocks the same path, its ancestors and its descendants with SOURCE_LOCKED', async () => {
          await hold('/ingest/EP101', '/out/one');
          expect(await codeFor('/ingest/EP101', '/out/two')).toBe('SOURCE_LOCKED');
          expect(await codeFor('/ingest', '/out/three')).toBe('SOURCE_LOCKED');
          expect(await codeFor('/ingest/EP101/audio', '/out/four')).toBe('SOURCE_LOCKED');
          // A new job writing into a held source is refused as well: its destination is in the way.
          expect(await codeFor('/elsewhere', '/ingest/EP101/audio')).toBe('DESTINATION_LOCKED');
          expect(await codeFor('/elsewhere', '/ingest')).toBe('DESTINATION_LOCKED');
        });

        test('a held destination blocks overlapping sources (SOURCE_LOCKED) and destinations (DESTINATION_LOCKED)', async () => {
          await hold('/ingest/EP101', '/delivery/week12');
          expect(await codeFor('/delivery/week12', '/other/a')).toBe('SOURCE_LOCKED');
          expect(await codeFor('/delivery/week12/EP101', '/other/b')).toBe('SOURCE_LOCKED');
          expect(await codeFor('/other/c', '/delivery/week12')).toBe('DESTINATION_LOCKED');
          expect(await codeFor('/other/d', '/delivery')).toBe('DESTINATION_LOCKED');
          expect(await codeFor('/other/e', '/delivery/week12/EP101')).toBe('DESTINATION_LOCKED');
          // When both overlap, the source is reported.
          expect(await codeFor('/ingest/EP101', '/delivery/week12')).toBe('SOURCE_LOCKED');
        });

        test('disjoint paths and sibling prefixes do not conflict', async () => {
          await hold('/a/b', '/x/y');
          await hold('/a/bc', '/x/yz');
          await hold('/a/b-2', '/x/y.old');
          await hold('/c', '/z');
          const held = await store.listLocks();
          const mine = held.filter((l) => l.source.startsWith(root));
          expect(mine.length).toBe(4);
        });

        test('release frees the paths; releasing twice is harmless', async () => {
          const lease = await hold('/ingest/EP102', '/out/EP102');
          expect(await codeFor('/ingest/EP102', '/out/again')).toBe('SOURCE_LOCKED');
          await lease.release();
          await lease.release();
          const again = await hold('/ingest/EP102', '/out/EP102');
          expect(again.jobId).not.toBe(lease.jobId);
          // The first lease's second release did not free the new holder's lock.
          await lease.release();
          expect(await codeFor('/ingest/EP102/sub', '/out/x')).toBe('SOURCE_LOCKED');
        });

        test(`${race} concurrent acquisitions of one source: exactly one wins`, async () => {
          const attempts = Array.from({ length: race }, (_, i) => store.acquireLocks(request('/race/EP103', `/out/${i}`)));
          const results = await Promise.allSettled(attempts);
          const won = results.filter((r): r is PromiseFulfilledResult<LockLease> => r.status === 'fulfilled');
          for (const w of won) leases.push(w.value);
          expect(won.length).toBe(1);
          for (const r of results) {
            if (r.status === 'rejected') expect((r.reason as { code?: string }).code).toBe('SOURCE_LOCKED');
          }
        });

        test('listLocks reports held locks as alive, and forgets released ones', async () => {
          const req = request('/ingest/EP104', '/out/EP104');
          const lease = await store.acquireLocks(req);
          leases.push(lease);
          expect(lease.jobId).toBe(req.jobId);
          const held = (await store.listLocks()).find((l) => l.jobId === req.jobId);
          expect(held).toEqual({ jobId: req.jobId, source: req.source, destination: req.destination, alive: true });
          await lease.release();
          expect((await store.listLocks()).some((l) => l.jobId === req.jobId)).toBe(false);
        });
      });
    }

    if (options.audit ?? true) {
      describe('audit chain', () => {
        test('an empty store verifies', async () => {
          expect(await store.verifyAudit()).toMatchObject({ ok: true, records: 0 });
        });

        test('valid data verifies and every record is counted', async () => {
          const a = jobEvents({ files: 3 });
          const b = jobEvents({ files: 2, outcome: 'failed' });
          await store.append(a.slice(0, 4));
          await store.append([...b, ...a.slice(4)]);
          const report = await store.verifyAudit();
          expect(report).toEqual({ ok: true, records: a.length + b.length });
        });

        test('a record altered by one byte fails verification, naming it', async (ctx) => {
          const tamper = fixture?.tamper;
          if (!tamper) {
            ctx.skip();
            return;
          }
          const events = [...jobEvents({ files: 3 }), ...jobEvents({ files: 3, outcome: 'cancelled' })];
          await appendInBatches(store, events, 5);
          const eventId = await tamper.call(fixture);
          expect(events.some((e) => e.id === eventId)).toBe(true);
          const report = await store.verifyAudit();
          expect(report.ok).toBe(false);
          expect(report.firstBad?.eventId).toBe(eventId);
          expect(report.firstBad?.jobId).toBe(events.find((e) => e.id === eventId)!.jobId);
          expect(report.firstBad?.location).toMatch(/\S/);
          expect(report.firstBad?.reason).toMatch(/\S/);
        });
      });
    }
  });
}
