import type { Strategy } from '../events.js';
import type { Manifest } from '../manifest.js';
import type { JobRun } from './job-run.js';
import { deleteSources } from './source-delete.js';
import type { TransferResult } from './types.js';

/**
 * Directory modes and mtimes, applied deepest first once every file is in place (writing a
 * file changes its directory's mtime).
 */
export async function preserveTimes(run: JobRun, manifest: Manifest, dirs: Uint32Array): Promise<void> {
  const dest = run.destAdapter;
  const { entries } = manifest;
  const staged = Array.from(entries.select(dirs), (d) => ({ mode: d.mode, mtimeMs: d.mtimeMs, path: run.stagedPathOf(d), depth: d.path.split('/').length }));
  staged.sort((a, b) => b.depth - a.depth);
  if (manifest.rootKind === 'directory' && run.stagingPath !== null) staged.push({ ...manifest.root, path: run.stagingPath, depth: 0 });
  for (const { mode, mtimeMs, path } of staged) {
    if (dest.capabilities.setMode && dest.setMode) await dest.setMode(path, mode | 0o700);
    if (dest.capabilities.setTimes && dest.setTimes) await dest.setTimes(path, mtimeMs);
  }
}

/** skip-identical found the destination already equal: nothing copied; MOVE may now delete the source. */
export async function finishIdentical(run: JobRun, manifest: Manifest, strategy: Strategy): Promise<TransferResult> {
  run.emitter.emit({ type: 'preflight.passed', requiredBytes: 0, freeBytes: null, staging: '' });
  run.committed = true;
  const sourcesKept = run.settings.mode === 'move' ? await deleteSources(run, manifest) : [];
  return run.succeed(strategy, { files: 0, bytes: 0, sourcesKept, skipped: true });
}
