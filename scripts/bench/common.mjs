// Pieces both benchmarks share: datasets, timing with peak RSS, cache dropping, medians.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Deterministic, non-repeating-looking bytes (no compression or dedup shortcut for anyone). */
export function pattern(size, seed) {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (i * 131 + seed * 17) & 0xff;
  return b;
}

/** A file of `mib` MiB, written 64 MiB at a time. */
export function bigFile(path, mib) {
  mkdirSync(join(path, '..'), { recursive: true });
  const block = pattern(1024 * 1024, 7);
  const parts = [];
  for (let i = 0; i < mib; i++) {
    block[0] = i & 0xff;
    parts.push(Buffer.from(block));
    if (parts.length === 64 || i === mib - 1) {
      writeFileSync(path, Buffer.concat(parts), { flag: i < 64 ? 'w' : 'a' });
      parts.length = 0;
    }
  }
}

/** `perFolder` files of `size` bytes in each of `folders` folders (directly in `dir` when there is one). */
export function smallTree(dir, folders, perFolder, size) {
  for (let f = 0; f < folders; f++) {
    const d = folders === 1 ? dir : join(dir, `folder ${String(f).padStart(2, '0')}`);
    mkdirSync(d, { recursive: true });
    for (let i = 0; i < perFolder; i++) writeFileSync(join(d, `clip_${String(i).padStart(5, '0')}.wav`), pattern(size, i + f));
  }
}

/** Flush and drop the page cache where permitted; says whether it could. */
export function dropCaches() {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Run a command under GNU time: wall seconds, peak RSS (MiB) and stdout; throws on failure. */
export function timed(cmd, argv, { env = {}, rssFile, timeoutMs } = {}) {
  rmSync(rssFile, { force: true });
  const start = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...argv], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    ...(timeoutMs ? { timeout: timeoutMs } : {}),
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.error) throw new Error(`${cmd} ${argv.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout).slice(-2000)}`);
  const rssKiB = Number(execFileSync('tail', ['-n1', rssFile], { encoding: 'utf8' }).trim());
  return { seconds, rssMiB: rssKiB / 1024, stdout: r.stdout };
}

/**
 * The script's arguments. `pnpm bench -- --rounds 3` (as npm wants it) hands the script a
 * leading `--`, which would end option parsing: it is dropped, so both spellings work.
 */
export function scriptArgs() {
  const argv = process.argv.slice(2);
  return argv[0] === '--' ? argv.slice(1) : argv;
}
