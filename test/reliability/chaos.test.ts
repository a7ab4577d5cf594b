import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { KetterError, Portal, recover, transfer, type Mode } from '@ketter/core';
import {
  checkTransferInvariants,
  FaultyAdapter,
  snapshotTree,
  type Fault,
  type FaultKind,
  type FaultOperation,
  type InvariantViolation,
  type TreeSnapshot,
} from '@ketter/core/testing';
import { chaosSeed, Dice, makeWorld, mulberry32, writeTree, type World } from './support.js';

const JOBS = Number(process.env.KETTER_CHAOS_JOBS ?? 500);

/*
 * Faults left out, each for a stated reason (everything else is drawn at random):
 * - source `openRead` `corrupt`: the engine hashes the source in the copy pass (SPEC: never
 *   read the source twice), so bytes that lie as they are read are copied and "verified"
 *   faithfully; no single-read design can notice. Not a Ketter bug, a limit of the design.
 * - source `openRead` `fail` with ZIP_FIRST: crashes the process (uncaught stream error while
 *   packing); see permission.test.ts, where the same bug is demonstrated in a child process.
 *
 * A failing destination `removeTree` can stop a rollback half-way: the failure is recorded
 * with its staging, and `recover()` must then remove it, so such jobs are checked after a
 * recovery pass.
 */
const SOURCE_OPS: readonly FaultOperation[] = ['stat', 'list', 'openRead', 'unlink', 'rmdir'];
const DEST_OPS: readonly FaultOperation[] = ['stat', 'list', 'openWrite', 'openRead', 'mkdir', 'rename', 'unlink', 'rmdir', 'removeTree', 'setTimes', 'setMode', 'sync', 'statfs'];
const SIZES = [0, 1, 100, 4096, 65_536, 70_001, 300_000];

interface Scenario {
  n: number;
  mode: Mode;
  strategy: 'direct' | 'zip';
  fileSource: boolean;
  faults: { side: 'src' | 'dst'; fault: Fault }[];
}

describe('randomized chaos: hundreds of small jobs with faults on either side', () => {
  const seed = chaosSeed();
  let world: World;

  beforeAll(async () => {
    console.log(`chaos: seed ${seed} (replay with KETTER_CHAOS_SEED=${seed})`);
    world = await makeWorld('chaos');
  });
  afterAll(async () => world.close());

  test(`${JOBS} jobs, every one ending with the transfer invariants holding`, async () => {
    const dice = new Dice(mulberry32(seed));
    let faultsFired = 0;
    let succeeded = 0;
    let sourceLeft = 0;
    let recoveries = 0;
    const codes = new Map<string, number>();
    const failures: { scenario: Scenario; violations: InvariantViolation[] }[] = [];

    for (let n = 0; n < JOBS; n++) {
      const jobDir = `job-${n}`;
      const fileSource = dice.chance(0.15);
      const mode: Mode = dice.chance(0.5) ? 'copy' : 'move';
      const strategy = fileSource ? 'direct' : dice.chance(0.5) ? 'direct' : 'zip';
      // A small random tree (or one file).
      const files: Record<string, Buffer | string> = {};
      const names: string[] = [];
      if (fileSource) {
        const name = 'clip.mov';
        files[name] = dice.bytes(dice.pick(SIZES));
        names.push(name);
      } else {
        const count = dice.int(1, 7);
        for (let f = 0; f < count; f++) {
          const dir = dice.pick(['', 'a/', 'a/b/', 'c d/']);
          const name = `Tree/${dir}f${f}.wav`;
          files[name] = dice.bytes(dice.pick(SIZES));
          names.push(name);
        }
        if (dice.chance(0.3)) files['Tree/empty dir/'] = '';
      }
      await writeTree(join(world.srcDir, jobDir), files);
      await mkdir(join(world.dstDir, jobDir));
      const rootName = fileSource ? 'clip.mov' : 'Tree';
      const sourceDir = join(world.srcDir, jobDir, rootName);
      const before = (await snapshotTree(sourceDir)) as TreeSnapshot;

      const scenario: Scenario = { n, mode, strategy, fileSource, faults: [] };
      const faultCount = dice.chance(0.1) ? 0 : dice.int(1, 3);
      for (let k = 0; k < faultCount; k++) {
        const side = dice.chance(0.5) ? 'src' : 'dst';
        const op = dice.pick(side === 'src' ? SOURCE_OPS : DEST_OPS);
        const stream = op === 'openRead' || op === 'openWrite';
        let kinds: FaultKind[] = stream ? ['fail', 'delay', 'truncate', 'corrupt'] : ['fail', 'delay'];
        if (side === 'src' && op === 'openRead') kinds = strategy === 'zip' ? ['delay', 'truncate'] : ['fail', 'delay', 'truncate'];
        const kind = dice.pick(kinds);
        const pick = dice.next();
        const target = dice.pick(names);
        // Paths as the adapter sees them (root-relative): one source file, the staging or archive, or any.
        const path: Fault['path'] =
          pick < 0.4
            ? side === 'src'
              ? `${jobDir}/${target}`
              : new RegExp(`${escapeRegExp(target.split('/').pop() as string)}$`)
            : pick < 0.6 && side === 'dst'
              ? dice.pick([/\.partial/, /\.archive\.zip$/])
              : undefined;
        const fault: Fault = {
          op,
          kind,
          ...(path === undefined ? {} : { path }),
          times: dice.pick([1, 1, 2, Infinity]),
          ...(kind === 'delay' ? { delayMs: dice.int(1, 15) } : {}),
          ...(stream && kind !== 'delay' && dice.chance(0.5) ? { afterBytes: dice.int(0, 70_000) } : {}),
          ...(kind === 'fail' && dice.chance(0.5)
            ? { error: new KetterError(dice.pick(['IO_ERROR', 'PERMISSION_DENIED'] as const), `[chaos] injected permanent ${op} failure`, { transient: false }) }
            : {}),
        };
        scenario.faults.push({ side, fault });
      }
      const src = new FaultyAdapter(world.srcFs, scenario.faults.filter((f) => f.side === 'src').map((f) => f.fault));
      const dst = new FaultyAdapter(world.dstFs, scenario.faults.filter((f) => f.side === 'dst').map((f) => f.fault));

      let outcome: 'succeeded' | 'failed';
      let jobId: string | undefined;
      try {
        const result = await transfer(
          { mode, source: { portal: new Portal('src', src), path: `${jobDir}/${rootName}` }, destination: { portal: new Portal('dst', dst), path: jobDir } },
          { store: world.store, strategy, concurrency: dice.int(1, 8), retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 4 } },
        );
        outcome = 'succeeded';
        jobId = result.jobId;
        succeeded += 1;
      } catch (error) {
        if (!(error instanceof KetterError)) throw error;
        outcome = 'failed';
        jobId = error.jobId;
        codes.set(error.code, (codes.get(error.code) ?? 0) + 1);
      }
      faultsFired += src.firedCount + dst.firedCount;
      let checked: 'succeeded' | 'failed' | 'recovered' = outcome;
      if (outcome === 'failed' && dst.fired.some((f) => f.op === 'removeTree')) {
        await recover({ store: world.store, portals: { dst: new Portal('dst', world.dstFs) } });
        checked = 'recovered';
        recoveries += 1;
      }
      const violations = await checkTransferInvariants({ before, sourceDir, destinationDir: join(world.dstDir, jobDir), mode, outcome: checked });
      // Every job is recorded and ends in a terminal state: none stays `running`.
      const status = jobId === undefined ? 'unrecorded' : (await world.store.getJob(jobId))?.status;
      if (status !== outcome) violations.push({ rule: 'not-complete', path: jobId ?? '', message: `the job reported ${outcome} but the store says ${status}` });
      // Known engine behaviour: MOVE treats any failure to remove a source directory as "not
      // empty" and still succeeds, so an injected rmdir fault leaves the emptied source behind
      // unreported. Nothing is lost; counted, not failed.
      const rmdirFired = src.fired.some((f) => f.op === 'rmdir' && f.kind === 'fail');
      const isKnown = (v: InvariantViolation) => v.rule === 'source-left' && rmdirFired;
      const kept = violations.filter((v) => !isKnown(v));
      sourceLeft += violations.filter(isKnown).length;
      if (kept.length > 0) failures.push({ scenario, violations: kept });
    }

    const summary = `chaos: ${JOBS} jobs, ${faultsFired} faults fired, ${failures.length} invariant violations (seed ${seed})`;
    console.log(`${summary}; ${succeeded} succeeded, failures by code: ${[...codes].map(([c, k]) => `${c} ${k}`).join(', ')}; ${sourceLeft} MOVE(s) succeeded leaving an emptied source folder after an rmdir fault; ${recoveries} failed job(s) checked after a recovery pass (a removeTree fault hit their rollback)`);
    for (const { scenario, violations } of failures.slice(0, 10)) {
      console.log(`  job ${scenario.n} ${JSON.stringify({ ...scenario, faults: scenario.faults.map(describeFault) })}: ${violations.map((v) => `[${v.rule}] ${v.message}`).join('; ')}`);
    }
    expect(failures.map((f) => ({ job: f.scenario.n, rules: f.violations.map((v) => v.rule) }))).toEqual([]);
    expect(faultsFired).toBeGreaterThan(JOBS / 2);
  }, 600_000);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function describeFault({ side, fault }: { side: string; fault: Fault }): string {
  return `${side}:${fault.op}:${fault.kind}${fault.path === undefined ? '' : `@${String(fault.path)}`}x${fault.times}${fault.error ? ':permanent' : ''}`;
}
