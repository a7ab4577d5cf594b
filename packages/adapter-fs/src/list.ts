import { relative, sep } from 'node:path';
import type { Stats } from 'node:fs';
import type { Readable } from 'node:stream';
import fg from 'fast-glob';
import { cancelledError, type ListEntry } from '@ketter/core';
import { fsError } from './errors.js';
import { escapeName, escapedFs, unescapeName } from './glob-fs.js';
import { toFileStat } from './stat.js';

interface GlobEntry {
  path: string;
  stats?: Stats;
}

/**
 * Walk the directory `absDir` with fast-glob's stream API. Links are reported with lstat
 * and never descended into; dotfiles are included; a directory the walk cannot read fails
 * the listing, and so does an entry vanishing mid-walk (see `glob-fs.ts`): a listing is
 * complete or it is an error.
 *
 * `unique: false` keeps fast-glob from remembering every path it has seen (one pattern
 * cannot produce duplicates), so memory does not grow with the tree. The walker does not
 * wait for the consumer, though: entries found faster than they are consumed queue in the
 * stream. Consumers that do slow work per entry should collect what they need and move on.
 */
export async function* listTree(
  absDir: string,
  root: string,
  relDir: string,
  signal: AbortSignal | undefined,
): AsyncGenerator<ListEntry> {
  if (signal?.aborted) throw cancelledError(signal);
  const stream = fg.stream('**', {
    cwd: escapeName(absDir),
    fs: escapedFs as unknown as fg.FileSystemAdapter,
    dot: true,
    onlyFiles: false,
    followSymbolicLinks: false,
    stats: true,
    objectMode: true,
    unique: false,
    suppressErrors: false,
    throwErrorOnBrokenSymbolicLink: false,
    caseSensitiveMatch: true,
  }) as unknown as Readable;
  const onAbort = () => stream.destroy(cancelledError(signal));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const item of stream as AsyncIterable<GlobEntry>) {
      if (signal?.aborted) throw cancelledError(signal);
      if (item.stats === undefined) continue;
      yield { path: unescapeName(item.path), ...toFileStat(item.stats) };
    }
  } catch (error) {
    // fast-glob's errors carry the absolute path of the directory it failed on.
    const failed = errnoPath(error);
    const rel = failed === undefined ? relDir : relative(root, failed).split(sep).join('/');
    throw fsError(error, 'list', rel, signal);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stream.destroy();
  }
}

function errnoPath(error: unknown): string | undefined {
  if (error && typeof error === 'object' && 'path' in error && typeof error.path === 'string') return error.path;
  return undefined;
}
