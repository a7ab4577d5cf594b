import type { Stats } from 'node:fs';
import type { EntryKind, FileStat, ListEntry } from '@ketter/core';

export function kindOf(stats: Stats): EntryKind {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** An lstat result as Ketter sees it: sizes only for files, permission bits only. */
export function toFileStat(stats: Stats): FileStat {
  const kind = kindOf(stats);
  return { kind, size: kind === 'file' ? stats.size : 0, mtimeMs: stats.mtimeMs, mode: stats.mode & 0o777 };
}

/** {@link toFileStat} with the entry's path, built in one object: listings make one per entry. */
export function toListEntry(path: string, stats: Stats): ListEntry {
  const kind = kindOf(stats);
  return { path, kind, size: kind === 'file' ? stats.size : 0, mtimeMs: stats.mtimeMs, mode: stats.mode & 0o777 };
}
