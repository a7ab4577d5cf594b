import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { LANE_WORKER_SOURCE } from '../src/engine/local-lane-worker.js';

/*
 * The packer lends the lane a buffer per batch of reads and gets it back with the answer,
 * so packing thousands of small files allocates a few buffers instead of one per file. The
 * protocol, straight against a worker: bytes in the lent buffer while it has room, memory
 * of their own after that, the buffer back even when no file fitted.
 */

let dir: string;
let worker: Worker;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ketter-lend-'));
  worker = new Worker(LANE_WORKER_SOURCE, { eval: true });
});
afterAll(async () => {
  await worker.terminate();
  await rm(dir, { recursive: true, force: true });
});

interface ReadAnswer {
  ok: boolean;
  hash?: string;
  size?: number;
  data?: Uint8Array;
  crc32?: number;
  phase?: string;
}

async function readBatch(files: Array<{ name: string; data: Buffer }>, into?: ArrayBuffer): Promise<{ results: ReadAnswer[]; into?: ArrayBuffer }> {
  const tasks = [];
  for (const f of files) {
    const path = join(dir, f.name);
    await writeFile(path, f.data);
    const st = await stat(path);
    tasks.push({ src: path, size: st.size, mtimeMs: st.mtimeMs, mtimeSlackMs: 0, mode: 0o644, algorithm: 'sha256', replace: false });
  }
  const reply = new Promise<{ results: ReadAnswer[]; into?: ArrayBuffer }>((resolve) => worker.once('message', resolve));
  worker.postMessage({ id: 1, tasks, stop: null, into }, into ? [into] : []);
  return reply;
}

const file = (name: string, size: number, seed: number) => ({ name, data: Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + seed) & 0xff)) });

test('bytes go into the lent buffer one after another, and the buffer comes back with them', async () => {
  const files = [file('a', 1000, 1), file('b', 0, 2), file('c', 3000, 3)];
  const lent = new ArrayBuffer(8192);
  const { results, into } = await readBatch(files, lent);
  expect(lent.byteLength).toBe(0); // moved to the worker
  expect(into).toBeInstanceOf(ArrayBuffer);
  expect(into?.byteLength).toBe(8192);
  let offset = 0;
  for (const [i, r] of results.entries()) {
    const want = (files[i] as { data: Buffer }).data;
    expect(r).toMatchObject({ ok: true, size: want.length, hash: createHash('sha256').update(want).digest('hex'), crc32: crc32(want) });
    expect(r.data?.buffer).toBe(into); // a view of the lent buffer, not a copy
    expect(r.data?.byteOffset).toBe(offset);
    expect(Buffer.from(r.data as Uint8Array).equals(want)).toBe(true);
    offset += want.length;
  }
});

test('past the room in the lent buffer, a file gets memory of its own; the buffer still comes back', async () => {
  const files = [file('d', 3000, 4), file('e', 3000, 5), file('f', 100, 6)];
  const { results, into } = await readBatch(files, new ArrayBuffer(4096));
  expect(into?.byteLength).toBe(4096);
  expect(results[0]?.data?.buffer).toBe(into);
  expect(results[1]?.data?.buffer).not.toBe(into); // 3,000 more bytes did not fit
  expect(results[2]?.data?.buffer).toBe(into); // 100 did, after the first
  expect(results[2]?.data?.byteOffset).toBe(3000);
  for (const [i, r] of results.entries()) expect(Buffer.from(r.data as Uint8Array).equals((files[i] as { data: Buffer }).data)).toBe(true);

  // Nothing fitted, nothing read: the lender gets its buffer back all the same.
  const none = await readBatch([{ name: 'g', data: Buffer.alloc(5000, 1) }], new ArrayBuffer(1024));
  expect(none.into?.byteLength).toBe(1024);
  expect(none.results[0]?.data?.buffer).not.toBe(none.into);
});

test('without a lent buffer every file has memory of its own', async () => {
  const files = [file('h', 500, 7), file('i', 700, 8)];
  const { results, into } = await readBatch(files);
  expect(into).toBeUndefined();
  expect(results[0]?.data?.buffer).not.toBe(results[1]?.data?.buffer);
  for (const [i, r] of results.entries()) expect(Buffer.from(r.data as Uint8Array).equals((files[i] as { data: Buffer }).data)).toBe(true);
});
