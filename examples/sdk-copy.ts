/**
 * Embedding Ketter in a pipeline: copy a delivery folder between two mounted volumes with
 * a verified SHA-256 trail, forwarding every event to the pipeline's own logger.
 *
 *   node --import tsx examples/sdk-copy.ts   (or compile it with your project)
 */
import { FsAdapter } from '@ketter/adapter-fs';
import { JsonlStore, KetterError, Portal, transfer, type KetterEvent } from '@ketter/core';

export async function deliver(sourceRoot: string, destinationRoot: string, folder: string): Promise<void> {
  const ingest = new Portal('ingest', new FsAdapter({ root: sourceRoot }));
  const delivery = new Portal('delivery', new FsAdapter({ root: destinationRoot }));
  await ingest.adapter.connect();
  await delivery.adapter.connect();
  const store = new JsonlStore({ dir: '/var/lib/ketter' });
  await store.open();
  const controller = new AbortController();
  process.once('SIGTERM', () => controller.abort(new Error('shutting down')));
  try {
    const result = await transfer(
      {
        mode: 'copy',
        source: { portal: ingest, path: folder },
        destination: { portal: delivery, path: 'outgoing' },
        algorithm: 'sha256',
      },
      {
        store,
        signal: controller.signal,
        onEvent: (event: KetterEvent) => {
          if (event.type === 'file.verified') console.log(`verified ${event.path} ${event.destinationHash} (${event.method})`);
          if (event.type === 'job.progress') console.log(`${event.phase} ${event.filesDone}/${event.filesTotal}`);
        },
      },
    );
    console.log(`job ${result.jobId}: ${result.filesCopied} files, ${result.bytesCopied} bytes via ${result.strategy}`);
  } catch (error) {
    if (error instanceof KetterError) console.error(`job ${error.jobId ?? '-'} failed: [${error.code}] ${error.message}`);
    throw error;
  } finally {
    await store.close();
    await Promise.all([ingest.adapter.close(), delivery.adapter.close()]);
  }
}
