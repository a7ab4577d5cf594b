#!/usr/bin/env node
// The audit store's cost on a 20,000-file job: the same transfer recorded in the JSONL store
// and in PostgreSQL, alternating, in one run. Prints the job's total time, the events each
// store received, and their append rate (events per second of time spent inside append).
//
//   node scripts/bench-stores.mjs [--files 20000] [--rounds 2] [--pg postgres://postgres@127.0.0.1:5432/test]
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { scriptArgs } from './bench/common.mjs';
import { FsAdapter } from '@ketter/adapter-fs';
import { JsonlStore, Portal, transfer } from '@ketter/core';
import { PostgresStore, migrate } from '@ketter/store-postgres';
import pg from 'pg';

const { values: args } = parseArgs({
  args: scriptArgs(),
  options: {
    files: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '2' },
    pg: { type: 'string', default: process.env.KETTER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
    dir: { type: 'string', default: '/tmp/ketter-bench-stores' },
  },
});
const nFiles = Number(args.files);
rmSync(args.dir, { recursive: true, force: true });
const data = join(args.dir, 'data', 'session');
for (let f = 0; f < 20; f++) {
  mkdirSync(join(data, `folder ${f}`), { recursive: true });
  for (let i = 0; i < nFiles / 20; i++) writeFileSync(join(data, `folder ${f}`, `clip_${i}.wav`), Buffer.alloc(1024, i));
}
const schema = `ketter_bench_${process.pid}`;
await migrate({ connectionString: args.pg, schema });

/** Wrap a store so time spent in append is measured. */
function timedStore(store) {
  const stats = { events: 0, ms: 0 };
  const append = store.append.bind(store);
  store.append = async (events) => {
    const t = performance.now();
    await append(events);
    stats.ms += performance.now() - t;
    stats.events += events.length;
  };
  return { store, stats };
}

const source = new Portal('data', new FsAdapter({ root: join(args.dir, 'data') }));
await source.adapter.connect();
const rows = [];
let n = 0;
for (let r = 0; r < Number(args.rounds); r++) {
  for (const kind of ['jsonl', 'postgres']) {
    const out = join(args.dir, 'out', String(n++));
    mkdirSync(out, { recursive: true });
    const dest = new Portal('out', new FsAdapter({ root: out }));
    await dest.adapter.connect();
    const raw = kind === 'jsonl' ? new JsonlStore({ dir: join(args.dir, `store-${n}`) }) : new PostgresStore({ connectionString: args.pg, schema });
    await raw.open();
    const { store, stats } = timedStore(raw);
    const t = performance.now();
    await transfer({ mode: 'copy', source: { portal: source, path: 'session' }, destination: { portal: dest, path: '' } }, { store, strategy: 'direct' });
    const total = (performance.now() - t) / 1000;
    await raw.close();
    rows.push({ kind, total, events: stats.events, rate: stats.events / (stats.ms / 1000), appendSeconds: stats.ms / 1000 });
    console.log(`${kind.padEnd(8)} job ${total.toFixed(2)} s, ${stats.events} events, ${(stats.events / (stats.ms / 1000)).toFixed(0)} events/s in append (${(stats.ms / 1000).toFixed(2)} s)`);
  }
}
const client = new pg.Client({ connectionString: args.pg });
await client.connect();
await client.query(`DROP SCHEMA ${schema} CASCADE`);
await client.end();
rmSync(args.dir, { recursive: true, force: true });
