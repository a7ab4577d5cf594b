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
