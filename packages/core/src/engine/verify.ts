import { ErrorCode, KetterError } from '../errors.js';
import type { VerifyMethod } from '../events.js';
import { forEachLimit } from './pool.js';
import { rereadHash } from './file-copy.js';
import type { JobRun, StagedFile } from './job-run.js';

/** Files per server-side hash command: one remote round trip hashes many files. */
const SERVER_HASH_BATCH = 256;

/** Whether the destination adapter can hash this job's algorithm without moving the bytes. */
export function hasServerHash(run: JobRun): boolean {
  return run.destAdapter.capabilities.serverSideHash.includes(run.settings.algorithm) && typeof run.destAdapter.hash === 'function';
}

/** Compare a staged file's destination hash with its source hash and record the proof. */
export function recordVerification(run: JobRun, file: StagedFile, destination: { hash: string; size: number }, method: VerifyMethod): void {
  if (destination.size !== file.size || destination.hash !== file.hash) {
    throw new KetterError(
      ErrorCode.CHECKSUM_MISMATCH,
      `verification failed for ${run.destinationDir.portal.describe(file.stagedPath)}: ` +
        `source ${run.settings.algorithm} ${file.hash} (${file.size} B), destination ${destination.hash} (${destination.size} B)`,
      { portal: run.destinationDir.portal.name, path: file.stagedPath },
    );
  }
  run.emitter.emit({
    type: 'file.verified',
    path: file.entry.path,
    size: file.size,
    algorithm: run.settings.algorithm,
    sourceHash: file.hash,
    destinationHash: destination.hash,
    method,
  });
}

/** Verify one staged file by reading it back. */
export async function verifyByReread(run: JobRun, file: StagedFile): Promise<void> {
  const got = await rereadHash(run.destAdapter, file.stagedPath, file.size, run.settings.algorithm, run.signal);
  recordVerification(run, file, got, 'reread');
}

/**
 * Verify staged files in bulk: by server-side hash when the adapter offers this algorithm
 * (sizes checked by stat), else by re-reading each file with bounded concurrency.
 */
export async function verifyStaged(run: JobRun, files: readonly StagedFile[]): Promise<void> {
  run.emitter.setPhase('verify');
  if (!hasServerHash(run)) {
    await forEachLimit(files, run.runtime.concurrency, (file) => verifyByReread(run, file));
    return;
  }
  const adapter = run.destAdapter;
  for (let i = 0; i < files.length; i += SERVER_HASH_BATCH) {
    const batch = files.slice(i, i + SERVER_HASH_BATCH);
    const hashes = await (adapter.hash as NonNullable<typeof adapter.hash>)(
      batch.map((f) => f.stagedPath),
      run.settings.algorithm,
      run.signal ? { signal: run.signal } : {},
    );
    await forEachLimit(batch.entries(), run.runtime.concurrency, async ([j, file]) => {
      const st = await adapter.stat(file.stagedPath);
      recordVerification(run, file, { hash: hashes[j] ?? '', size: st?.size ?? -1 }, 'server');
    });
  }
}
