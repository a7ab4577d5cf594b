import { promises as fsp } from 'node:fs';
import { ErrorCode, KetterError } from '@ketter/core';
import { errnoOf, fsError } from './errors.js';

/** link(2) failures that mean "this filesystem does not do hard links here", not "no". */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EMLINK', 'ENOSYS']);

function exists(to: string): KetterError {
  return new KetterError(ErrorCode.DESTINATION_EXISTS, `[fs] rename: destination already exists '${to}'`, { path: to });
}

/**
 * Rename without ever replacing what is at `to`.
 *
 * rename(2) silently replaces an existing file (and an empty directory), and Node has no
 * renameat2(RENAME_NOREPLACE). For files, link(2) is the atomic no-clobber primitive: it
 * fails with EEXIST when `to` exists, and once it succeeds, unlinking the old name
 * completes the move; readers never see `to` with partial content. Where the filesystem
 * refuses hard links (some SMB/FUSE mounts) and for directories, we check then rename.
 * That leaves a window in which another process could create `to`; Ketter's own jobs
 * cannot race there because they lock both paths before touching them.
 */
export async function renameNoClobber(
  absFrom: string,
  absTo: string,
  from: string,
  to: string,
  link: (existing: string, created: string) => Promise<void> = fsp.link,
): Promise<void> {
  let stats;
  try {
    stats = await fsp.lstat(absFrom);
  } catch (error) {
    throw fsError(error, 'rename', from);
  }
  if (!stats.isDirectory()) {
    try {
      await link(absFrom, absTo);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'EEXIST') throw exists(to);
      if (code === undefined || !NO_HARD_LINKS.has(code)) throw fsError(error, 'rename', to);
      return checkThenRename(absFrom, absTo, from, to);
    }
    try {
      await fsp.unlink(absFrom);
    } catch (error) {
      // Leave things as they were rather than with two names for one file.
      await fsp.unlink(absTo).catch(() => undefined);
      throw fsError(error, 'rename', from);
    }
    return;
  }
  return checkThenRename(absFrom, absTo, from, to);
}

async function checkThenRename(absFrom: string, absTo: string, from: string, to: string): Promise<void> {
  try {
    await fsp.lstat(absTo);
    throw exists(to);
  } catch (error) {
    if (error instanceof KetterError) throw error;
    if (errnoOf(error) !== 'ENOENT') throw fsError(error, 'rename', to);
  }
  try {
    await fsp.rename(absFrom, absTo);
  } catch (error) {
    throw fsError(error, 'rename', from);
  }
}
