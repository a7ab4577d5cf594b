import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { JsonlStore, type KetterEvent } from '@ketter/core';
import { JobEmitter, MAX_UNWRITTEN_EVENTS } from '../src/engine/emitter.js';

let root: string;
let store: JsonlStore;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ketter-emitter-'));
  store = new JsonlStore({ dir: root });
  await store.open();
});
afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

const settled = async (p: Promise<unknown>) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 50))]);

test('a store that falls behind makes per-file loops wait instead of piling events up in memory', async () => {
  // The real store, held back until the test opens the gate: a slow disk or database.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const slow = Object.assign(Object.create(store) as JsonlStore, {
    append: async (events: readonly KetterEvent[]) => {
      await gate;
      return store.append(events);
    },
  });
  const jobId = randomUUID();
  const emitter = new JobEmitter({ jobId, store: slow, operator: 'op', host: 'h', batchSize: 1000, flushIntervalMs: 10, progressIntervalMs: 1000 });
  emitter.emit({
    type: 'job.created',
    mode: 'copy',
    source: { portal: 's', path: 'a' },
    destination: { portal: 'd', path: 'b' },
    algorithm: 'sha256',
    onConflict: 'fail',
    requestedStrategy: 'auto',
  });
  const file = (i: number) => ({ type: 'file.copied', path: `f${i}`, size: 1, algorithm: 'sha256', hash: 'a'.repeat(64), attempt: 1 }) as const;

  for (let i = 0; i < MAX_UNWRITTEN_EVENTS - 1; i++) emitter.emit(file(i));
  expect(await settled(emitter.caughtUp())).toBe(true);

  for (let i = 0; i < 10; i++) emitter.emit(file(MAX_UNWRITTEN_EVENTS + i));
  const waiting = emitter.caughtUp();
  expect(await settled(waiting)).toBe(false);

  open();
  await waiting;
  await emitter.flush();
  const job = await store.getJob(jobId);
  expect(job?.events.length).toBe(MAX_UNWRITTEN_EVENTS + 10);
  expect(await settled(emitter.caughtUp())).toBe(true);
});
