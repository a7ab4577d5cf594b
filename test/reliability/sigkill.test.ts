import { cp, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Mode } from '@ketter/core';
import { checkTransferInvariants, snapshotTree, type InvariantViolation, type TreeSnapshot } from '@ketter/core/testing';
import { parseJson, runCli, spawnCli } from '../../packages/cli/test/helpers.js';
import { chaosSeed, Dice, mulberry32, removeDir, sleep, tempRoot, writeTree } from './support.js';

const KILLS = Number(process.env.KETTER_CHAOS_KILLS ?? 20);
const MiB = 1024 * 1024;

interface Round {
  i: number;
  mode: Mode;
  strategy: 'direct' | 'zip';
  delayMs: number;
  /** What the kill hit: the process had already exited, or the state found after it. */
  state: 'exited' | 'nothing' | 'staging' | 'committed';
  rerun: string;
  violations: InvariantViolation[];
  /** Leftovers of jobs the store never heard of (recovery cannot find those). */
  unrecorded: string[];
}

/** Job ids named by hidden leftovers in `dir`. */
async function leftoverJobs(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const ids = names.map((n) => /ketter-([0-9a-f-]{36})\./.exec(n)?.[1]).filter((id): id is string => id !== undefined);
  return [...new Set(ids)];
}

/** Leftovers of jobs the store has never heard of: recovery could not find them. */
async function unrecordedJobs(dir: string, env: Record<string, string>): Promise<string[]> {
  const out: string[] = [];
  for (const id of await leftoverJobs(dir)) {
    if ((await runCli(['jobs', 'show', id, '--json'], { env })).code !== 0) out.push(id);
  }
  return out;
}

describe('the CLI killed with SIGKILL at random moments', () => {
  const seed = chaosSeed();
  const dice = new Dice(mulberry32(seed));
  let root: string;
  let template: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    console.log(`sigkill chaos: seed ${seed} (replay with KETTER_CHAOS_SEED=${seed})`);
    root = await tempRoot('kill');
    env = { KETTER_HOME: join(root, 'home') };
    template = join(root, 'template', 'Session');
    // Mixed sizes: a few large files that dominate the time, many small ones, an empty file and folder.
    const files: Record<string, Buffer | string> = {
      'video/A001.mov': dice.bytes(12 * MiB),
      'video/A002.mov': dice.bytes(3 * MiB),
      'audio/mix.wav': dice.bytes(2 * MiB),
      'empty.txt': '',
      'renders/': '',
    };
    for (let n = 0; n < 160; n++) files[`audio/stems/${String(n).padStart(3, '0')} take.wav`] = dice.bytes(dice.int(1, 24 * 1024));
    await writeTree(template, files);
  }, 120_000);
  afterAll(async () => removeDir(root));

  test(`${KILLS} kills, each followed by ketter recover and a re-run: nothing lost, nothing left behind`, async () => {
    // The job's typical duration, process start included, bounds the kill moments.
    const probe = join(root, 'probe');
    await cp(template, join(probe, 'src', 'Session'), { recursive: true });
    const t0 = Date.now();
    const first = await runCli(['transfer', '--from', join(probe, 'src', 'Session'), '--to', join(probe, 'dst'), '--json'], { env });
    const typicalMs = Date.now() - t0;
    expect(first.code, first.stderr).toBe(0);
    await removeDir(probe);

    const rounds: Round[] = [];
    let resumed = 0;
    for (let i = 0; i < KILLS; i++) {
      const mode: Mode = i % 2 === 0 ? 'copy' : 'move';
      const strategy = Math.floor(i / 2) % 2 === 0 ? 'direct' : 'zip';
      const dir = join(root, `round-${i}`);
      const sourceDir = join(dir, 'src', 'Session');
      const destinationDir = join(dir, 'dst');
      await cp(template, sourceDir, { recursive: true });
      await mkdir(destinationDir);
      const before = (await snapshotTree(sourceDir)) as TreeSnapshot;
      const args = ['transfer', '--from', sourceDir, '--to', destinationDir, '--mode', mode, '--strategy', strategy, '--json'];
      // Half the kills anywhere in the job, half near its end, where commit and MOVE's deletions happen.
      const delayMs = Math.round(dice.chance(0.5) ? 20 + dice.next() * Math.max(0, typicalMs - 20) : typicalMs * (0.75 + dice.next() * 0.4));

      const child = spawnCli(args, { env });
      await sleep(delayMs);
      const exitedFirst = child.exitCode !== null;
      child.kill('SIGKILL');
      await child.result;

      const names = await readdir(destinationDir);
      const finalExists = names.includes('Session');
      const state: Round['state'] = exitedFirst ? 'exited' : finalExists ? 'committed' : names.length > 0 ? 'staging' : 'nothing';

      // Half the rounds run `ketter recover` first; the others go straight to the re-run, whose
      // own recovery keeps a DIRECT folder job's staging so that the re-run resumes it.
      const explicit = Math.floor(i / 4) % 2 === 0;
      const violations: InvariantViolation[] = [];
      const unrecorded = await unrecordedJobs(destinationDir, env);
      if (explicit) {
        const recovered = await runCli(['recover', '--json'], { env });
        expect(recovered.code, recovered.stderr).toBe(0);
        violations.push(...(await checkTransferInvariants({ before, sourceDir, destinationDir, mode, outcome: 'recovered' })));
      } else {
        violations.push(...(await checkTransferInvariants({ before, sourceDir, destinationDir, mode, outcome: 'killed' })));
      }

      // The same transfer again: it completes the job, or (if the killed one had committed)
      // finds the destination already there, complete.
      const again = await runCli(args, { env });
      const json = parseJson<{ jobId?: string | null; status: string; error?: { code: string } }>(again.stdout);
      let rerun: string;
      if (finalExists) {
        rerun = json.error?.code ?? json.status;
        const sourceGone = await stat(sourceDir).then(
          () => false,
          () => true,
        );
        expect(rerun === 'DESTINATION_EXISTS' || (mode === 'move' && sourceGone && rerun === 'SOURCE_NOT_FOUND'), `round ${i}: ${again.stdout}`).toBe(true);
        violations.push(...(await checkTransferInvariants({ before, sourceDir, destinationDir, mode, outcome: 'recovered' })));
      } else {
        rerun = json.status;
        expect(again.code, `round ${i}: ${again.stderr}`).toBe(0);
        if (json.jobId) {
          const show = parseJson<{ events: { type: string }[] }>((await runCli(['jobs', 'show', json.jobId, '--json'], { env })).stdout);
          if (show.events.some((e) => e.type === 'job.resumed')) resumed += 1;
        }
        violations.push(...(await checkTransferInvariants({ before, sourceDir, destinationDir, mode, outcome: 'succeeded' })));
      }
      rounds.push({ i, mode, strategy, delayMs, state, rerun, violations, unrecorded });
      await removeDir(dir);
    }

    const byState = new Map<string, number>();
    for (const r of rounds) byState.set(r.state, (byState.get(r.state) ?? 0) + 1);
    const bad = rounds.filter((r) => r.violations.length > 0 || r.unrecorded.length > 0);
    console.log(
      `sigkill chaos: ${rounds.length} kills (typical job ${typicalMs} ms; ${[...byState].map(([s, n]) => `${n} ${s}`).join(', ')}), ` +
        `${resumed} re-runs resumed a killed job's staging, ${bad.length} with invariant violations (seed ${seed})`,
    );
    for (const r of bad) {
      console.log(`  round ${r.i} ${r.mode} ${r.strategy} killed at ${r.delayMs} ms (${r.state}, re-run: ${r.rerun}${r.unrecorded.length ? `, unrecorded jobs ${r.unrecorded.join(' ')}` : ''}): ${r.violations.map((v) => `[${v.rule}] ${v.message}`).join('; ')}`);
    }
    expect(bad.map((r) => ({ round: r.i, state: r.state, unrecorded: r.unrecorded, violations: r.violations.map((v) => `[${v.rule}] ${v.message}`) }))).toEqual([]);

    // No job stays running forever, and the audit trail survived every kill.
    const running = await runCli(['jobs', 'list', '--status', 'running', '--json'], { env });
    expect(parseJson<{ jobs: unknown[] }>(running.stdout).jobs).toEqual([]);
    const audit = await runCli(['audit', 'verify'], { env });
    expect(audit.code, audit.stderr).toBe(0);
  }, 600_000);

  // The earliest kill that can leave anything: right after the staging path appears. The job
  // must already be on record then, or recovery could not find what it left.
  test('a job killed right after creating its staging is found and cleaned by ketter recover', async () => {
    const dir = join(root, 'early-kill');
    const sourceDir = join(dir, 'src', 'Session');
    const destinationDir = join(dir, 'dst');
    await cp(template, sourceDir, { recursive: true });
    await mkdir(destinationDir);
    const before = (await snapshotTree(sourceDir)) as TreeSnapshot;
    const child = spawnCli(['transfer', '--from', sourceDir, '--to', destinationDir, '--json'], { env });
    try {
      for (let n = 0; n < 4000 && (await readdir(destinationDir)).length === 0; n++) await sleep(2);
    } finally {
      child.kill('SIGKILL');
    }
    await child.result;
    expect((await runCli(['recover'], { env })).code).toBe(0);
    const violations = await checkTransferInvariants({ before, sourceDir, destinationDir, mode: 'copy', outcome: 'recovered' });
    await removeDir(dir);
    expect(violations).toEqual([]);
  }, 60_000);
});
