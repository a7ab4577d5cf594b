#!/usr/bin/env node
// Benchmark: Ketter's verified transfers beside cp, rsync and rclone on the same data in the
// same run, alternating tools round by round, reporting medians and Ketter/peer ratios.
//
//   pnpm bench [--rounds 3] [--only big,small,medium,mix] [--dir /tmp/ketter-bench] [--modes copy,move]
//
// Traps on this kind of machine (see docs/performance.md): deleting files slows creating
// files for a while, so every run writes into a fresh folder and outputs are deleted only
// at the end; freed memory goes back to the host, so only interleaved runs are compared.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bigFile, dropCaches, have, median, smallTree, timed as timedRun, scriptArgs } from './bench/common.mjs';

const { values: args } = parseArgs({
  args: scriptArgs(),
  options: {
    rounds: { type: 'string', default: '3' },
    only: { type: 'string', default: 'big,small,medium,mix' },
    modes: { type: 'string', default: 'copy' },
    dir: { type: 'string', default: '/tmp/ketter-bench' },
    'big-mib': { type: 'string', default: '1024' },
    'mix-mib': { type: 'string', default: '512' },
    'medium-files': { type: 'string', default: '20000' },
    keep: { type: 'boolean', default: false },
  },
});
const rounds = Number(args.rounds);
const root = args.dir;
const cli = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));

const DATASETS = {
  big: { label: `one ${args['big-mib']} MiB file`, make: (d) => bigFile(join(d, 'big.bin'), Number(args['big-mib'])), source: 'big.bin' },
  small: { label: '2,000 × 1 KiB', make: (d) => smallTree(join(d, 'small'), 1, 2000, 1024), source: 'small' },
  medium: {
    label: `${Number(args['medium-files']).toLocaleString('en')} × 16 KiB in 20 folders`,
    make: (d) => smallTree(join(d, 'medium'), 20, Number(args['medium-files']) / 20, 16 * 1024),
    source: 'medium',
  },
  mix: {
    label: `${args['mix-mib']} MiB + 2,000 × 1 KiB`,
    make: (d) => {
      smallTree(join(d, 'mix', 'audio'), 1, 2000, 1024);
      bigFile(join(d, 'mix', 'picture.mov'), Number(args['mix-mib']));
    },
    source: 'mix',
  },
};

let outCounter = 0;
const trash = join(root, 'trash');
function freshOut() {
  const d = join(root, 'out', String(outCounter++));
  mkdirSync(d, { recursive: true });
  return d;
}

const timed = (cmd, argv, env = {}) => timedRun(cmd, argv, { env, rssFile: join(root, 'rss.txt') });

function tools(ds, mode) {
  const list = [];
  const ketter = (strategy) => (src, out) =>
    timed(process.execPath, [cli, 'transfer', '--from', src, '--to', out, '--mode', mode, '--strategy', strategy, '--json'], {
      KETTER_HOME: join(root, 'home'),
    });
  list.push({ name: 'ketter direct', run: ketter('direct') });
  if (ds !== 'big') list.push({ name: 'ketter zip', run: ketter('zip') });
  if (mode === 'copy') {
    list.push({ name: 'cp -r', run: (src, out) => timed('cp', ['-r', src, out]) });
    if (have('rsync')) list.push({ name: 'rsync -a', run: (src, out) => timed('rsync', ['-a', src, out]) });
    if (have('rclone')) list.push({ name: 'rclone copy', run: (src, out) => timed('rclone', ['copy', src, join(out, src.split('/').pop())]) });
  }
  return list;
}

rmSync(root, { recursive: true, force: true });
mkdirSync(trash, { recursive: true });
const dropped = dropCaches();
console.log(`# Ketter benchmark — ${new Date().toISOString()}`);
console.log(`rounds: ${rounds}; caches dropped between runs: ${dropped ? 'yes' : 'no (not permitted here)'}`);
for (const peer of ['rsync', 'rclone']) if (!have(peer)) console.log(`note: ${peer} is not installed; skipped (apt-get install ${peer})`);

const results = [];
for (const ds of args.only.split(',')) {
  const spec = DATASETS[ds];
  if (!spec) throw new Error(`unknown dataset ${ds}`);
  const data = join(root, 'data', ds);
  mkdirSync(data, { recursive: true });
  spec.make(data);
  for (const mode of args.modes.split(',')) {
    const list = tools(ds, mode);
    const samples = Object.fromEntries(list.map((t) => [t.name, []]));
    for (let r = 0; r < rounds; r++) {
      // Each round starts with the next tool: no tool always runs first after a cache drop
      // (or right after the memory a previous run gave back to the host).
      for (const tool of [...list.slice(r % list.length), ...list.slice(0, r % list.length)]) {
        let src = join(data, spec.source);
        if (mode === 'move') {
          // MOVE consumes its source: give each run its own copy, made outside the timing.
          const copy = freshOut();
          execFileSync('cp', ['-a', src, copy]);
          src = join(copy, spec.source);
        }
        const out = freshOut();
        dropCaches();
        samples[tool.name].push(tool.run(src, out));
        renameSync(out, join(trash, `${outCounter}`));
      }
    }
    const row = { dataset: spec.label, mode, tools: {} };
    for (const [name, xs] of Object.entries(samples)) {
      const seconds = xs.map((x) => x.seconds);
      row.tools[name] = { seconds: median(seconds), min: Math.min(...seconds), max: Math.max(...seconds), rssMiB: Math.max(...xs.map((x) => x.rssMiB)) };
    }
    results.push(row);
    print(row);
  }
}

function print(row) {
  const names = Object.keys(row.tools);
  const peers = names.filter((n) => !n.startsWith('ketter'));
  console.log(`\n## ${row.dataset} — ${row.mode.toUpperCase()} (median of ${rounds})`);
  console.log(`| tool | seconds | range | peak RSS MiB | ${peers.map((p) => `÷ ${p}`).join(' | ')} |`);
  console.log(`|---|---|---|---|${peers.map(() => '---').join('|')}|`);
  for (const n of names) {
    const t = row.tools[n];
    const ratios = peers.map((p) => (t.seconds / row.tools[p].seconds).toFixed(2));
    console.log(`| ${n} | ${t.seconds.toFixed(2)} | ${t.min.toFixed(2)}–${t.max.toFixed(2)} | ${t.rssMiB.toFixed(0)} | ${ratios.join(' | ')} |`);
  }
}

writeFileSync(join(process.cwd(), 'bench-results.json'), JSON.stringify({ date: new Date().toISOString(), rounds, results }, null, 2));
if (!args.keep) rmSync(root, { recursive: true, force: true });
