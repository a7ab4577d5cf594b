/**
 * Ask Ketter which strategy it would use for a folder, without writing anything: useful for
 * a dashboard that previews a Pro Tools session before it is sent.
 */
import { FsAdapter } from '@ketter/adapter-fs';
import { plan, Portal, scan, type TransferPlan } from '@ketter/core';

export async function preview(root: string, folder: string): Promise<Omit<TransferPlan, 'manifest'>> {
  const portal = new Portal('volume', new FsAdapter({ root }));
  await portal.adapter.connect();
  try {
    const manifest = await scan(portal, await portal.resolve(folder));
    const { manifest: _omit, ...decision } = plan(manifest, { thresholds: { files: 1000, avgSizeBytes: 4 * 1024 * 1024 } });
    return decision;
  } finally {
    await portal.adapter.close();
  }
}
