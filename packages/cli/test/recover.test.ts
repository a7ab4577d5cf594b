import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsonlStore } from '@ketter/core';
import { JobEventFactory, jobStart } from '@ketter/core/testing';
import { Sshd } from '../../adapter-sftp/test/sshd.js';
import { parseJson, removeDir, runCli, tempDir } from './helpers.js';

/**
 * Record a job as a dead process left it: created, started by a pid that no longer runs,
 * preflight passed with a staging path, and nothing after.
 */
async function recordDeadJob(storeDir: string, dest: string, source: string): Promise<string> {
  const store = new JsonlStore({ dir: storeDir });
  await store.open();
  try {
    const f = new JobEventFactory({ host: hostname() });
    const destination = dest.replace(/^\/+/, '');
    await store.append([
      f.next('job.created', {
        mode: 'copy',
        source: { portal: 'local', path: source.replace(/^\/+/, '') },
        destination: { portal: 'local', path: destination },
        algorithm: 'sha256',
        onConflict: 'fail',
        requestedStrategy: 'auto',
      }),
      // A pid above the kernel's maximum: certainly not running.
      f.next('job.started', { pid: 2 ** 22 + 1 }),
      f.next('preflight.passed', { requiredBytes: 10, freeBytes: null, staging: `${destination}/.ketter-${f.jobId}.partial` }),
    ]);
    return f.jobId;
  } finally {
    await store.close();
  }
}

describe('ketter recover', () => {
  let root: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    root = await tempDir();
    env = { KETTER_HOME: join(root, 'home') };
  });
  afterAll(async () => removeDir(root));

  it('reports nothing to do on a clean store (exit 0)', async () => {
    const run = await runCli(['recover'], { env });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/nothing to recover/);
    const json = await runCli(['recover', '--json'], { env });
    expect(parseJson(json.stdout)).toMatchObject({ recovered: 0, jobs: [], removed: [] });
  });

  it('marks a dead job interrupted and removes its staging, once', async () => {
    const dest = join(root, 'out');
    await mkdir(dest, { recursive: true });
    const id = await recordDeadJob(env.KETTER_HOME as string, dest, join(root, 'Reel 1'));
    await mkdir(join(dest, `.ketter-${id}.partial`, 'audio'), { recursive: true });
    await writeFile(join(dest, `.ketter-${id}.partial`, 'audio', 'half.wav'), 'partial bytes');
    await writeFile(join(dest, 'keep me.txt'), 'not ours');

    const run = await runCli(['recover', '--json'], { env });
    expect(run.code, run.stderr).toBe(0);
    const report = parseJson<{ recovered: number; jobs: { jobId: string; committed: boolean; removed: string[] }[]; removed: string[] }>(run.stdout);
    expect(report.recovered).toBe(1);
    expect(report.jobs[0]).toMatchObject({ jobId: id, committed: false });
    expect(report.removed).toEqual([join(dest, `.ketter-${id}.partial`)]);
    expect(await readdir(dest)).toEqual(['keep me.txt']);

    const show = parseJson<{ status: string; events: { type: string }[] }>((await runCli(['jobs', 'show', id, '--json'], { env })).stdout);
    expect(show.status).toBe('interrupted');
    expect(show.events.map((e) => e.type)).toContain('job.interrupted');

    const again = await runCli(['recover'], { env });
    expect(again.stdout).toMatch(/nothing to recover/);
  });

  it('runs quietly at the start of ketter transfer: leftovers reported on stderr only, never in --json stdout', async () => {
    const dest = join(root, 'out2');
    await mkdir(dest, { recursive: true });
    const id = await recordDeadJob(env.KETTER_HOME as string, dest, join(root, 'Reel 2'));
    await mkdir(join(dest, `.ketter-${id}.partial`));
    const source = join(root, 'Reel 3');
    await mkdir(source);
    await writeFile(join(source, 'take.wav'), 'take');

    const run = await runCli(['transfer', '--from', source, '--to', dest, '--json'], { env });
    expect(run.code, run.stderr).toBe(0);
    const json = parseJson<{ status: string }>(run.stdout);
    expect(json.status).toBe('succeeded');
    expect(run.stdout).not.toMatch(/recovered|interrupted/);
    expect(run.stderr).toMatch(new RegExp(`recovered job ${id} marked interrupted: removed `));
    expect((await readdir(dest)).sort()).toEqual(['Reel 3']);

    // Nothing to recover the next time: stderr stays empty.
    const next = await runCli(['transfer', '--from', source, '--to', join(root, 'out3'), '--json'], { env });
    expect(next.code).toBe(0);
    expect(next.stderr).toBe('');
  });
});

describe('ketter recover and remote portals', () => {
  let sshd: Sshd;
  let root: string;
  beforeAll(async () => {
    sshd = await Sshd.start();
    root = await tempDir();
  });
  afterAll(async () => {
    await sshd?.stop();
    await removeDir(root);
  });

  it('connects the remote portal of an ended job whose rollback left staging there, and removes it; a transfer start does not', async () => {
    const remoteRoot = join(root, 'remote');
    const storeDir = join(root, 'store');
    await mkdir(join(remoteRoot, 'in'), { recursive: true });
    const knownHosts = join(root, 'known_hosts');
    await writeFile(knownHosts, sshd.knownHostsLines());
    const config = join(root, 'ketter.yaml');
    await writeFile(
      config,
      [
        `store: ${JSON.stringify(storeDir)}`,
        'portals:',
        '  qc:',
        '    type: sftp',
        `    host: ${sshd.host}`,
        `    port: ${sshd.port}`,
        '    username: root',
        `    root: ${JSON.stringify(remoteRoot)}`,
        `    hostKey: { knownHosts: ${JSON.stringify(knownHosts)} }`,
        `    auth: { privateKeyPath: ${JSON.stringify(sshd.userKeyPath)} }`,
        '',
      ].join('\n'),
    );
    // A job that failed and could not remove its staging on the remote host (the link dropped).
    const store = new JsonlStore({ dir: storeDir });
    await store.open();
    const f = new JobEventFactory({ host: hostname() });
    const staging = `in/.Reel 4.ketter-${f.jobId}.partial`;
    await store.append([
      ...jobStart(f, { source: { portal: 'local', path: join(root, 'Reel 4').slice(1) }, destination: { portal: 'qc', path: 'in' }, files: 1, staging, pid: process.pid }),
      f.next('job.failed', { error: { code: 'CONNECTION_ERROR', message: 'link dropped (rollback incomplete)' }, committed: false, durationMs: 9 }),
    ]);
    await store.close();
    await mkdir(join(remoteRoot, staging, 'audio'), { recursive: true });
    await writeFile(join(remoteRoot, staging, 'audio', 'take.wav'), 'take');

    // The recovery at a transfer's start opens no remote connection for it.
    const source = join(root, 'Reel 5');
    await mkdir(source);
    await writeFile(join(source, 'a.wav'), 'a');
    const transfer = await runCli(['--config', config, 'transfer', '--from', source, '--to', join(root, 'out'), '--json']);
    expect(transfer.code, transfer.stderr).toBe(0);
    expect(transfer.stderr).toBe('');
    expect((await stat(join(remoteRoot, staging))).isDirectory()).toBe(true);

    const run = await runCli(['--config', config, 'recover', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const report = parseJson<{ jobs: { jobId: string; removed: string[]; unreachable: string | null }[] }>(run.stdout);
    expect(report.jobs).toEqual([expect.objectContaining({ jobId: f.jobId, removed: [`qc:${staging}`], unreachable: null })]);
    expect(await readdir(join(remoteRoot, 'in'))).toEqual([]);
    expect(parseJson<{ jobs: unknown[] }>((await runCli(['--config', config, 'recover', '--json'])).stdout).jobs).toEqual([]);
  });
});
