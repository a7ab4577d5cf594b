import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isKetterError } from '@ketter/core';
import type { PostgresStore } from '@ketter/store-postgres';
import { PG_URL, openStore, sleep } from './support.js';

// The children run the store built by tsup from the current sources (with core bundled in),
// so they exercise exactly the code a deployed node runs, never a stale dist.
let bundleDir: string;
let holderScript: string;

beforeAll(async () => {
  bundleDir = await mkdtemp(join(tmpdir(), 'ketter-pg-child-'));
  await build({
    entry: { 'lock-holder': fileURLToPath(new URL('./fixtures/lock-holder.ts', import.meta.url)) },
    outDir: bundleDir,
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    config: false,
    dts: false,
    silent: true,
    splitting: false,
    sourcemap: false,
    noExternal: [/^(?!pg-native$|pg-cloudflare$|cloudflare:)/],
    external: ['pg-native', 'pg-cloudflare'],
    // Bundled CommonJS dependencies call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __ketterRequire } from 'node:module'; const require = __ketterRequire(import.meta.url);" },
    esbuildOptions(options) {
      options.alias = { '@ketter/core': fileURLToPath(new URL('../../core/src/index.ts', import.meta.url)) };
    },
  });
  holderScript = join(bundleDir, 'lock-holder.js');
}, 120_000);

const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
});

interface Holder {
  child: ChildProcess;
  /** Resolves with the next message whose state is one of `states`. */
  next(...states: string[]): Promise<{ state: string; code?: string }>;
  send(command: string): void;
  exited: Promise<number | null>;
}

function spawnHolder(config: { schema: string; jobId: string; source: string; destination: string; leaseTtlMs?: number; heartbeatMs?: number }): Holder {
  const child = spawn(
    process.execPath,
    [holderScript, JSON.stringify({ url: PG_URL, leaseTtlMs: 30_000, heartbeatMs: 5_000, ...config })],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  children.push(child);
  const messages: { state: string; code?: string }[] = [];
  const listeners: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    messages.push(JSON.parse(line) as { state: string; code?: string });
    for (const l of listeners.splice(0)) l();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let read = 0;
  const next = async (...states: string[]) => {
    for (;;) {
      while (read < messages.length) {
        const m = messages[read++]!;
        if (states.includes(m.state)) return m;
      }
      const more = new Promise<void>((resolve) => listeners.push(resolve));
      const ended = exited.then(() => 'exited' as const);
      if ((await Promise.race([more, ended])) === 'exited' && read >= messages.length) {
        throw new Error(`lock holder exited before reporting ${states.join('/')}`);
      }
    }
  };
  return { child, next, send: (command) => child.stdin!.write(`${command}\n`), exited };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isKetterError(error) ? error.code : String(error);
  }
}

describe('locks across processes', () => {
  let store: PostgresStore;
  let schema: string;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ store, schema, cleanup } = await openStore());
  });
  afterAll(async () => {
    await cleanup?.();
  });

  test('two processes locking the same source: exactly one proceeds', async () => {
    const source = `fs:/mnt/ingest/${randomUUID()}`;
    const a = spawnHolder({ schema, jobId: randomUUID(), source, destination: 'fs:/mnt/out/a' });
    const b = spawnHolder({ schema, jobId: randomUUID(), source, destination: 'fs:/mnt/out/b' });
    await Promise.all([a.next('ready'), b.next('ready')]);
    a.send('go');
    b.send('go');
    const outcomes = await Promise.all([a.next('locked', 'refused'), b.next('locked', 'refused')]);
    expect(outcomes.map((o) => o.state).sort()).toEqual(['locked', 'refused']);
    expect(outcomes.find((o) => o.state === 'refused')!.code).toBe('SOURCE_LOCKED');

    // Locks hold across processes: this (third) process is refused too while the winner holds.
    expect(await codeOf(store.acquireLocks({ jobId: randomUUID(), source: `${source}/sub`, destination: 'fs:/mnt/out/c' }))).toBe(
      'SOURCE_LOCKED',
    );
    const winner = outcomes[0]!.state === 'locked' ? a : b;
    winner.send('release');
    await winner.next('released');
    expect(await Promise.all([a.exited, b.exited])).toEqual([0, 0]);
    const lease = await store.acquireLocks({ jobId: randomUUID(), source, destination: 'fs:/mnt/out/d' });
    await lease.release();
  });

  test('a holder killed with SIGKILL: after the lease TTL the lock is taken over and its job is interrupted', async () => {
    const source = `fs:/mnt/ingest/${randomUUID()}`;
    const jobId = randomUUID();
    const holder = spawnHolder({ schema, jobId, source, destination: 'fs:/mnt/out/killed', leaseTtlMs: 1500, heartbeatMs: 250 });
    await holder.next('ready');
    holder.send('go');
    expect((await holder.next('locked', 'refused')).state).toBe('locked');
    expect((await store.getJob(jobId))?.status).toBe('running');

    holder.child.kill('SIGKILL');
    await holder.exited;
    // The lease outlives its holder until it expires: another node cannot tell a crash from a pause.
    expect(await codeOf(store.acquireLocks({ jobId: randomUUID(), source, destination: 'fs:/mnt/out/next' }))).toBe('SOURCE_LOCKED');

    const nextJob = randomUUID();
    let lease = null;
    for (let i = 0; i < 80 && !lease; i++) {
      try {
        lease = await store.acquireLocks({ jobId: nextJob, source, destination: 'fs:/mnt/out/next' });
      } catch (error) {
        if (!isKetterError(error, 'SOURCE_LOCKED')) throw error;
        await sleep(250);
      }
    }
    expect(lease).not.toBeNull();
    await lease!.release();

    const interrupted = await store.listJobs({ status: 'interrupted' });
    expect(interrupted.map((j) => j.id)).toContain(jobId);
    const job = await store.getJob(jobId);
    expect(job!.status).toBe('interrupted');
    expect(job!.finishedAt).not.toBeNull();
    const last = job!.events.at(-1)!;
    expect(last).toMatchObject({ type: 'job.interrupted', seq: 2 });
    expect(last.type === 'job.interrupted' && last.reason).toMatch(/lease expired/);
    expect((await store.listLocks()).some((l) => l.jobId === jobId)).toBe(false);
    expect((await store.verifyAudit()).ok).toBe(true);
  });
});
