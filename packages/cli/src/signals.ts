/**
 * Turn SIGINT/SIGTERM into a clean cancellation: the first signal aborts the job (the
 * engine rolls back and records `job.cancelled`); later ones are refused with a message,
 * because dying mid-rollback would leave staging behind. Returns the disposer.
 */
export function trapSignals(controller: AbortController, notify: (message: string) => void): () => void {
  let received = 0;
  const handler = (signal: NodeJS.Signals) => {
    received += 1;
    if (received === 1) {
      notify(`ketter: ${signal} received, cancelling: rolling back staged data…\n`);
      controller.abort(new Error(`interrupted by ${signal}`));
    } else {
      notify(`ketter: ${signal} ignored: still rolling back, staging must be removed first\n`);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
