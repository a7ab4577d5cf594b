#!/usr/bin/env node
// Benchmark: Ketter's verified transfers to an SFTP host beside rclone, scp, rsync, sftp and
// tar | ssh, on the same data in the same run, over a throwaway loopback sshd with added
// latency (a delaying TCP relay in front of sshd). Alternates tools round by round and
// reports medians and Ketter/peer ratios, like scripts/bench.mjs.
//
//   node scripts/bench-sftp.mjs [--rounds 3] [--delays 0,2,10] [--big-delays 0,2] [--only small,big] [--big-mib 1024]
//        [--tools NAME,...] [--dir /tmp/ketter-bench-sftp] [--out bench-sftp-results.json] [--keep] [--profile DIR]
//
// Needs root (it logs in as root on its own sshd) and the peers (scripts/ensure-bench-deps.sh
// installs them; a missing peer is skipped and said so). Run `pnpm build` first: it runs the
// built CLI (packages/cli/dist/bin.js).
//
// Traps on this kind of machine (docs/performance.md, shared MEASUREMENTS): deleting files
// slows creating files for ~60 s, so every run writes into a fresh remote folder and the
// small-file outputs are deleted only at the end (the single big files are deleted after each
// run, or the disk would fill; all small-file runs come first); freed memory goes back to the
// host, so only interleaved runs are compared, as ratios.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bigFile, dropCaches, have, median, smallTree, timed as timedRun, scriptArgs } from './bench/common.mjs';
import { startSshd } from './bench/sshd.mjs';
import { phaseBreakdown } from './bench/phases.mjs';
import { spawnRelay } from './latency-relay.mjs';

const { values: args } = parseArgs({
  args: scriptArgs(),
  options: {
    rounds: { type: 'string', default: '3' },
    delays: { type: 'string', default: '0,2,10' },
    'big-delays': { type: 'string' },
    only: { type: 'string', default: 'small,big' },
    tools: { type: 'string' },
    dir: { type: 'string', default: '/tmp/ketter-bench-sftp' },
    'big-mib': { type: 'string', default: '1024' },
    'small-files': { type: 'string', default: '2000' },
    'timeout-s': { type: 'string', default: '900' },
    out: { type: 'string', default: 'bench-sftp-results.json' },
    keep: { type: 'boolean', default: false },
    // Write a V8 CPU profile of every Ketter run into this folder (for `node --cpu-prof` readers).
    profile: { type: 'string' },
  },
});
const rounds = Number(args.rounds);
const delays = args.delays.split(',').map(Number);
// The big file is latency-insensitive and slow to repeat: it may run at fewer delays.
const bigDelays = args['big-delays'] ? args['big-delays'].split(',').map(Number) : delays;
const allDelays = [...new Set([...delays, ...bigDelays])].sort((a, b) => a - b);
const root = args.dir;
const cli = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));
const toolFilter = args.tools ? new Set(args.tools.split(',').map((s) => s.trim())) : null;

if (!existsSync(cli)) throw new Error(`${cli} is missing: run pnpm build first`);
if (!existsSync('/usr/bin/time')) throw new Error('/usr/bin/time (GNU time) is missing: run scripts/ensure-bench-deps.sh');

const smallFiles = Number(args['small-files']);
const DATASETS = {
  small: { label: `${smallFiles.toLocaleString('en')} × 1 KiB`, make: (d) => smallTree(join(d, 'small'), 1, smallFiles, 1024), source: 'small', many: true },
  big: { label: `one ${args['big-mib']} MiB file`, make: (d) => bigFile(join(d, 'big.bin'), Number(args['big-mib'])), source: 'big.bin', many: false },
};

/** Files and bytes under a path (a file or a tree), to check each run's output outside the timing. */
function tally(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return { files: 1, bytes: st.size };
  let files = 0;
  let bytes = 0;
  for (const e of readdirSync(path, { withFileTypes: true })) {
    const t = tally(join(path, e.name));
    files += t.files;
    bytes += t.bytes;
  }
  return { files, bytes };
}

const timeoutMs = Number(args['timeout-s']) * 1000;
const timed = (cmd, argv, env = {}) => timedRun(cmd, argv, { env, rssFile: join(root, 'rss.txt'), timeoutMs });

// ---------------------------------------------------------------------------------------------
// Tools. Each `run(link, ds, outDir)` sends `data/<ds.source>` into the remote folder `outDir`
// (an existing, empty folder under the server's remote root), so it lands at outDir/<source>.

const remote = join(root, 'remote');
const data = join(root, 'data');

/** ssh options shared by every OpenSSH-based peer for one link (port). */
function sshOptions(link) {
  return [
    '-F', '/dev/null',
    '-i', link.keyPath,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${link.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'LogLevel=ERROR',
  ];
}
const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

function toolList(ds) {
  const list = [];
  const ketter = (strategy, portal) => (link, dsName, out) => {
    const rel = out.slice(remote.length + 1);
    const argv = [...(args.profile ? ['--cpu-prof', '--cpu-prof-dir', resolve(args.profile)] : []), cli, '--config', link.ketterConfig, 'transfer', '--from', join(data, DATASETS[dsName].source), '--to', `${portal}:${rel}`, '--strategy', strategy, '--json'];
    let r;
    try {
      r = timed(process.execPath, argv);
    } catch (err) {
      // A `pnpm build` elsewhere in the tree replaces dist/ under our feet: try once more
      // (into a fresh folder: the failed run may have left its staging behind).
      if (!/ERR_MODULE_NOT_FOUND|node:internal\/modules|SyntaxError/.test(String(err.message))) throw err;
      console.log(`  ${strategy} ${portal}: the CLI failed to load (a rebuild in progress?); retrying once`);
      spawnSync('sleep', ['5']);
      const again = join(out, 'retry');
      mkdirSync(again);
      argv[argv.indexOf(`${portal}:${rel}`)] = `${portal}:${rel}/retry`;
      r = timed(process.execPath, argv);
      renameSync(join(again, DATASETS[dsName].source), join(out, DATASETS[dsName].source));
    }
    const result = JSON.parse(r.stdout);
    if (result.status !== 'succeeded') throw new Error(`ketter ${strategy} ${portal}: ${result.status} ${JSON.stringify(result.error)}`);
    return { ...r, jobId: result.jobId, strategy: result.strategy, link };
  };
  list.push({ name: 'ketter auto (exec)', ketter: true, run: ketter('auto', 'execd') });
  list.push({ name: 'ketter auto (sftp only)', ketter: true, run: ketter('auto', 'sftponly') });
  if (DATASETS[ds].many) {
    list.push({ name: 'ketter direct (exec)', ketter: true, run: ketter('direct', 'execd') });
    list.push({ name: 'ketter direct (sftp only)', ketter: true, run: ketter('direct', 'sftponly') });
    list.push({ name: 'ketter zip (exec)', ketter: true, run: ketter('zip', 'execd') });
    list.push({ name: 'ketter zip (sftp only)', ketter: true, run: ketter('zip', 'sftponly') });
  }
  if (have('rclone')) {
    list.push({
      name: 'rclone copy',
      run: (link, dsName, out) => {
        const src = join(data, DATASETS[dsName].source);
        // A folder is copied into a folder of its name; a file into the folder.
        const dest = DATASETS[dsName].many ? join(out, DATASETS[dsName].source) : out;
        return timed('rclone', ['--config', link.rcloneConfig, 'copy', src, `bench:${dest}`]);
      },
    });
  }
  list.push({
    name: 'scp -r',
    run: (link, dsName, out) => timed('scp', ['-q', '-r', '-P', String(link.port), ...sshOptions(link), join(data, DATASETS[dsName].source), `root@127.0.0.1:${out}/`]),
  });
  if (have('rsync')) {
    list.push({
      name: 'rsync -a',
      run: (link, dsName, out) =>
        timed('rsync', ['-a', '-e', ['ssh', '-p', String(link.port), ...sshOptions(link)].map(shq).join(' '), join(data, DATASETS[dsName].source), `root@127.0.0.1:${out}/`]),
    });
  }
  list.push({
    name: 'sftp -b',
    run: (link, dsName, out) => {
      const src = join(data, DATASETS[dsName].source);
      const batch = join(root, 'sftp-batch.txt');
      const quote = (p) => `"${p.replace(/(["\\])/g, '\\$1')}"`;
      writeFileSync(batch, `put ${DATASETS[dsName].many ? '-r ' : ''}${quote(src)} ${quote(join(out, DATASETS[dsName].source))}\n`);
      return timed('sftp', ['-q', '-b', batch, '-P', String(link.port), ...sshOptions(link), 'root@127.0.0.1']);
    },
  });
  list.push({
    name: 'tar | ssh tar',
    run: (link, dsName, out) => {
      const ssh = ['ssh', '-p', String(link.port), ...sshOptions(link), 'root@127.0.0.1', `tar -C ${shq(out)} -xf -`].map(shq).join(' ');
      return timed('bash', ['-c', `set -o pipefail; tar -C ${shq(data)} -cf - ${shq(DATASETS[dsName].source)} | ${ssh}`]);
    },
  });
  return toolFilter ? list.filter((t) => toolFilter.has(t.name)) : list;
}

// ---------------------------------------------------------------------------------------------
// Links: for each delay, a port (sshd itself for 0 ms, else a relay in front of it) with its
// known_hosts, rclone.conf and ketter.yaml.

async function openLink(sshd, delayMs) {
  const relay = delayMs > 0 ? await spawnRelay({ toHost: '127.0.0.1', toPort: sshd.port, delayMs }) : null;
  const port = relay ? relay.port : sshd.port;
  const dir = join(root, `link-${delayMs}ms`);
  mkdirSync(dir, { recursive: true });
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, sshd.knownHosts([port]));
  const rcloneConfig = join(dir, 'rclone.conf');
  writeFileSync(
    rcloneConfig,
    ['[bench]', 'type = sftp', 'host = 127.0.0.1', `port = ${port}`, 'user = root', `key_file = ${sshd.userKeyPath}`, `known_hosts_file = ${knownHosts}`, ''].join('\n'),
  );
  const ketterConfig = join(dir, 'ketter.yaml');
  const portal = (allowExec) =>
    [
      `    type: sftp`,
      `    host: 127.0.0.1`,
      `    port: ${port}`,
      `    username: root`,
      `    root: ${JSON.stringify(remote)}`,
      `    hostKey: { knownHosts: ${JSON.stringify(knownHosts)} }`,
      `    auth: { privateKeyPath: ${JSON.stringify(sshd.userKeyPath)} }`,
      `    allowExec: ${allowExec}`,
    ].join('\n');
  writeFileSync(
    ketterConfig,
    [`store: ${JSON.stringify(join(root, 'store'))}`, 'operator: bench', 'portals:', '  execd:', portal(true), '  sftponly:', portal(false), ''].join('\n'),
  );
  return { delayMs, port, keyPath: sshd.userKeyPath, knownHosts, rcloneConfig, ketterConfig, relay };
}

// ---------------------------------------------------------------------------------------------

let sshd = null;
const links = [];
let cleanedUp = false;
async function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const link of links) await link.relay?.stop().catch(() => undefined);
  await sshd?.stop().catch(() => undefined);
  if (!args.keep) rmSync(root, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    cleanup().finally(() => process.exit(130));
  });
}

let outCounter = 0;
const trash = join(root, 'trash');
function freshOut() {
  const d = join(remote, 'out', String(outCounter++));
  mkdirSync(d, { recursive: true });
  return d;
}

const results = [];
const notes = [];
try {
  rmSync(root, { recursive: true, force: true });
  mkdirSync(trash, { recursive: true });
  mkdirSync(remote, { recursive: true });
  mkdirSync(data, { recursive: true });
  const dropped = dropCaches();
  console.log(`# Ketter SFTP benchmark — ${new Date().toISOString()}`);
  console.log(`rounds: ${rounds}; delays (ms each way, round trip +2×): ${delays.join(', ')}${bigDelays.join() !== delays.join() ? ` (big file: ${bigDelays.join(', ')})` : ''}; caches dropped between runs: ${dropped ? 'yes' : 'no (not permitted here)'}`);
  for (const peer of ['rclone', 'rsync']) {
    if (!have(peer)) {
      const note = `${peer} is not installed; skipped (scripts/ensure-bench-deps.sh installs it)`;
      notes.push(note);
      console.log(`note: ${note}`);
    }
  }
  sshd = await startSshd();
  for (const d of allDelays) links.push(await openLink(sshd, d));
  console.log(`sshd on 127.0.0.1:${sshd.port}${links.filter((l) => l.relay).map((l) => `; +${l.delayMs} ms relay on :${l.port}`).join('')}`);

  // All small-file runs first: the big runs delete their output (one file each) as they go.
  for (const ds of args.only.split(',')) {
    const spec = DATASETS[ds];
    if (!spec) throw new Error(`unknown dataset ${ds}`);
    spec.make(data);
    const expected = tally(join(data, spec.source));
    const list = toolList(ds);
    for (const link of links.filter((l) => (ds === 'big' ? bigDelays : delays).includes(l.delayMs))) {
      const samples = Object.fromEntries(list.map((t) => [t.name, []]));
      const failures = {};
      for (let r = 0; r < rounds; r++) {
        for (const tool of list) {
          const out = freshOut();
          dropCaches();
          try {
            const sample = tool.run(link, ds, out);
            const got = tally(join(out, spec.source));
            if (got.files !== expected.files || got.bytes !== expected.bytes) {
              throw new Error(`output has ${got.files} files / ${got.bytes} bytes, expected ${expected.files} / ${expected.bytes}`);
            }
            if (tool.ketter) {
              sample.phases = phaseBreakdown(cli, link.ketterConfig, sample.jobId);
              // CLI start-up, config, connecting... until job.created, and exit after the last event.
              const inJob = sample.phases.reduce((a, p) => a + p.seconds, 0);
              sample.phases.unshift({ phase: 'outside job events', seconds: Math.max(0, sample.seconds - inJob), count: 0 });
            }
            delete sample.stdout;
            delete sample.link;
            samples[tool.name].push(sample);
          } catch (err) {
            failures[tool.name] = String(err.message ?? err).slice(0, 1000);
            console.log(`  ${tool.name}: FAILED (${failures[tool.name].split('\n')[0]})`);
          }
          if (spec.many) renameSync(out, join(trash, String(outCounter)));
          else rmSync(out, { recursive: true, force: true });
        }
      }
      const row = { delayMs: link.delayMs, dataset: spec.label, datasetKey: ds, tools: {}, failures };
      for (const [name, xs] of Object.entries(samples)) {
        if (xs.length === 0) continue;
        const med = median(xs.map((x) => x.seconds));
        row.tools[name] = {
          seconds: med,
          rssMiB: Math.max(...xs.map((x) => x.rssMiB)),
          samples: xs.map((x) => Number(x.seconds.toFixed(3))),
          ...(xs[0].strategy ? { strategy: xs[0].strategy } : {}),
          // The phases of the run closest to the median.
          ...(xs[0].phases ? { phases: xs.reduce((a, b) => (Math.abs(b.seconds - med) < Math.abs(a.seconds - med) ? b : a)).phases } : {}),
        };
      }
      results.push(row);
      print(row);
    }
  }
  const targets = checkTargets();
  writeFileSync(
    resolve(process.cwd(), args.out),
    JSON.stringify({ date: new Date().toISOString(), rounds, delays, bigDelays, bigMiB: Number(args['big-mib']), notes, results, targets }, null, 2),
  );
} finally {
  await cleanup();
}

function print(row) {
  const names = Object.keys(row.tools);
  const peers = ['rclone copy', 'scp -r', 'rsync -a'].filter((p) => row.tools[p]);
  const rtt = row.delayMs > 0 ? `+${row.delayMs} ms each way (round trip +${2 * row.delayMs} ms)` : 'no added delay';
  console.log(`\n## ${row.dataset} → SFTP, ${rtt} (median of ${rounds})`);
  console.log(`| tool | seconds | peak RSS MiB |${peers.map((p) => ` ÷ ${p} |`).join('')}`);
  console.log(`|---|---|---|${peers.map(() => '---|').join('')}`);
  for (const n of names) {
    const t = row.tools[n];
    const ratios = n.startsWith('ketter') ? peers.map((p) => (t.seconds / row.tools[p].seconds).toFixed(2)) : peers.map(() => '');
    const label = (t.strategy ? `${n} → ${t.strategy}` : n).replace(/\|/g, '\\|');
    console.log(`| ${label} | ${t.seconds.toFixed(2)} | ${t.rssMiB.toFixed(0)} |${ratios.map((x) => ` ${x} |`).join('')}`);
  }
  for (const [n, msg] of Object.entries(row.failures)) console.log(`| ${n.replace(/\|/g, '\\|')} | failed: ${msg.split('\n')[0].slice(0, 120)} | | |`);
  const withPhases = names.filter((n) => row.tools[n].phases);
  if (withPhases.length > 0) {
    console.log(`\nKetter phases (seconds, from job events of the median run):`);
    for (const n of withPhases) {
      console.log(`- ${n}: ${row.tools[n].phases.map((p) => `${p.phase} ${p.seconds.toFixed(2)}`).join(', ')}`);
    }
  }
}

/** The performance issue's targets: 2 ms each way, small files, verified, auto strategy. */
function checkTargets() {
  const row = results.find((r) => r.delayMs === 2 && r.datasetKey === 'small');
  const rclone = row?.tools['rclone copy'];
  if (!row || !rclone) return null;
  const out = [];
  for (const [name, limit] of [
    ['ketter auto (exec)', 0.1],
    ['ketter auto (sftp only)', 0.33],
  ]) {
    const t = row.tools[name];
    if (!t) continue;
    const ratio = t.seconds / rclone.seconds;
    out.push({ tool: name, seconds: t.seconds, rcloneSeconds: rclone.seconds, ratio, limit, met: ratio <= limit });
  }
  console.log(`\n## Targets (2,000 × 1 KiB, +2 ms each way, Ketter auto ÷ rclone copy)`);
  for (const t of out) console.log(`- ${t.tool}: ${t.ratio.toFixed(3)} (target ≤ ${t.limit}) — ${t.met ? 'met' : 'NOT met'}`);
  return out;
}
