import { promises as fsp } from 'node:fs';
import { fsError } from './errors.js';

/** fsyncs in flight at once: enough to keep a disk queue busy, few enough for the fd limit. */
export const SYNC_CONCURRENCY = 32;

/**
 * fsync each path. A file's fsync makes its data durable; a directory's fsync makes the
 * names created in it durable, which a rename-to-commit relies on. Directories open
 * read-only, which Linux allows to be fsynced.
 */
export async function syncAll(entries: readonly { abs: string; rel: string }[], concurrency = SYNC_CONCURRENCY): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < entries.length) {
      const entry = entries[next++] as { abs: string; rel: string };
      let handle;
      try {
        handle = await fsp.open(entry.abs, 'r');
        await handle.sync();
      } catch (error) {
        failed = true;
        throw fsError(error, 'sync', entry.rel);
      } finally {
        await handle?.close().catch(() => undefined);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker));
}
