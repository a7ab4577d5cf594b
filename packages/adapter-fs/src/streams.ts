import type { Readable, Writable } from 'node:stream';
import { cancelledError } from '@ketter/core';

/**
 * Make a node stream fail with mapped errors. Every internal failure of an fs stream
 * (open, read, write) goes through `destroy(err)`, so mapping there means both the
 * `error` event and `stream.errored` carry the KetterError, whatever way the caller
 * consumes the stream (pipeline, async iteration, events).
 *
 * The abort signal is wired here rather than passed to node:fs, because node destroys a
 * stream whose signal is already aborted before this wrapper could map the error.
 */
export function mapStreamErrors<S extends Readable | Writable>(
  stream: S,
  map: (error: unknown) => Error,
  signal: AbortSignal | undefined,
): S {
  const target = stream as unknown as { destroy(error?: Error): unknown };
  const destroy = target.destroy;
  target.destroy = function (this: unknown, error?: Error) {
    return destroy.call(this, error == null ? error : map(error));
  };
  if (signal) {
    const onAbort = () => stream.destroy(cancelledError(signal));
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
  }
  return stream;
}
