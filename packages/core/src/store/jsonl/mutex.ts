import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, KetterError } from '../../errors.js';

/** How long a caller waits for the store's mutex before giving up. */
const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * A holder that stops refreshing its lock for this long is presumed dead (killed mid-write)
 * and the lock is taken over. Critical sections here last milliseconds.
 */
const STALE_MS = 10_000;

// Callers in the same process queue here instead of polling the lock directory.
const inProcess = new Map<string, Promise<unknown>>();

/**
 * Run `fn` while holding a cross-process mutex on `target` (a `<target>.lock` directory
 * managed by proper-lockfile). Short critical sections only: appends, lock-table updates.
 */
export function withMutex<T>(target: string, fn: () => Promise<T>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  const previous = inProcess.get(target) ?? Promise.resolve();
  const run = previous.then(
    () => holdAndRun(target, fn, timeoutMs),
    () => holdAndRun(target, fn, timeoutMs),
  );
  const tail = run.catch(() => undefined);
  inProcess.set(target, tail);
  void tail.then(() => {
    if (inProcess.get(target) === tail) inProcess.delete(target);
  });
  return run;
}

async function holdAndRun<T>(target: string, fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const release = await acquire(target, timeoutMs);
  try {
    return await fn();
  } finally {
    await release().catch(() => undefined);
  }
}

async function acquire(target: string, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  let attempt = 0;
  for (;;) {
    try {
      const lockfile = (await import('proper-lockfile')).default;
      return await lockfile.lock(target, {
        realpath: false,
        stale: STALE_MS,
        retries: 0,
        // The default throws from a timer and kills the process. A compromised mutex means
        // another process took it over after we stalled for STALE_MS; say so, stay alive.
        onCompromised: (err) => process.emitWarning(`[ketter] [jsonl] store mutex compromised: ${err.message}`),
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') {
        throw new KetterError(ErrorCode.STORE_ERROR, `[ketter] [jsonl] cannot take the store mutex: ${(error as Error).message}`, {
          cause: error,
        });
      }
      if (Date.now() >= deadline) {
        throw new KetterError(ErrorCode.STORE_ERROR, `[ketter] [jsonl] timed out after ${timeoutMs} ms waiting for the store mutex`, {
          cause: error,
          transient: true,
        });
      }
      attempt += 1;
      // Jittered backoff, capped low: holders keep the mutex for milliseconds.
      await sleep(Math.random() * Math.min(50, 2 ** attempt));
    }
  }
}
