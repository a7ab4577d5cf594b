import type { Strategy } from '../events.js';
import type { Manifest, ManifestEntry } from '../manifest.js';
import type { JobRun } from './job-run.js';
import { deleteSources } from './source-delete.js';
import type { TransferResult } from './types.js';

/**
 * Directory modes and mtimes, applied deepest first once every file is in place (writing a
 * file changes its directory's mtime).
 */
export async function preserveTimes(run: JobRun, manifest: Manifest, dirs: readonly { entry: ManifestEntry; path: string }[]): Promise<void> {
  const dest = run.destAdapter;
  const ordered = [...dirs].sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  if (manifest.rootKind === 'directory' && run.stagingPath !== null) {
    ordered.push({ entry: { path: '', kind: 'directory', size: 0, ...manifest.root }, path: run.stagingPath });
  }
  for (const { entry, path } of ordered) {
    if (dest.capabilities.setMode && dest.setMode) await dest.setMode(path, entry.mode | 0o700);
    if (dest.capabilities.setTimes && dest.setTimes) await dest.setTimes(path, entry.mtimeMs);
  }
}

/** skip-identical found the destination already equal: nothing copied; MOVE may now delete the source. */
export async function finishIdentical(run: JobRun, manifest: Manifest, strategy: Strategy): Promise<TransferResult> {
  run.emitter.emit({ type: 'preflight.passed', requiredBytes: 0, freeBytes: null, staging: '' });
  run.committed = true;
  const sourcesKept = run.settings.mode === 'move' ? await deleteSources(run, manifest) : [];
  return run.succeed(strategy, { files: 0, bytes: 0, sourcesKept, skipped: true });
}
