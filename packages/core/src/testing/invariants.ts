import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import type { Mode } from '../events.js';

/** Content of one file in a {@link TreeSnapshot}. */
export interface FileDigest {
  sha256: string;
  size: number;
}

/**
 * What a local file or directory held at one moment: every regular file by path relative
 * to the snapshotted root (`''` when the root is itself a file), and every directory below
 * the root. Take one of the source before a job; the invariant checker compares against it.
 */
export interface TreeSnapshot {
  rootKind: 'file' | 'directory';
  files: Record<string, FileDigest>;
  /** Directories below the root (the root itself excluded), relative, `/`-separated. */
  dirs: string[];
}

/** How a job ended, as far as the checker needs to know. */
export type TransferOutcome =
  /** The job reported success. */
  | 'succeeded'
  /** The job reported failure or cancellation: it rolled back, unless it had committed. */
  | 'failed'
  /** The job's process died and recovery has run since. */
  | 'recovered'
  /** The job's process died and nothing has cleaned up yet: staging may remain (hidden). */
  | 'killed';

/** What a job was asked to do and how it ended. All paths are local. */
export interface TransferInvariantInput {
  /** Snapshot of the source taken before the job ({@link snapshotTree}). */
  before: TreeSnapshot;
  /** The source file or directory the job read (and, for MOVE, deletes). */
  sourceDir: string;
  /** The destination directory: the source lands at `destinationDir/finalName`. */
  destinationDir: string;
  /** Name under the destination directory; `basename(sourceDir)` by default. */
  finalName?: string;
  mode: Mode;
  outcome: TransferOutcome;
  /**
   * What the final path held before the job, when it already existed (a refused job must
   * leave it exactly so). Omit when the final path did not exist.
   */
  destinationBefore?: TreeSnapshot;
}

/** Which promise a violation breaks. */
export type InvariantRule =
  /** A source file is gone and no identical copy exists at the destination: data lost. */
  | 'file-lost'
  /** A source file's bytes changed (or it vanished) although the job must leave it intact. */
  | 'source-changed'
  /** The final path exists but does not hold exactly the source's files, byte for byte. */
  | 'final-partial'
  /** The final path holds something the source did not. */
  | 'final-extra'
  /** A hidden staging path or job archive remains after rollback or recovery. */
  | 'staging-left'
  /** The job succeeded but its result is not complete (final missing, or MOVE left the source). */
  | 'not-complete'
  /** A MOVE succeeded and moved every file, but left its emptied source directories behind. */
  | 'source-left'
  /** A destination that existed before the job was altered. */
  | 'destination-altered';

export interface InvariantViolation {
  rule: InvariantRule;
  /** The path concerned, absolute. */
  path: string;
  message: string;
}

/** Names Ketter gives its hidden staging paths and archives. */
const JOB_LEFTOVER = /^\..*ketter-.+\.(partial|archive\.zip)$/;

/**
 * Snapshot a local file or directory tree: SHA-256 and size of every regular file, and
 * every directory. Symbolic links are recorded as neither (Ketter never follows them).
 * A path that does not exist yields `null`.
 */
export async function snapshotTree(path: string): Promise<TreeSnapshot | null> {
  const root = await lstat(path).catch(() => null);
  if (root === null) return null;
  if (root.isFile()) return { rootKind: 'file', files: { '': await digestFile(path) }, dirs: [] };
  if (!root.isDirectory()) return null;
  const snapshot: TreeSnapshot = { rootKind: 'directory', files: {}, dirs: [] };
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const full = join(dir, entry.name);
      const rel = relative(path, full).split(sep).join('/');
      if (entry.isDirectory()) {
        snapshot.dirs.push(rel);
        await walk(full);
      } else if (entry.isFile()) {
        snapshot.files[rel] = await digestFile(full);
      }
    }
  };
  await walk(path);
  snapshot.dirs.sort();
  return snapshot;
}

async function digestFile(path: string): Promise<FileDigest> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * Check what Ketter promises about a finished (or killed) local transfer, by looking at
 * the bytes on disk:
 *
 * - nothing is lost: every source file is still at the source unchanged, or present and
 *   hash-identical under the final destination (COPY: always still at the source);
 * - no partial content under the final name: if the final path exists it holds exactly
 *   the source's files and directories, with equal hashes;
 * - no hidden staging path or job archive in the destination directory, unless the
 *   process was killed and recovery has not run yet;
 * - on success the final tree is complete, and a MOVE's source is gone;
 * - a destination that existed before the job is left exactly as it was.
 *
 * Returns every violation found (empty when the invariants hold).
 */
export async function checkTransferInvariants(input: TransferInvariantInput): Promise<InvariantViolation[]> {
  const { before, sourceDir, destinationDir, mode, outcome } = input;
  const finalName = input.finalName ?? basename(sourceDir);
  const finalPath = join(destinationDir, finalName);
  const violations: InvariantViolation[] = [];
  const add = (rule: InvariantRule, path: string, message: string) => void violations.push({ rule, path, message });
  const at = (root: string, rel: string) => (rel === '' ? root : join(root, rel));

  const source = await snapshotTree(sourceDir);
  const final = await snapshotTree(finalPath);
  const finalExists = (await lstat(finalPath).catch(() => null)) !== null;

  if (input.destinationBefore !== undefined) {
    // The job was about someone else's data at the final path: it must be untouched.
    if (final === null || !sameTree(final, input.destinationBefore)) {
      add('destination-altered', finalPath, `the existing destination ${finalPath} was changed by the job`);
    }
  } else if (finalExists) {
    if (final === null || final.rootKind !== before.rootKind) {
      add('final-partial', finalPath, `${finalPath} exists but is not a ${before.rootKind} like the source`);
    } else {
      for (const [rel, digest] of Object.entries(before.files)) {
        const got = final.files[rel];
        if (got === undefined) add('final-partial', at(finalPath, rel), `final destination is missing ${rel || finalName}`);
        else if (got.sha256 !== digest.sha256 || got.size !== digest.size) {
          add('final-partial', at(finalPath, rel), `final destination holds different bytes for ${rel || finalName} (${got.size} B, source ${digest.size} B)`);
        }
      }
      for (const rel of Object.keys(final.files)) {
        if (!(rel in before.files)) add('final-extra', at(finalPath, rel), `final destination holds ${rel}, which the source did not`);
      }
      const dirs = new Set(final.dirs);
      for (const rel of before.dirs) if (!dirs.has(rel)) add('final-partial', at(finalPath, rel), `final destination is missing directory ${rel}`);
      const expectedDirs = new Set(before.dirs);
      for (const rel of final.dirs) if (!expectedDirs.has(rel)) add('final-extra', at(finalPath, rel), `final destination holds directory ${rel}, which the source did not`);
    }
  }

  // Every file the source held must survive somewhere, byte for byte.
  const finalIsOurs = input.destinationBefore === undefined ? final : null;
  for (const [rel, digest] of Object.entries(before.files)) {
    const now = source?.rootKind === before.rootKind ? source.files[rel] : undefined;
    const intact = now !== undefined && now.sha256 === digest.sha256 && now.size === digest.size;
    if (intact) continue;
    const copy = finalIsOurs?.files[rel];
    const landed = copy !== undefined && copy.sha256 === digest.sha256 && copy.size === digest.size;
    if (now !== undefined) {
      add('source-changed', at(sourceDir, rel), `source file ${rel || basename(sourceDir)} was altered (${now.size} B, was ${digest.size} B)`);
    } else if (!landed) {
      add('file-lost', at(sourceDir, rel), `source file ${rel || basename(sourceDir)} is gone and no identical copy exists at ${finalPath}`);
    } else if (mode === 'copy') {
      add('source-changed', at(sourceDir, rel), `COPY removed source file ${rel || basename(sourceDir)}`);
    }
  }

  if (outcome !== 'killed') {
    const names = await readdir(destinationDir).catch(() => [] as string[]);
    for (const name of names) {
      if (JOB_LEFTOVER.test(name)) add('staging-left', join(destinationDir, name), `hidden job leftover ${name} remains in ${destinationDir} after ${outcome === 'recovered' ? 'recovery' : 'the job ended'}`);
    }
  }

  if (outcome === 'succeeded') {
    if (input.destinationBefore === undefined && final === null) add('not-complete', finalPath, `the job succeeded but ${finalPath} does not exist`);
    if (mode === 'move' && (await lstat(sourceDir).catch(() => null)) !== null) {
      const left = source === null ? [] : Object.keys(source.files).filter((rel) => rel in before.files);
      if (left.length > 0) add('not-complete', sourceDir, `the MOVE succeeded but ${left.length} source file(s) remain under ${sourceDir}`);
      else add('source-left', sourceDir, `the MOVE succeeded but its (emptied) source ${sourceDir} still exists`);
    }
  }
  return violations;
}

function sameTree(a: TreeSnapshot, b: TreeSnapshot): boolean {
  if (a.rootKind !== b.rootKind || a.dirs.join('\0') !== b.dirs.join('\0')) return false;
  const ak = Object.keys(a.files).sort();
  const bk = Object.keys(b.files).sort();
  if (ak.join('\0') !== bk.join('\0')) return false;
  return ak.every((k) => a.files[k]?.sha256 === b.files[k]?.sha256 && a.files[k]?.size === b.files[k]?.size);
}

/** Thrown by {@link assertTransferInvariants}; `violations` lists every broken promise. */
export class TransferInvariantError extends Error {
  readonly violations: readonly InvariantViolation[];

  constructor(violations: readonly InvariantViolation[]) {
    super(`[ketter] ${violations.length} transfer invariant violation(s):\n${violations.map((v) => `  - [${v.rule}] ${v.message}`).join('\n')}`);
    this.name = 'TransferInvariantError';
    this.violations = violations;
  }
}

/** {@link checkTransferInvariants}, throwing a {@link TransferInvariantError} that lists every violation. */
export async function assertTransferInvariants(input: TransferInvariantInput): Promise<void> {
  const violations = await checkTransferInvariants(input);
  if (violations.length > 0) throw new TransferInvariantError(violations);
}
