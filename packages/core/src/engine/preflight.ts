import type { Adapter } from '../adapter.js';
import { ErrorCode, KetterError } from '../errors.js';
import type { Manifest, ManifestEntry } from '../manifest.js';
import { HashedFiles } from './hashed-files.js';
import { joinPath, normalizeRelative, parentPath, pathsOverlap } from '../paths.js';
import { rereadHash } from './file-copy.js';
import type { JobRun } from './job-run.js';
import { forEachLimit } from './pool.js';
import { hasServerHash, recordVerification } from './verify.js';

/** Free space asked for beyond the bytes to write, as the SPEC's ×1.10 margin. */
export const SPACE_MARGIN = 1.1;

export type PreflightOutcome = 'proceed' | 'identical';

/**
 * Every check before the first write, then the staging area. On `identical`
 * (skip-identical and the destination already matches by hash) nothing is written.
 */
export async function preflight(run: JobRun, manifest: Manifest, bytesToWrite: number, adoptStaging?: string): Promise<PreflightOutcome> {
  run.emitter.setPhase('preflight');
  try {
    assertNoOverlap(run);
    const adapter = run.destAdapter;
    const existing = await adapter.stat(run.finalPath);
    if (existing !== null) {
      if (run.settings.onConflict === 'skip-identical' && (await isIdentical(run, manifest))) return 'identical';
      throw new KetterError(ErrorCode.DESTINATION_EXISTS, `destination already exists: ${run.destinationDir.portal.describe(run.finalPath)}`, {
        portal: run.destinationDir.portal.name,
        path: run.finalPath,
      });
    }
    const requiredBytes = Math.ceil(bytesToWrite * SPACE_MARGIN);
    const freeBytes = await freeSpace(run);
    if (freeBytes !== null && freeBytes < requiredBytes) {
      throw new KetterError(
        ErrorCode.INSUFFICIENT_SPACE,
        `not enough free space at ${run.destinationDir.portal.describe(run.destinationDir.path)}: ${requiredBytes} B needed (with 10% margin), ${freeBytes} B free`,
        { portal: run.destinationDir.portal.name, path: run.destinationDir.path },
      );
    }
    // The plan (and so the staging name) is on record before anything is created.
    await run.emitter.flush();
    await run.ensureDestinationDir();
    await createStaging(run, manifest.rootKind, adoptStaging);
    run.emitter.emit({ type: 'preflight.passed', requiredBytes, freeBytes, staging: run.stagingPath ?? '' });
    return 'proceed';
  } catch (error) {
    if (!(error instanceof KetterError && error.code === ErrorCode.CANCELLED)) run.preflightFailed(error);
    throw error;
  }
}

function assertNoOverlap(run: JobRun): void {
  const source = run.source.portal.lockKey(run.source.path);
  const final = run.destinationDir.portal.lockKey(run.finalPath);
  if (pathsOverlap(source, final)) {
    throw new KetterError(
      ErrorCode.SOURCE_DEST_OVERLAP,
      `source ${run.source.portal.describe(run.source.path)} and destination ${run.destinationDir.portal.describe(run.finalPath)} overlap`,
      { portal: run.destinationDir.portal.name, path: run.finalPath },
    );
  }
}

function freeSpace(run: JobRun): Promise<number | null> {
  return freeBytesAt(run.destAdapter, run.destinationDir.path);
}

/**
 * Free bytes where `dir` is (or will be created), or null where the adapter cannot tell.
 * The directory may not exist yet: its nearest existing ancestor is asked.
 */
export async function freeBytesAt(adapter: Adapter, dir: string): Promise<number | null> {
  if (!adapter.capabilities.statfs || !adapter.statfs) return null;
  let p = dir;
  while (p !== '' && (await adapter.stat(p)) === null) p = parentPath(p);
  return (await adapter.statfs(p)).freeBytes;
}

/**
 * Create the staging area, which also proves the destination is writable. A one-file
 * job stages to a hidden file created by the copy; here it is probed and removed.
 */
async function createStaging(run: JobRun, rootKind: 'file' | 'directory', adopt?: string): Promise<void> {
  const adapter = run.destAdapter;
  const staging = run.stagingNameFor(rootKind);
  if (rootKind === 'directory') {
    // Resuming: the interrupted job's staging becomes this job's, in one atomic rename.
    if (adopt) await adapter.rename(adopt, staging);
    else await adapter.mkdir(staging);
    run.stagingPath = staging;
    return;
  }
  run.stagingPath = staging;
  await new Promise<void>((resolve, reject) => {
    const probe = adapter.openWrite(staging, {});
    probe.once('error', reject);
    probe.end(() => resolve());
  });
  await adapter.unlink(staging);
}

/** skip-identical: the destination holds exactly the source's files with equal hashes. */
async function isIdentical(run: JobRun, manifest: Manifest): Promise<boolean> {
  const adapter = run.destAdapter;
  const { entries } = manifest;
  const files = entries.indexesOf('file');
  // Sizes at the destination by manifest index (-1: absent); a file the source lacks ends the check.
  const destSizes = new Float64Array(entries.length).fill(-1);
  const root = await adapter.stat(run.finalPath);
  if (root === null || root.kind !== manifest.rootKind) return false;
  if (manifest.rootKind === 'file') destSizes[0] = root.size;
  else {
    for await (const item of adapter.list(run.finalPath, run.signal ? { signal: run.signal } : {})) {
      if (item.kind === 'file') {
        const at = entries.indexOf(normalizeRelative(item.path));
        if (at < 0 || entries.kind(at) !== 'file') return false;
        destSizes[at] = item.size;
      } else if (item.kind !== 'directory') return false;
    }
  }
  if (files.some((i) => destSizes[i] !== entries.size(i))) return false;
  const pairs = new HashedFiles(entries, run.finalPath);
  await forEachLimit(entries.select(files), run.runtime.concurrency, async (entry: ManifestEntry) => {
    const source = await rereadHash(run.sourceAdapter, joinPath(run.source.path, entry.path), entry.size, run.settings.algorithm, run.signal);
    pairs.push({ entry, hash: source.hash, size: source.size });
  });
  try {
    if (hasServerHash(run) && adapter.hash) {
      const found = [...pairs];
      const hashes = await adapter.hash(found.map((p) => run.pathOf(p)), run.settings.algorithm);
      found.forEach((p, i) => recordVerification(run, p, { hash: hashes[i] ?? '', size: destSizes[p.entry.index] ?? -1 }, 'existing'));
    } else {
      await forEachLimit(pairs, run.runtime.concurrency, async (p) => {
        const got = await rereadHash(adapter, run.pathOf(p), p.size, run.settings.algorithm, run.signal);
        recordVerification(run, p, got, 'existing');
      });
    }
  } catch (error) {
    if (error instanceof KetterError && error.code === ErrorCode.CHECKSUM_MISMATCH) return false;
    throw error;
  }
  return true;
}
