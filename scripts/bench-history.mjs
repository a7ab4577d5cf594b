#!/usr/bin/env node
// Benchmark: does a job cost more as the embedded store's history grows? The same
// `ketter transfer` (2,000 × 1 KiB, verified COPY) runs against JSONL stores already
// holding 0, 2,000 and 20,000 jobs spread over 100 days — some failed (their rollback done,
// as most failures end), some recorded as running on another host — alternating stores round
// by round, and prints medians and the ratio to the empty store.
//
//   pnpm bench:history [--rounds 3] [--histories 0,2000,20000] [--failed 0.05] [--elsewhere 40]
import { mkdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median, smallTree, timed, scriptArgs } from './bench/common.mjs';

const { values: args } = parseArgs({
  args: scriptArgs(),
  options: {
    rounds: { type: 'string', default: '3' },
    histories: { type: 'string', default: '0,2000,20000' },
    failed: { type: 'string', default: '0.05' },
    elsewhere: { type: 'string', default: '40' },
    dir: { type: 'string', default: '/tmp/ketter-bench-history' },
  },
});
const rounds = Number(args.rounds);
const histories = args.histories.split(',').map(Number);
const root = args.dir;
const dist = (path) => new URL(`../packages/${path}`, import.meta.url).href;
const { JsonlStore } = await import(dist('core/dist/index.js'));
const { JobEventFactory, jobStart } = await import(dist('core/dist/testing/index.js'));
const cli = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

const DAY_MS = 86_400_000;
const DAYS = 100;

/** One past job as the engine records it: a small folder copied, or failed and rolled back. */
function pastJob(startMs, outcome, host) {
  const f = new JobEventFactory({ start: new Date(startMs), host });
  const destination = { portal: 'local', path: 'archive/out' };
  const staging = `archive/out/.ketter-${f.jobId}.partial`;
  const events = jobStart(f, { source: { portal: 'local', path: 'archive/in' }, destination, files: 4, staging });
  if (outcome === 'running') return events;
  for (let i = 0; i < 4; i++) {
    const path = `take ${i}.wav`;
    const hash = (f.jobId.replaceAll('-', '') + f.jobId.replaceAll('-', '')).slice(0, 64);
    events.push(
      f.next('file.copied', { path, size: 1024, algorithm: 'sha256', hash, attempt: 1 }),
      f.next('file.verified', { path, size: 1024, algorithm: 'sha256', sourceHash: hash, destinationHash: hash, method: 'reread' }),
    );
  }
  if (outcome === 'failed') {
    events.push(
      f.next('staging.removed', { portal: 'local', path: staging }),
      f.next('job.failed', { error: { code: 'PERMISSION_DENIED', message: 'permission denied' }, committed: false, durationMs: 40 }),
    );
  } else {
    events.push(
      f.next('job.committed', { destination, files: 4, bytes: 4096 }),
      f.next('job.succeeded', { strategy: 'DIRECT', filesCopied: 4, bytesCopied: 4096, durationMs: 40, sourcesKept: [] }),
    );
  }
  return events;
}

/** A store holding `jobs` past jobs over DAYS daily files, written as the days passed. */
async function makeHistory(dir, jobs) {
  let day = Date.now() - DAYS * DAY_MS;
  const store = new JsonlStore({ dir, durable: false, now: () => new Date(day) });
  await store.open();
  const perDay = Math.ceil(jobs / DAYS);
  const failEvery = Number(args.failed) > 0 ? Math.round(1 / Number(args.failed)) : Infinity;
  const elsewhere = Number(args.elsewhere);
  try {
    for (let done = 0; done < jobs; day += DAY_MS) {
      const batch = [];
      for (let i = 0; i < perDay && done < jobs; i++, done++) {
        const outcome = done % failEvery === failEvery - 1 ? 'failed' : done < elsewhere ? 'running' : 'succeeded';
        batch.push(...pastJob(day + i * 1000, outcome, outcome === 'running' ? 'another-node' : hostname()));
      }
      await store.append(batch);
    }
  } finally {
    await store.close();
  }
}

rmSync(root, { recursive: true, force: true });
mkdirSync(root, { recursive: true });
const source = join(root, 'small');
smallTree(source, 1, 2000, 1024);
for (const jobs of histories) {
  const started = Date.now();
  await makeHistory(join(root, `home-${jobs}`), jobs);
  console.log(`history of ${jobs.toLocaleString('en')} jobs written in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

const results = new Map(histories.map((h) => [h, { seconds: [], rss: [] }]));
let out = 0;
for (let round = 0; round < rounds; round++) {
  // Rotate the order so no store always runs first.
  const order = histories.map((_, i) => histories[(i + round) % histories.length]);
  for (const jobs of order) {
    const to = join(root, 'out', String(out++));
    mkdirSync(to, { recursive: true });
    const r = timed(process.execPath, [cli, 'transfer', '--from', source, '--to', to, '--json'], {
      env: { KETTER_HOME: join(root, `home-${jobs}`) },
      rssFile: join(root, 'rss.txt'),
    });
    results.get(jobs).seconds.push(r.seconds);
    results.get(jobs).rss.push(r.rssMiB);
  }
}

const base = median(results.get(histories[0]).seconds);
console.log(`\n2,000 × 1 KiB verified COPY, median of ${rounds}, by jobs already in the JSONL store`);
console.log('| jobs in history | seconds (range) | × first row | peak RSS MiB |');
console.log('|---|---|---|---|');
for (const jobs of histories) {
  const { seconds, rss } = results.get(jobs);
  const m = median(seconds);
  const range = `${Math.min(...seconds).toFixed(2)}–${Math.max(...seconds).toFixed(2)}`;
  console.log(`| ${jobs.toLocaleString('en')} | ${m.toFixed(2)} (${range}) | ${(m / base).toFixed(2)} | ${Math.round(median(rss))} |`);
}
rmSync(root, { recursive: true, force: true });
