import type { Manifest } from '../manifest.js';
import { joinPath } from '../paths.js';
import { forEachLimit } from './pool.js';
import type { JobRun } from './job-run.js';

/**
 * MOVE, after commit: delete each source file whose size and mtime are unchanged since it
 * was read, then the emptied directories and the source root. A file that changed is kept
 * (its earlier, verified version is at the destination) and reported.
 */
export async function deleteSources(run: JobRun, manifest: Manifest): Promise<string[]> {
  run.emitter.setPhase('delete-source');
  // Deletions are recorded after the commit is on record.
  await run.emitter.flush();
  const adapter = run.sourceAdapter;
  const kept: string[] = [];
  const { entries } = manifest;
  await forEachLimit(entries.select(entries.indexesOf('file')), run.runtime.concurrency, async (entry) => {
    const path = joinPath(run.source.path, entry.path);
    const st = await adapter.stat(path);
    if (st === null || st.kind !== 'file' || st.size !== entry.size || st.mtimeMs !== entry.mtimeMs) {
      kept.push(entry.path);
      return;
    }
    await adapter.unlink(path);
    run.emitter.emit({ type: 'source.deleted', path: entry.path, kind: 'file' });
  });
  if (manifest.rootKind === 'directory') {
    const dirs = Array.from(entries.indexesOf('directory'), (i) => entries.path(i));
    // Deepest first, then the root itself.
    dirs.sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1));
    for (const rel of [...dirs, '']) {
      try {
        await adapter.rmdir(joinPath(run.source.path, rel));
        run.emitter.emit({ type: 'source.deleted', path: rel, kind: 'directory' });
      } catch {
        // Not empty: it holds a kept file or something added during the job. Leave it.
      }
    }
  }
  kept.sort();
  return kept;
}
