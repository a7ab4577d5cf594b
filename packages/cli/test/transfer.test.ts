import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KetterEventSchema } from '@ketter/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exists, parseJson, removeDir, runCli, tempDir, treeHashes } from './helpers.js';

interface TransferJson {
  jobId: string | null;
  status: string;
  mode: string;
  strategy: string | null;
  filesCopied: number;
  bytesCopied: number;
  durationSeconds: number;
  error?: { code: string; message: string };
}

const SESSION = 'Session ñame 01';
const TREE: Record<string, number> = {
  'Audio Files/Kick 01.wav': 48_000,
  'Audio Files/Snare — 02.wav': 12_345,
  'Bounced Files/Mixdown é (final).wav': 200_000,
  'session.ptx': 3_000,
  '日本語/ファイル 1.txt': 17,
  'zero-length.txt': 0,
};

describe('ketter transfer (copy)', () => {
  let root: string;
  let home: string;
  let env: Record<string, string>;
  let source: string;

  beforeAll(async () => {
    root = await tempDir();
    home = join(root, 'home');
    env = { KETTER_HOME: home };
    source = join(root, 'in', SESSION);
    for (const [path, size] of Object.entries(TREE)) {
      await mkdir(join(source, path, '..'), { recursive: true });
      await writeFile(join(source, path), randomBytes(size));
    }
    await mkdir(join(source, 'Empty Folder'), { recursive: true });
  });
  afterAll(async () => removeDir(root));

  const jobIds: string[] = [];

  it('copies a directory with spaces and non-ASCII names to dest/<basename>/, byte for byte', async () => {
    const dest = join(root, 'out dir');
    const before = await treeHashes(source);
    const run = await runCli(['transfer', '--from', source, '--to', dest, '--json'], { env });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const json = parseJson<TransferJson>(run.stdout);
    expect(json).toMatchObject({ status: 'succeeded', mode: 'copy', strategy: 'DIRECT' });
    expect(json.jobId).toMatch(/\S/);
    expect(json.filesCopied).toBe(Object.keys(TREE).length);
    expect(json.bytesCopied).toBe(Object.values(TREE).reduce((a, b) => a + b, 0));
    expect(typeof json.durationSeconds).toBe('number');
    expect(await treeHashes(join(dest, SESSION))).toEqual(before);
    expect(await readdir(dest)).toEqual([SESSION]); // no staging left beside it
    expect(await treeHashes(source)).toEqual(before); // COPY leaves the source alone
    jobIds.push(json.jobId as string);
  });

  it('copies a single file to dest/<basename>', async () => {
    const file = join(source, 'Bounced Files', 'Mixdown é (final).wav');
    const dest = join(root, 'single');
    const run = await runCli(['transfer', '--from', file, '--to', dest, '--json', '--hash', 'xxh128'], { env });
    expect(run.code).toBe(0);
    const json = parseJson<TransferJson>(run.stdout);
    expect(json).toMatchObject({ status: 'succeeded', mode: 'copy', strategy: 'DIRECT', filesCopied: 1, bytesCopied: 200_000 });
    expect(await readFile(join(dest, 'Mixdown é (final).wav'))).toEqual(await readFile(file));
    jobIds.push(json.jobId as string);
  });

  it('copies with the ZIP_FIRST strategy when forced, to the same layout', async () => {
    const dest = join(root, 'zipped');
    const run = await runCli(['transfer', '--from', source, '--to', dest, '--strategy', 'zip', '--json'], { env });
    expect(run.code).toBe(0);
    expect(parseJson<TransferJson>(run.stdout)).toMatchObject({ status: 'succeeded', strategy: 'ZIP_FIRST' });
    expect(await treeHashes(join(dest, SESSION))).toEqual(await treeHashes(source));
    expect((await readdir(dest)).filter((n) => n !== SESSION)).toEqual([]);
  });

  it('prints a human summary without --json', async () => {
    const dest = join(root, 'human');
    const run = await runCli(['transfer', '--from', join(source, 'session.ptx'), '--to', dest], { env });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/succeeded: copy, DIRECT/);
    expect(run.stdout).toContain(join(dest, 'session.ptx'));
    expect(run.stderr).toBe(''); // no progress bar when stderr is not a terminal
  });

  it('lists and shows the jobs it ran', async () => {
    const list = await runCli(['jobs', 'list', '--json'], { env });
    expect(list.code).toBe(0);
    const { jobs } = parseJson<{ jobs: { id: string; status: string }[] }>(list.stdout);
    for (const id of jobIds) expect(jobs.find((j) => j.id === id)?.status).toBe('succeeded');

    const filtered = parseJson<{ jobs: { id: string; strategy: string }[] }>((await runCli(['jobs', 'list', '--strategy', 'ZIP_FIRST', '--json'], { env })).stdout);
    expect(filtered.jobs.length).toBe(1);
    expect(filtered.jobs[0]?.strategy).toBe('ZIP_FIRST');

    const human = await runCli(['jobs', 'list', '--limit', '2'], { env });
    expect(human.code).toBe(0);
    expect(human.stdout.trim().split('\n')).toHaveLength(3);

    const show = await runCli(['jobs', 'show', jobIds[0] as string, '--json'], { env });
    expect(show.code).toBe(0);
    const job = parseJson<{ status: string; mode: string; strategy: string; filesCopied: number; bytesCopied: number; durationMs: number; events: { type: string }[] }>(show.stdout);
    expect(job).toMatchObject({ status: 'succeeded', mode: 'copy', strategy: 'DIRECT', filesCopied: Object.keys(TREE).length });
    const types = job.events.map((e) => e.type);
    expect(types[0]).toBe('job.created');
    expect(types).toContain('plan.decided');
    expect(types.filter((t) => t === 'file.verified')).toHaveLength(Object.keys(TREE).length);
    expect(types.at(-1)).toBe('job.succeeded');

    const text = await runCli(['jobs', 'show', jobIds[0] as string], { env });
    expect(text.stdout).toContain('succeeded');
    expect(text.stdout).toContain(SESSION);
    expect(text.stdout).toContain('file.verified');

    expect((await runCli(['jobs', 'show', 'no-such-job'], { env })).code).toBe(2);
  });

  it('writes only events that validate against the event schema', async () => {
    const auditDir = join(home, 'audit');
    const files = (await readdir(auditDir)).filter((n) => n.endsWith('.jsonl'));
    expect(files.length).toBeGreaterThan(0);
    const seen = new Set<string>();
    for (const name of files) {
      for (const line of (await readFile(join(auditDir, name), 'utf8')).split('\n').filter(Boolean)) {
        const record = JSON.parse(line) as { event: unknown };
        const event = KetterEventSchema.parse(record.event);
        seen.add(event.type);
      }
    }
    for (const type of ['job.created', 'job.started', 'plan.decided', 'preflight.passed', 'file.copied', 'file.verified', 'job.committed', 'job.succeeded']) {
      expect(seen).toContain(type);
    }
  });

  it('fails with DESTINATION_EXISTS (exit 1) and leaves the destination untouched', async () => {
    const dest = join(root, 'exists');
    const existing = join(dest, SESSION);
    await mkdir(join(existing, 'Audio Files'), { recursive: true });
    await writeFile(join(existing, 'Audio Files', 'Kick 01.wav'), 'older take');
    const old = new Date('2020-01-02T03:04:05Z');
    await utimes(join(existing, 'Audio Files', 'Kick 01.wav'), old, old);
    await utimes(join(existing, 'Audio Files'), old, old);
    await utimes(existing, old, old);
    const before = await snapshot(dest);

    const run = await runCli(['transfer', '--from', source, '--to', dest, '--json'], { env });
    expect(run.code).toBe(1);
    const json = parseJson<TransferJson>(run.stdout);
    expect(json.error?.code).toBe('DESTINATION_EXISTS');
    expect(json.status).toBe('failed');
    expect(run.stderr).toMatch(/^ketter: \[DESTINATION_EXISTS\] .+\n$/);
    expect(await snapshot(dest)).toEqual(before);
  });

  it('re-runs idempotently with --on-conflict skip-identical', async () => {
    const dest = join(root, 'out dir'); // already holds an identical copy from the first test
    const run = await runCli(['transfer', '--from', source, '--to', dest, '--on-conflict', 'skip-identical', '--json'], { env });
    expect(run.code, run.stderr).toBe(0);
    expect(parseJson(run.stdout)).toMatchObject({ status: 'succeeded', skipped: true });
    expect(await treeHashes(join(dest, SESSION))).toEqual(await treeHashes(source));
  });

  it('fails with SOURCE_NOT_FOUND (exit 1) and creates no destination', async () => {
    const dest = join(root, 'never');
    const run = await runCli(['transfer', '--from', join(root, 'in', 'missing folder'), '--to', dest, '--json'], { env });
    expect(run.code).toBe(1);
    expect(parseJson<TransferJson>(run.stdout).error?.code).toBe('SOURCE_NOT_FOUND');
    expect(run.stderr).toMatch(/^ketter: \[SOURCE_NOT_FOUND\] /);
    expect(run.stderr).not.toMatch(/\n\s+at /); // never a stack
    expect(await exists(dest)).toBe(false);
  });

  it('previews with --dry-run without writing or recording a job', async () => {
    const dest = join(root, 'dry');
    const jobsBefore = parseJson<{ jobs: unknown[] }>((await runCli(['jobs', 'list', '--json', '--limit', '1000'], { env })).stdout).jobs.length;
    const run = await runCli(['transfer', '--from', source, '--to', dest, '--dry-run', '--json'], { env });
    expect(run.code).toBe(0);
    expect(parseJson(run.stdout)).toMatchObject({ dryRun: true, jobId: null, status: 'planned', strategy: 'DIRECT', plan: { nFiles: Object.keys(TREE).length } });
    expect(await exists(dest)).toBe(false);
    const jobsAfter = parseJson<{ jobs: unknown[] }>((await runCli(['jobs', 'list', '--json', '--limit', '1000'], { env })).stdout).jobs.length;
    expect(jobsAfter).toBe(jobsBefore);
  });

  it('exits 2 on invalid usage, with one error line and no job', async () => {
    const cases: string[][] = [
      ['transfer', '--from', source],
      ['transfer', '--from', source, '--to', root, '--mode', 'teleport'],
      ['transfer', '--from', source, '--to', root, '--bogus'],
      ['transfer', '--from', source, '--to', root, '--concurrency', 'many'],
      ['transfer', '--from', source, '--to', 'nowhere:incoming'],
      ['transfer', '--from', source, '--to', 'ftp://host/x'],
      ['frobnicate'],
      [],
    ];
    for (const args of cases) {
      const run = await runCli(args, { env, cwd: root });
      expect(run.code, args.join(' ')).toBe(2);
      if (args.length > 0) expect(run.stderr, args.join(' ')).toMatch(/^ketter: \[INVALID_REQUEST\] [^\n]+\n$/);
    }
    const json = await runCli(['transfer', '--from', source, '--to', 'nowhere:x', '--json'], { env, cwd: root });
    expect(json.code).toBe(2);
    expect(parseJson<TransferJson>(json.stdout).error?.code).toBe('INVALID_REQUEST');
    expect(await exists(join(root, 'nowhere:x'))).toBe(false);
  });

  it('accepts a local path containing a colon when it exists or starts with ./', async () => {
    const odd = join(root, 'take:2');
    await mkdir(odd, { recursive: true });
    await writeFile(join(odd, 'a.wav'), 'abc');
    const fromExisting = await runCli(['transfer', '--from', 'take:2', '--to', './dest:colon', '--json'], { env, cwd: root });
    expect(fromExisting.stderr).toBe('');
    expect(fromExisting.code).toBe(0);
    expect(await readFile(join(root, 'dest:colon', 'take:2', 'a.wav'), 'utf8')).toBe('abc');
  });
});

/** Names, sizes, modes and mtimes of everything below `dir`, plus file contents. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const full = join(entry.parentPath, entry.name);
    const info = await stat(full);
    out[full] = `${info.mode}:${info.size}:${info.mtimeMs}:${entry.isFile() ? (await readFile(full)).toString('base64') : ''}`;
  }
  const top = await stat(dir);
  out[dir] = `${top.mode}:${top.mtimeMs}`;
  return out;
}
