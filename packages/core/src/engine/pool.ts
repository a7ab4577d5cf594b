/**
 * Run `worker` over `items` with at most `concurrency` in flight, in order of start. The
 * first failure stops new work from starting; work in flight is awaited before rejecting,
 * so nothing is still writing when the caller rolls back.
 */
export async function forEachLimit<T>(items: Iterable<T>, concurrency: number, worker: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | null = null;
  const lane = async (): Promise<void> => {
    while (failure === null) {
      const next = iterator.next();
      if (next.done) return;
      try {
        await worker(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
  if (failure !== null) throw (failure as { error: unknown }).error;
}

/**
 * {@link forEachLimit} with a second limit: the `weight` of the items in flight (bytes a file
 * holds in memory while it is copied) stays within `budget`, except that one item always
 * runs whatever its weight. Many small files fill the count, a few large ones the budget.
 */
export async function forEachWithin<T>(
  items: Iterable<T>,
  limits: { concurrency: number; budget: number },
  weight: (item: T) => number,
  worker: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | null = null;
  let inFlight = 0;
  let load = 0;
  let pending: IteratorResult<T> | null = null;
  const waiters: Array<() => void> = [];
  const wakeAll = () => waiters.splice(0).forEach((wake) => wake());
  const lane = async (): Promise<void> => {
    while (failure === null) {
      const next = pending ?? iterator.next();
      pending = null;
      if (next.done) return;
      const w = weight(next.value);
      if (inFlight > 0 && load + w > limits.budget) {
        // Over budget: put the item back for whichever lane frees enough first.
        pending = next;
        await new Promise<void>((resolve) => waiters.push(resolve));
        continue;
      }
      inFlight += 1;
      load += w;
      try {
        await worker(next.value);
      } catch (error) {
        failure ??= { error };
      } finally {
        inFlight -= 1;
        load -= w;
        wakeAll();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limits.concurrency) }, lane));
  if (failure !== null) throw (failure as { error: unknown }).error;
}
