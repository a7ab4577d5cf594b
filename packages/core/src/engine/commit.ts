import { ErrorCode, KetterError } from '../errors.js';
import { joinPath, normalizeRelative } from '../paths.js';
import type { JobRun, StagedFile } from './job-run.js';

/**
 * Make staged data durable, rename staging to the final name (atomic, no-clobber), and
 * re-check what landed. After this the job is committed and nothing rolls it back.
 */
export async function commitStaging(run: JobRun, files: readonly StagedFile[], stagedDirs: readonly string[], rootKind: 'file' | 'directory'): Promise<void> {
  const adapter = run.destAdapter;
  const staging = run.stagingPath;
  if (staging === null) throw new Error('nothing staged');
  run.emitter.setPhase('commit');
  // The proof (every file.verified) is on record before the data becomes visible.
  await run.emitter.flush();
  if (adapter.capabilities.fsync && adapter.sync) {
    await adapter.sync([...files.map((f) => f.stagedPath), ...stagedDirs, ...(rootKind === 'directory' ? [staging] : [])]);
  }
  await adapter.rename(staging, run.finalPath);
  run.committed = true;
  run.stagingPath = null;
  if (adapter.capabilities.fsync && adapter.sync) await adapter.sync([run.destinationDir.path]);
  await recheckFinal(run, files, rootKind);
  const bytes = files.reduce((n, f) => n + f.size, 0);
  run.emitter.emit({
    type: 'job.committed',
    destination: { portal: run.destinationDir.portal.name, path: run.finalPath },
    files: files.length,
    bytes,
  });
  await run.emitter.flush();
}

/** After the rename: the final path exists and every file has its size (one listing, not one stat per file). */
async function recheckFinal(run: JobRun, files: readonly StagedFile[], rootKind: 'file' | 'directory'): Promise<void> {
  const adapter = run.destAdapter;
  const fail = (detail: string) =>
    new KetterError(ErrorCode.IO_ERROR, `committed destination does not match what was verified: ${detail}`, {
      portal: run.destinationDir.portal.name,
      path: run.finalPath,
    });
  if (rootKind === 'file') {
    const st = await adapter.stat(run.finalPath);
    const expected = files[0]?.size ?? 0;
    if (st === null || st.kind !== 'file' || st.size !== expected) throw fail(`expected a ${expected} B file`);
    return;
  }
  const sizes = new Map<string, number>();
  for await (const item of adapter.list(run.finalPath)) {
    if (item.kind === 'file') sizes.set(normalizeRelative(item.path), item.size);
  }
  for (const f of files) {
    const size = sizes.get(f.entry.path);
    if (size !== f.size) throw fail(`${joinPath(run.finalPath, f.entry.path)} ${size === undefined ? 'missing' : `is ${size} B, expected ${f.size} B`}`);
  }
}
