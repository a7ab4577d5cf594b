import { ErrorCode, KetterError } from '../errors.js';
import { commitStaging } from '../engine/commit.js';
import { rereadHash } from '../engine/file-copy.js';
import { finishIdentical, preserveTimes } from '../engine/finish.js';
import { HashedFiles } from '../engine/hashed-files.js';
import type { JobRun, StagedFile } from '../engine/job-run.js';
import { canExtractOnLane, extractOnLane, warmLaneForReads, type ArchiveMembers } from '../engine/local-lane.js';
import { forEachLimit } from '../engine/pool.js';
import { preflight } from '../engine/preflight.js';
import { deleteSources } from '../engine/source-delete.js';
import type { TransferResult } from '../engine/types.js';
import { recordVerification, verifyStaged } from '../engine/verify.js';
import { joinPath, normalizeRelative } from '../paths.js';
import type { ManifestEntry } from '../manifest.js';
import type { TransferPlan } from '../plan.js';
import { extractArchive } from './extract.js';
import { packToDestination, type PackedArchive } from './pack.js';

/**
 * ZIP_FIRST on a started job: pack → verify archive → extract into staging → verify every
 * file against its source hash → commit → (MOVE) delete sources. Same layout, conflict
 * rules, locks and events as DIRECT, plus `archive.packed` and `archive.extracted`.
 */
export async function executeZipFirst(run: JobRun, plan: TransferPlan): Promise<TransferResult> {
  const manifest = plan.manifest;
  const { entries } = manifest;
  if (manifest.rootKind !== 'directory') {
    throw new KetterError(ErrorCode.INVALID_REQUEST, 'ZIP_FIRST needs a directory source');
  }
  run.decide(plan);
  warmLaneForReads(run, entries); // the packer's readers start while locks and preflight run
  await run.lock();
  // The archive and the extracted tree sit side by side until the archive is removed.
  if ((await preflight(run, manifest, plan.totalBytes * 2)) === 'identical') return finishIdentical(run, manifest, 'ZIP_FIRST');

  run.emitter.setPhase('pack');
  const archive = await packToDestination(run, manifest);
  await verifyArchive(run, archive);
  run.emitter.emit({
    type: 'archive.packed',
    files: plan.nFiles,
    bytes: plan.totalBytes,
    archive: archive.path,
    archiveBytes: archive.bytes,
    algorithm: run.settings.algorithm,
    archiveHash: archive.hash,
  });
  // Files read on the local lane were checked against their scan as they were read.
  const unchecked = entries.indexesOf('file').filter((i) => archive.checked[i] !== 1);
  await forEachLimit(entries.select(unchecked), run.runtime.concurrency, (e) => run.assertSourceUnchanged(e));

  run.emitter.setPhase('extract');
  run.emitter.progress.filesDone = 0;
  const members = laneMembers(run, archive, manifest);
  if (members !== null) return finishOnLane(run, plan, archive, members);
  const { method, listing } = await extractIntoStaging(run, archive, plan);
  recordExtracted(run, plan, archive, method);

  const staged = new HashedFiles(entries);
  for (const entry of entries.select(entries.indexesOf('file'))) {
    const file = stagedFromArchive(archive, entry);
    staged.push(file);
    await run.emitter.caughtUp();
    recordCopied(run, file);
  }
  await verifyStaged(run, staged, (f) => {
    const seen = listing.get(f.entry.path);
    return seen?.kind === 'file' ? seen.size : -1;
  });
  await restoreFileAttributes(run, staged, listing);
  const dirs = entries.indexesOf('directory');
  await preserveTimes(run, manifest, dirs);
  return commitAndFinish(run, plan, staged, dirs);
}

/** A file of the archive as staged: its entry, with the source hash the packer recorded. */
function stagedFromArchive(archive: PackedArchive, entry: ManifestEntry): StagedFile {
  const hash = archive.sourceHashes.hash(entry.index);
  if (hash === undefined) throw new KetterError(ErrorCode.IO_ERROR, `no source hash recorded for ${entry.path}`);
  return { entry, hash, size: archive.sourceHashes.size(entry.index) };
}

/** `file.copied` for a file extracted into staging. */
function recordCopied(run: JobRun, file: StagedFile): void {
  run.emitter.emit({ type: 'file.copied', path: file.entry.path, size: file.size, algorithm: run.settings.algorithm, hash: file.hash, attempt: 1 });
}

function recordExtracted(run: JobRun, plan: TransferPlan, archive: PackedArchive, method: 'adapter' | 'server'): void {
  run.emitter.emit({
    type: 'archive.extracted',
    files: plan.nFiles,
    bytes: plan.totalBytes,
    algorithm: run.settings.algorithm,
    archiveHash: archive.hash,
    method,
  });
}

/** Common end of both extraction paths: MOVE's last source check, commit, source deletion. */
async function commitAndFinish(run: JobRun, plan: TransferPlan, staged: HashedFiles, dirs: Uint32Array): Promise<TransferResult> {
  const manifest = plan.manifest;
  const { entries } = manifest;
  if (run.settings.mode === 'move') {
    await forEachLimit(entries.select(entries.indexesOf('file')), run.runtime.concurrency, (e) => run.assertSourceUnchanged(e));
  }
  // The archive goes before commit so a watcher never sees the tree while a temp file remains.
  await run.removeTempPaths();
  await commitStaging(run, staged, dirs, 'directory');
  const sourcesKept = run.settings.mode === 'move' ? await deleteSources(run, manifest) : [];
  return run.succeed('ZIP_FIRST', { files: staged.length, bytes: plan.totalBytes, sourcesKept, skipped: false });
}

/**
 * The archive's files with the offsets of their local headers, when staging is local and
 * every file's offset is known: then extraction needs no zip reader at all. Names come
 * from the manifest (already confined), never from the archive, and the bytes at each
 * offset are those the packer wrote — the archive was verified by hash.
 */
function laneMembers(run: JobRun, archive: PackedArchive, manifest: TransferPlan['manifest']): ArchiveMembers | null {
  if (!canExtractOnLane(run)) return null;
  const { entries } = manifest;
  const files = entries.indexesOf('file');
  if (files.some((i) => (archive.offsets[i] as number) < 0)) return null;
  return { entries, files, offsetOf: (i) => archive.offsets[i] as number };
}

/**
 * Extract on the local lane: every file is written, read back and hashed by the workers in
 * one pass. Each is recorded as its result arrives — `file.copied`, then `file.verified` by
 * that read-back, compared with its source hash (a mismatch fails the job there) — while the
 * workers extract the next ones; `archive.extracted` follows the last. Modes and mtimes are
 * set as each file is written.
 */
async function finishOnLane(run: JobRun, plan: TransferPlan, archive: PackedArchive, members: ArchiveMembers): Promise<TransferResult> {
  const manifest = plan.manifest;
  const { entries } = manifest;
  const dirs = entries.indexesOf('directory');
  await forEachLimit(entries.select(dirs), run.runtime.concurrency, (d) => run.destAdapter.mkdir(run.stagedPathOf(d)));
  const staged = new HashedFiles(entries);
  await extractOnLane(run, archive.path, members, (i, got) => {
    const file = stagedFromArchive(archive, entries.at(i));
    recordCopied(run, file);
    recordVerification(run, file, { hash: got.destHash, size: got.destSize }, 'reread');
    staged.push(file);
  });
  recordExtracted(run, plan, archive, 'adapter');
  await preserveTimes(run, manifest, dirs);
  return commitAndFinish(run, plan, staged, dirs);
}

/**
 * Give extracted files their source mode and mtime. One listing shows what extraction
 * already restored (a server-side unzip restores both, to the second); only files that
 * differ cost a request — over a high-latency link that is the difference between one
 * round trip and two per file.
 */
async function restoreFileAttributes(run: JobRun, staged: HashedFiles, current: StagingListing): Promise<void> {
  const dest = run.destAdapter;
  const caps = dest.capabilities;
  if (!(caps.setMode && dest.setMode) && !(caps.setTimes && dest.setTimes)) return;
  await forEachLimit(staged, run.runtime.concurrency, async (f) => {
    const listed = current.get(f.entry.path);
    const now = listed?.kind === 'file' ? listed : undefined;
    if (caps.setMode && dest.setMode && (now === undefined || (now.mode & 0o7777) !== (f.entry.mode & 0o7777))) {
      await dest.setMode(run.pathOf(f), f.entry.mode);
    }
    if (caps.setTimes && dest.setTimes && (now === undefined || Math.abs(now.mtimeMs - f.entry.mtimeMs) >= caps.mtimePrecisionMs)) {
      await dest.setTimes(run.pathOf(f), f.entry.mtimeMs);
    }
  });
}

/** The archive at the destination: right size, and the same hash as the bytes written. */
async function verifyArchive(run: JobRun, archive: PackedArchive): Promise<void> {
  run.emitter.setPhase('verify');
  const dest = run.destAdapter;
  const algorithm = run.settings.algorithm;
  const got =
    dest.capabilities.serverSideHash.includes(algorithm) && dest.hash
      ? { hash: (await dest.hash([archive.path], algorithm))[0] ?? '', size: (await dest.stat(archive.path))?.size ?? -1 }
      : await rereadHash(dest, archive.path, archive.bytes, algorithm, run.signal);
  if (got.size !== archive.bytes || got.hash !== archive.hash) {
    throw new KetterError(
      ErrorCode.CHECKSUM_MISMATCH,
      `archive verification failed at ${run.destinationDir.portal.describe(archive.path)}: wrote ${archive.hash} (${archive.bytes} B), read back ${got.hash} (${got.size} B)`,
      { portal: run.destinationDir.portal.name, path: archive.path },
    );
  }
}

/** What a listing of the staging tree says of each entry, by path below staging. */
type StagingListing = Map<string, { kind: string; size: number; mode: number; mtimeMs: number }>;

async function listStaging(run: JobRun): Promise<StagingListing> {
  const seen: StagingListing = new Map();
  for await (const item of run.destAdapter.list(run.stagingPath as string)) {
    seen.set(normalizeRelative(item.path), { kind: item.kind, size: item.size, mode: item.mode, mtimeMs: item.mtimeMs });
  }
  return seen;
}

/**
 * Extract the archive into staging, on the server where it can, and list the result once:
 * the listing checks a server's extraction, and gives verification its sizes and the
 * attribute restore its modes and mtimes (over a network, each listing of thousands of
 * entries costs tens of round trips).
 */
async function extractIntoStaging(run: JobRun, archive: PackedArchive, plan: TransferPlan): Promise<{ method: 'adapter' | 'server'; listing: StagingListing }> {
  const dest = run.destAdapter;
  const staging = run.stagingPath as string;
  const expected = new Map<string, 'file' | 'directory'>();
  for (const entry of plan.manifest.entries) expected.set(entry.path, entry.kind);
  if (dest.capabilities.serverSideExtract && dest.extract) {
    await dest.extract(archive.path, staging, run.signal ? { signal: run.signal } : {});
    // The archive was packed from confined names and verified by hash, but what the server
    // wrote is checked all the same: exactly the expected entries, nothing else.
    const seen = await listStaging(run);
    for (const [path, { kind }] of seen) {
      if (expected.get(path) !== kind) {
        throw new KetterError(ErrorCode.UNSAFE_ARCHIVE_ENTRY, `server-side extraction produced an unexpected entry: ${joinPath(staging, path)}`, {
          portal: run.destinationDir.portal.name,
          path: joinPath(staging, path),
        });
      }
    }
    if (seen.size !== expected.size) throw new KetterError(ErrorCode.IO_ERROR, 'server-side extraction is missing entries');
    run.emitter.progress.filesDone = plan.nFiles;
    return { method: 'server', listing: seen };
  }
  await extractArchive(dest, archive.path, archive.bytes, staging, {
    expected,
    concurrency: run.runtime.concurrency,
    ...(run.signal ? { signal: run.signal } : {}),
    onFile: () => {
      run.emitter.progress.filesDone += 1;
    },
  });
  return { method: 'adapter', listing: await listStaging(run) };
}
