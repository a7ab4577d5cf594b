import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { JsonlStore, KetterError, recover, transfer, type JobDetail, type KetterEvent } from '@ketter/core';
import { FaultyAdapter, JobEventFactory, jobStart } from '@ketter/core/testing';
import { exists, failure, leftovers, makeEnv, writeTree, type TestEnv } from './support/env.js';

/** The embedded store, counting the jobs it is asked to read in full. */
class CountingStore extends JsonlStore {
  reads = 0;
  override getJob(id: string): Promise<JobDetail | null> {
    this.reads += 1;
    return super.getJob(id);
  }
}

/** One job's events up to its staging, as the engine records them. */
function started(f: JobEventFactory, dest = 'out'): KetterEvent[] {
  const staging = `${dest}/.take.ketter-${f.jobId}.partial`;
  return jobStart(f, { source: { portal: 'src', path: 'take' }, destination: { portal: 'dst', path: dest }, files: 1, fileBytes: 1, staging, pid: process.pid });
}

/** A history of failed jobs whose rollback removed their staging, as most failures end. */
function cleanFailures(count: number): KetterEvent[] {
  const events: KetterEvent[] = [];
  for (let i = 0; i < count; i++) {
    const f = new JobEventFactory({ host: hostname() });
    const before = started(f);
    const staging = (before.at(-1) as { staging: string }).staging;
    events.push(
      ...before,
      f.next('staging.removed', { portal: 'dst', path: staging }),
      f.next('job.failed', { error: { code: 'PERMISSION_DENIED', message: 'denied' }, committed: false, durationMs: 3 }),
    );
  }
  return events;
}

let env: TestEnv;
let store: CountingStore;
beforeEach(async () => {
  env = await makeEnv();
  store = new CountingStore({ dir: join(env.root, 'counted') });
  await store.open();
});
afterEach(async () => {
  await store.close();
  await env.cleanup();
});

describe('recovery over a long history', () => {
  test('a failed job whose rollback could not finish: its staging is removed, and no other ended job is read', async () => {
    await store.append(cleanFailures(300));
    await writeTree(env.srcDir, { 'take/a.wav': 'a', 'take/b.wav': 'b' });
    // Reading b.wav is refused and so is removing the staging: the job fails with staging left.
    const src = new FaultyAdapter(env.src.adapter, [{ op: 'openRead', path: /b\.wav$/, kind: 'fail', error: new KetterError('PERMISSION_DENIED', 'denied'), times: Infinity }]);
    const dst = new FaultyAdapter(env.dst.adapter, [{ op: 'removeTree', kind: 'fail', error: new KetterError('PERMISSION_DENIED', 'denied'), times: Infinity }]);
    const error = await failure(
      transfer({ mode: 'copy', source: { portal: env.portalOver(src, 'src'), path: 'take' }, destination: { portal: env.portalOver(dst, 'dst'), path: '' } }, { store }),
    );
    expect(error.message).toContain('rollback incomplete');
    const left = await leftovers(env.dstDir);
    expect(left).toHaveLength(1);
    const [failed] = await store.listJobs({ status: 'failed', withStaging: true });
    expect(failed).toMatchObject({ id: error.jobId, staging: [left[0]] });

    store.reads = 0;
    const report = await recover({ store, portals: { dst: env.dst }, keepResumable: true });
    expect(report.jobs).toEqual([{ jobId: error.jobId, committed: false, removed: [env.dst.describe(left[0]!)], unreachable: null, keptForResume: false }]);
    expect(store.reads).toBe(1);
    expect(await leftovers(env.dstDir)).toEqual([]);
    expect((await store.getJob(error.jobId as string))!.staging).toEqual([]);

    store.reads = 0;
    expect(await recover({ store, portals: { dst: env.dst }, keepResumable: true })).toEqual({ jobs: [] });
    expect(store.reads).toBe(0);
  });

  test('staging already gone (removed by hand, taken over by a resumed job) is put on record and not looked for again', async () => {
    await store.append(cleanFailures(50));
    const f = new JobEventFactory({ host: hostname() });
    await store.append([...started(f), f.next('job.cancelled', { committed: false, durationMs: 2 })]);
    expect((await store.listJobs({ withStaging: true })).map((j) => j.id)).toEqual([f.jobId]);

    store.reads = 0;
    expect(await recover({ store, portals: { dst: env.dst } })).toEqual({ jobs: [] });
    expect(store.reads).toBe(1);
    const job = await store.getJob(f.jobId);
    expect(job!.staging).toEqual([]);
    expect(job!.events.filter((e) => e.type === 'staging.removed')).toMatchObject([{ path: `out/.take.ketter-${f.jobId}.partial` }]);

    store.reads = 0;
    await recover({ store, portals: { dst: env.dst } });
    expect(store.reads).toBe(0);
  });

  test('staging on a portal not available here is reported each time and left in place', async () => {
    const f = new JobEventFactory({ host: hostname() });
    await store.append([...started(f), f.next('job.failed', { error: { code: 'IO_ERROR', message: 'rollback incomplete' }, committed: false, durationMs: 2 })]);
    for (let i = 0; i < 2; i++) {
      const report = await recover({ store, portals: {} });
      expect(report.jobs).toMatchObject([{ jobId: f.jobId, removed: [], unreachable: "portal 'dst' is not available here (not configured, or could not be reached)" }]);
    }
    expect((await store.getJob(f.jobId))!.staging).toEqual([`out/.take.ketter-${f.jobId}.partial`]);
  });

  test('running jobs of another host, or holding a live lock, are left alone without being read', async () => {
    const elsewhere = new JobEventFactory({ host: 'another-node' });
    await store.append(started(elsewhere));
    const here = new JobEventFactory({ host: hostname() });
    await store.append(started(here, 'locked'));
    const lease = await store.acquireLocks({ jobId: here.jobId, source: 'src:/take', destination: 'dst:/locked' });
    try {
      store.reads = 0;
      expect(await recover({ store, portals: { dst: env.dst } })).toEqual({ jobs: [] });
      expect(store.reads).toBe(0);
      expect((await store.listJobs({ status: 'running' })).map((j) => j.id).sort()).toEqual([elsewhere.jobId, here.jobId].sort());
    } finally {
      await lease.release();
    }
  });

  test('a dead job of this host is still read, marked interrupted, and its staging removed', async () => {
    const f = new JobEventFactory({ host: hostname() });
    const events = started(f);
    // A pid above the kernel's maximum: certainly not running.
    events[1] = { ...events[1]!, pid: 2 ** 22 + 1 } as KetterEvent;
    await store.append(events);
    await writeTree(env.dstDir, { [`out/.take.ketter-${f.jobId}.partial/a.wav`]: 'half' });

    store.reads = 0;
    const report = await recover({ store, portals: { dst: env.dst } });
    expect(report.jobs).toMatchObject([{ jobId: f.jobId, removed: [env.dst.describe(`out/.take.ketter-${f.jobId}.partial`)] }]);
    expect(store.reads).toBe(1);
    expect(await exists(join(env.dstDir, 'out', `.take.ketter-${f.jobId}.partial`))).toBe(false);
    expect(await store.getJob(f.jobId)).toMatchObject({ status: 'interrupted', staging: [] });
  });

  test('a dead job that died before recording its staging: the staging kept goes on record, and the same request resumes it', async () => {
    const f = new JobEventFactory({ host: hostname() });
    const events = started(f).slice(0, 3); // created, started, plan: preflight.passed never recorded
    events[1] = { ...events[1]!, pid: 2 ** 22 + 1 } as KetterEvent;
    await store.append(events);
    const staging = `out/.ketter-${f.jobId}.partial`;
    await writeTree(env.dstDir, { [`${staging}/a.wav`]: 'a' });
    await writeTree(env.srcDir, { 'take/a.wav': 'a', 'take/b.wav': 'b' });

    const report = await recover({ store, portals: { dst: env.dst }, keepResumable: true });
    expect(report.jobs).toMatchObject([{ jobId: f.jobId, keptForResume: true, removed: [] }]);
    expect(await store.getJob(f.jobId)).toMatchObject({ status: 'interrupted', staging: [staging] });
    expect((await store.listJobs({ status: 'interrupted', withStaging: true })).map((j) => j.id)).toEqual([f.jobId]);

    const result = await transfer({ mode: 'copy', source: { portal: env.src, path: 'take' }, destination: { portal: env.dst, path: 'out' } }, { store });
    expect(result.status).toBe('succeeded');
    const job = await store.getJob(result.jobId);
    expect(job!.events.find((e) => e.type === 'job.resumed')).toMatchObject({ fromJobId: f.jobId });
    expect(await leftovers(join(env.dstDir, 'out'))).toEqual([]);
  });
});
