import { isTransient, KetterError, cancelledError } from '../errors.js';
import type { RetryOptions } from './types.js';

export const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 3, baseDelayMs: 200, maxDelayMs: 5000 };

/** Backoff before attempt `attempt + 1`: exponential with full jitter, so retries of many files spread out. */
export function backoffDelay(attempt: number, options: Required<RetryOptions>, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(random() * ceiling);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelledError(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelledError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Run `attemptFn` up to `attempts` times while it fails with a transient error. Permanent
 * errors and cancellation fail at once. `onRetry` runs before each wait (to clean up and
 * record the retry).
 */
export async function withRetry<T>(
  attemptFn: (attempt: number) => Promise<T>,
  options: Required<RetryOptions>,
  onRetry: (error: unknown, attempt: number, delayMs: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptFn(attempt);
    } catch (error) {
      if (signal?.aborted) throw cancelledError(signal);
      if (attempt >= options.attempts || !isTransient(error)) throw error;
      const delayMs = backoffDelay(attempt, options);
      await onRetry(error, attempt, delayMs);
      await sleep(delayMs, signal);
    }
  }
}

export type { KetterError };
