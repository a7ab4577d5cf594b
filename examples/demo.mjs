#!/usr/bin/env node
// A real demo on the embedded defaults: creates sample folders, runs a verified COPY of a
// small session (many small files → ZIP_FIRST) and a verified MOVE of a single large file
// (DIRECT) with the `ketter` command, then shows the job history and checks the audit trail.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'ketter-demo-'));
const ingest = join(work, 'ingest');
const delivery = join(work, 'delivery');
const home = process.env.KETTER_HOME ?? join(homedir(), '.ketter');

// A Pro Tools-like session: 1,200 short clips plus a session file, and one big picture file.
const session = join(ingest, 'EP101 Dub Session');
mkdirSync(join(session, 'Audio Files'), { recursive: true });
for (let i = 0; i < 1200; i++) {
  writeFileSync(join(session, 'Audio Files', `VO_${String(i).padStart(4, '0')}.wav`), Buffer.alloc(1024 + (i % 64), i % 256));
}
writeFileSync(join(session, 'EP101 Dub Session.ptx'), 'session');
const picture = join(ingest, 'EP101_picture.mov');
const block = Buffer.alloc(1024 * 1024);
for (let i = 0; i < block.length; i++) block[i] = (i * 31) % 251;
writeFileSync(picture, Buffer.concat(Array.from({ length: 64 }, () => block)));
mkdirSync(delivery);

function ketter(...args) {
  const shown = args.map((a) => (/[\s'"]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a));
  console.log(`\n$ ketter ${shown.join(' ')}`);
  const run = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (run.status !== 0) {
    console.error(`\nketter exited with ${run.status}`);
    process.exit(run.status ?? 1);
  }
}

console.log(`Demo folders: ${work}`);
ketter('transfer', '--from', session, '--to', delivery, '--mode', 'copy');
ketter('transfer', '--from', picture, '--to', delivery, '--mode', 'move');
ketter('jobs', 'list', '--limit', '5');
ketter('audit', 'verify');
console.log(`\nDelivered: ${delivery}`);
console.log(`Audit log (append-only, hash-chained JSONL): ${join(home, 'audit')}`);
