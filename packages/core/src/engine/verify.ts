import { ErrorCode, KetterError } from '../errors.js';
import { normalizeRelative } from '../paths.js';
import type { VerifyMethod } from '../events.js';
import { forEachLimit } from './pool.js';
import { rereadHash } from './file-copy.js';
import type { HashedFiles } from './hashed-files.js';
import type { JobRun, StagedFile } from './job-run.js';

/**
 * Files per server-side hash command: one remote command hashes many files. Each command
 * costs a few round trips and a process start, so a job's files are spread over as few
 * commands as keep {@link SERVER_HASH_PARALLEL} of them busy, within these bounds (the
 * upper one keeps progress and the proof flowing on large jobs).
 */
const SERVER_HASH_BATCH = { min: 64, max: 1024 };
/** Hash commands in flight at once: each is one remote command on its own channel. */
const SERVER_HASH_PARALLEL = 4;

/** Whether the destination adapter can hash this job's algorithm without moving the bytes. */
export function hasServerHash(run: JobRun): boolean {
  return run.destAdapter.capabilities.serverSideHash.includes(run.settings.algorithm) && typeof run.destAdapter.hash === 'function';
}

/** Throw CHECKSUM_MISMATCH unless a staged file's destination size and hash are its source's. */
export function assertVerified(run: JobRun, file: StagedFile, destination: { hash: string; size: number }): void {
  if (destination.size !== file.size || destination.hash !== file.hash) {
    const path = run.pathOf(file);
    throw new KetterError(
      ErrorCode.CHECKSUM_MISMATCH,
      `verification failed for ${run.destinationDir.portal.describe(path)}: ` +
        `source ${run.settings.algorithm} ${file.hash} (${file.size} B), destination ${destination.hash} (${destination.size} B)`,
      { portal: run.destinationDir.portal.name, path },
    );
  }
}

/** Compare a staged file's destination hash with its source hash and record the proof. */
export function recordVerification(run: JobRun, file: StagedFile, destination: { hash: string; size: number }, method: VerifyMethod): void {
  assertVerified(run, file, destination);
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
  const got = await rereadHash(run.destAdapter, run.pathOf(file), file.size, run.settings.algorithm, run.signal);
  recordVerification(run, file, got, 'reread');
}

/**
 * Verify staged files in bulk: by server-side hash when the adapter offers this algorithm
 * (sizes from a listing: `knownSize` from one the caller already made, or one made here),
 * else by re-reading each file with bounded concurrency.
 */
export async function verifyStaged(run: JobRun, files: HashedFiles, knownSize?: (file: StagedFile) => number): Promise<void> {
  run.emitter.setPhase('verify');
  if (!hasServerHash(run)) {
    await forEachLimit(files, run.runtime.concurrency, async (file) => {
      await run.emitter.caughtUp();
      await verifyByReread(run, file);
    });
    return;
  }
  const adapter = run.destAdapter;
  const hash = adapter.hash as NonNullable<typeof adapter.hash>;
  const sizeOf = knownSize ?? (await stagedSizes(run, files));
  const per = Math.min(SERVER_HASH_BATCH.max, Math.max(SERVER_HASH_BATCH.min, Math.ceil(files.length / SERVER_HASH_PARALLEL)));
  await forEachLimit(chunks(files, per), SERVER_HASH_PARALLEL, async (batch) => {
    await run.emitter.caughtUp();
    const hashes = await hash(
      batch.map((f) => run.pathOf(f)),
      run.settings.algorithm,
      run.signal ? { signal: run.signal } : {},
    );
    batch.forEach((file, j) => recordVerification(run, file, { hash: hashes[j] ?? '', size: sizeOf(file) }, 'server'));
  });
}

/** Consecutive runs of `per` items, made as they are asked for. */
function* chunks<T>(items: Iterable<T>, per: number): IterableIterator<T[]> {
  let chunk: T[] = [];
  for (const item of items) {
    chunk.push(item);
    if (chunk.length === per) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

/** Sizes of staged files (-1: not found): one listing of the staging tree rather than a stat per file. */
async function stagedSizes(run: JobRun, files: HashedFiles): Promise<(file: StagedFile) => number> {
  const adapter = run.destAdapter;
  const { entries } = files;
  const sizes = new Float64Array(entries.length).fill(-1);
  const staging = run.stagingPath;
  if (staging !== null && files.length > 1 && (await adapter.stat(staging))?.kind === 'directory') {
    for await (const item of adapter.list(staging)) {
      const at = item.kind === 'file' ? entries.indexOf(normalizeRelative(item.path)) : -1;
      if (at >= 0) sizes[at] = item.size;
    }
  } else {
    await forEachLimit(files, run.runtime.concurrency, async (f) => {
      const st = await adapter.stat(run.pathOf(f));
      if (st) sizes[f.entry.index] = st.size;
    });
  }
  return (file) => sizes[file.entry.index] as number;
}
