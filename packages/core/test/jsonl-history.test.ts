import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { JobSummary, KetterEvent } from '@ketter/core';
import { reduceJob } from '../src/store/job-state.js';
import { GENESIS_HASH, encodeRecord } from '../src/store/jsonl/chain.js';
import { writeHead } from '../src/store/jsonl/head.js';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

const DAYS = 5;
const JOBS_PER_DAY = 100;
const FILES_PER_JOB = 998; // 5 job-level events + 2 per file: 2,001 events a job, 1,000,500 in all
/** Peak RSS a fresh store may add to answer one call over the whole history. */
const MAX_GROWTH_MB = 50;

// What a fresh process does: open the store, answer one call, report time and memory.
const CHILD = `
import { pathToFileURL } from 'node:url';
const [bundle, dir, op, arg] = process.argv.slice(2);
const { JsonlStore } = await import(pathToFileURL(bundle).href);
const store = new JsonlStore({ dir, durable: false });
await store.open();
import { readFileSync, writeFileSync } from 'node:fs';
globalThis.gc(); globalThis.gc();
// Reset the kernel's peak-RSS mark (VmHWM), so the peak read afterwards is this call's alone.
writeFileSync('/proc/self/clear_refs', '5');
const hwm = () => Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const rss0 = process.memoryUsage().rss;
const heap0 = process.memoryUsage().heapUsed;
const t0 = performance.now();
let result;
if (op === 'list') {
  const all = await store.listJobs({ limit: 100000 });
  const running = await store.listJobs({ status: 'running' });
  result = { all, running: running.map((j) => j.id) };
} else {
  const job = await store.getJob(arg);
  result = job && { status: job.status, events: job.events.length, inOrder: job.events.every((e, i) => e.seq === i && e.jobId === arg) };
}
const ms = performance.now() - t0;
const peak = hwm();
result = JSON.stringify(result);
globalThis.gc();
process.stdout.write(JSON.stringify({
  ms: Math.round(ms),
  rssGrowthMb: +((peak - rss0) / 2 ** 20).toFixed(1),
  heapAfterGcMb: +((process.memoryUsage().heapUsed - heap0) / 2 ** 20).toFixed(1),
  result: JSON.parse(result),
}));
`;

interface Measured<T> {
  ms: number;
  rssGrowthMb: number;
  heapAfterGcMb: number;
  result: T;
}

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** One job's events, schema-shaped, built directly (the schema check of the factory is too slow for a million). */
function jobOf(jobId: string, startMs: number, outcome: 'succeeded' | 'failed' | 'running'): KetterEvent[] {
  let seq = 0;
  const env = () => ({ v: 1, id: randomUUID(), ts: new Date(startMs + seq).toISOString(), jobId, seq: seq++, operator: 'ingest-operator', host: 'automation-node-01' });
  const source = { portal: 'ingest', path: `sessions/${jobId.slice(0, 8)}` };
  const events: object[] = [
    { ...env(), type: 'job.created', mode: 'copy', source, destination: { portal: 'dubbing', path: 'incoming' }, algorithm: 'sha256', onConflict: 'fail', requestedStrategy: 'auto' },
    { ...env(), type: 'job.started', pid: 4242 },
    { ...env(), type: 'plan.decided', strategy: 'DIRECT', forced: false, rootKind: 'directory', nFiles: FILES_PER_JOB, totalBytes: FILES_PER_JOB * 1024, avgSizeBytes: 1024, reason: 'few files', thresholds: { files: 1000, avgSizeBytes: 1_048_576 } },
  ];
  const hash = 'ab'.repeat(32);
  for (let f = 0; f < FILES_PER_JOB; f++) {
    const path = `EP101/audio/track-${String(f).padStart(5, '0')}.wav`;
    events.push({ ...env(), type: 'file.copied', path, size: 1024, algorithm: 'sha256', hash, attempt: 1 });
    events.push({ ...env(), type: 'file.verified', path, size: 1024, algorithm: 'sha256', sourceHash: hash, destinationHash: hash, method: 'reread' });
  }
  events.push({ ...env(), type: 'job.committed', destination: { portal: 'dubbing', path: 'incoming' }, files: FILES_PER_JOB, bytes: FILES_PER_JOB * 1024 });
  if (outcome === 'succeeded') {
    events.push({ ...env(), type: 'job.succeeded', strategy: 'DIRECT', filesCopied: FILES_PER_JOB, bytesCopied: FILES_PER_JOB * 1024, durationMs: seq, sourcesKept: [] });
  } else if (outcome === 'failed') {
    events.push({ ...env(), type: 'job.failed', error: { code: 'CHECKSUM_MISMATCH', message: '[ketter] checksum mismatch' }, committed: false, durationMs: seq });
  } else {
    events.push({ ...env(), type: 'source.deleted', path: 'x', kind: 'file' });
  }
  return events as KetterEvent[];
}

/**
 * Write a chained trail of DAYS daily files directly with the store's chain helper (as the
 * store would, far faster than a million validated appends); return each job's summary.
 */
async function writeHistory(dir: string): Promise<{ summaries: Map<string, JobSummary>; records: number }> {
  const auditDir = join(dir, 'audit');
  await rm(auditDir, { recursive: true, force: true });
  await (await import('node:fs/promises')).mkdir(auditDir, { recursive: true });
  const summaries = new Map<string, JobSummary>();
  let prev = GENESIS_HASH;
  let records = 0;
  let file = '';
  let size = 0;
  for (let day = 0; day < DAYS; day++) {
    file = `events-2026-03-0${day + 1}.jsonl`;
    const handle = await open(join(auditDir, file), 'w');
    size = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      const data = Buffer.concat(pending);
      await handle.write(data);
      size += data.length;
      pending = [];
      pendingBytes = 0;
    };
    for (let j = 0; j < JOBS_PER_DAY; j++) {
      const n = day * JOBS_PER_DAY + j;
      const outcome = n % 7 === 3 ? 'failed' : n % 97 === 5 ? 'running' : 'succeeded';
      const events = jobOf(randomUUID(), Date.parse(`2026-03-0${day + 1}T00:00:00.000Z`) + j * 60_000, outcome);
      const { events: _all, ...summary } = reduceJob(events)!;
      summaries.set(summary.id, summary);
      for (const event of events) {
        const record = encodeRecord(prev, JSON.stringify(event));
        prev = record.hash;
        pending.push(record.line);
        pendingBytes += record.line.length;
        records += 1;
      }
      if (pendingBytes > 8 << 20) await flush();
    }
    await flush();
    await handle.close();
  }
  await writeHead(auditDir, { file, size, records, hash: prev }, false);
  return { summaries, records };
}

describe('JSONL store over a history of a million events', () => {
  let bundle: string;
  let child: string;
  let dir: string;
  let history: { summaries: Map<string, JobSummary>; records: number };

  beforeAll(async () => {
    const work = await mkdtemp(join(tmpdir(), 'ketter-jsonl-history-'));
    tempDirs.push(work);
    bundle = join(work, 'jsonl-store.mjs');
    child = join(work, 'child.mjs');
    await writeFile(child, CHILD);
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
      banner: { js: "import { createRequire as __ketterRequire } from 'node:module'; const require = __ketterRequire(import.meta.url);" },
    });
    dir = join(work, 'store');
    const t0 = performance.now();
    history = await writeHistory(dir);
    console.log(`[history] ${history.records} records in ${DAYS} daily files written in ${Math.round(performance.now() - t0)} ms`);
  }, 300_000);

  async function measure<T>(op: 'list' | 'get', arg = ''): Promise<Measured<T>> {
    const { stdout } = await run(process.execPath, ['--expose-gc', child, bundle, dir, op, arg], { maxBuffer: 64 << 20 });
    return JSON.parse(stdout) as Measured<T>;
  }

  const SUMMARY_KEYS = ['id', 'status', 'mode', 'source', 'destination', 'strategy', 'nFiles', 'totalBytes', 'filesCopied', 'bytesCopied', 'operator', 'host', 'createdAt', 'finishedAt', 'durationMs', 'error'] as const;
  const pick = (j: JobSummary) => Object.fromEntries(SUMMARY_KEYS.map((k) => [k, j[k]]));

  test(
    'a fresh store answers listJobs (index rebuilt, then read) and getJob within bounded memory',
    async () => {
      expect(history.records).toBeGreaterThanOrEqual(1_000_000);
      const sorted = [...history.summaries.values()].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
      const expected = sorted.map(pick);
      const expectedRunning = sorted.filter((j) => j.status === 'running').map((j) => j.id);

      type Listed = { all: JobSummary[]; running: string[] };
      const rebuild = await measure<Listed>('list');
      const indexed = await measure<Listed>('list');
      for (const m of [rebuild, indexed]) {
        expect(m.result.all.map(pick)).toEqual(expected);
        expect(m.result.running).toEqual(expectedRunning);
      }

      const middle = sorted[Math.floor(sorted.length / 2)]!.id;
      type Got = { status: string; events: number; inOrder: boolean } | null;
      const got = await measure<Got>('get', middle);
      expect(got.result).toEqual({ status: history.summaries.get(middle)!.status, events: FILES_PER_JOB * 2 + 5, inOrder: true });
      const oldest = await measure<Got>('get', sorted.at(-1)!.id);
      expect(oldest.result).toMatchObject({ events: FILES_PER_JOB * 2 + 5, inOrder: true });
      const unknown = await measure<Got>('get', randomUUID());
      expect(unknown.result).toBeNull();

      const rows = [
        ['listJobs, no index (rebuild + save)', rebuild],
        ['listJobs, index present', indexed],
        ['getJob, a job of day 3', got],
        ['getJob, the oldest job', oldest],
        ['getJob, unknown id', unknown],
      ] as const;
      for (const [what, m] of rows) console.log(`[history] ${what}: ${m.ms} ms, peak RSS +${m.rssGrowthMb} MB, heap after GC +${m.heapAfterGcMb} MB`);
      for (const [what, m] of rows) expect(m.rssGrowthMb, what).toBeLessThan(MAX_GROWTH_MB);
    },
    300_000,
  );
});
