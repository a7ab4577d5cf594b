import { expect, test } from 'vitest';
import { forEachWithin } from '../src/engine/pool.js';

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

test('forEachWithin keeps both the count and the weight in flight within their limits', async () => {
  const weights = [5, 1, 1, 1, 9, 1, 1, 4, 4, 4, 1, 1, 1, 1, 12, 1];
  let inFlight = 0;
  let load = 0;
  let peakCount = 0;
  let peakLoad = 0;
  const done: number[] = [];
  await forEachWithin(
    weights.map((w, i) => ({ w, i })),
    { concurrency: 4, budget: 10 },
    (item) => item.w,
    async (item) => {
      inFlight += 1;
      load += item.w;
      peakCount = Math.max(peakCount, inFlight);
      // An item heavier than the budget runs, but only alone.
      if (item.w > 10) expect(inFlight).toBe(1);
      else peakLoad = Math.max(peakLoad, load);
      await tick();
      inFlight -= 1;
      load -= item.w;
      done.push(item.i);
    },
  );
  expect(done.sort((a, b) => a - b)).toEqual(weights.map((_, i) => i));
  expect(peakCount).toBe(4);
  expect(peakLoad).toBeLessThanOrEqual(10);
});

test('forEachWithin stops starting work at the first failure and settles what is in flight', async () => {
  const started: number[] = [];
  let settled = 0;
  const run = forEachWithin(
    Array.from({ length: 50 }, (_, i) => i),
    { concurrency: 5, budget: 100 },
    () => 1,
    async (i) => {
      started.push(i);
      await tick();
      settled += 1;
      if (i === 3) throw new Error('boom');
    },
  );
  await expect(run).rejects.toThrow('boom');
  expect(started.length).toBeLessThan(50);
  expect(settled).toBe(started.length);
});
