import * as fs from 'node:fs';
import { ErrorCode, KetterError } from '@ketter/core';
import { errnoOf } from './errors.js';

/**
 * fast-glob matches every path against a regular expression whose `.` does not match line
 * terminators, so it silently leaves out any name holding `\n`, `\r`, U+2028 or U+2029
 * (and everything below such a directory). A transfer must never lose a file quietly, so
 * the walk runs over a thin view of the filesystem in which those characters (and `%`, to
 * keep the mapping reversible) are escaped; paths are unescaped on the way out.
 */
const UNSAFE = /[%\n\r\u2028\u2029]/;
const ESCAPES: Record<string, string> = { '%': '%25', '\n': '%0A', '\r': '%0D', '\u2028': '%u2028', '\u2029': '%u2029' };
const UNESCAPES: Record<string, string> = Object.fromEntries(Object.entries(ESCAPES).map(([k, v]) => [v, k]));

export function escapeName(name: string): string {
  return UNSAFE.test(name) ? name.replace(/[%\n\r\u2028\u2029]/g, (c) => ESCAPES[c] as string) : name;
}

export function unescapeName(name: string): string {
  return name.includes('%') ? name.replace(/%(?:25|0A|0D|u2028|u2029)/g, (s) => UNESCAPES[s] as string) : name;
}

type Callback<T> = (error: NodeJS.ErrnoException | null, value: T) => void;

/**
 * Something that existed a moment ago is gone: the tree changed under the walk. fast-glob
 * would skip it (and with it every sibling listed in the same directory), so fail instead.
 */
function vanished(error: NodeJS.ErrnoException | null): NodeJS.ErrnoException | null {
  if (error === null || errnoOf(error) !== 'ENOENT') return error;
  return new KetterError(ErrorCode.SOURCE_CHANGED, `[fs] list: an entry disappeared while listing (${error.path ?? 'unknown path'})`, {
    cause: error,
  }) as unknown as NodeJS.ErrnoException;
}

/** The `fs` methods fast-glob walks with, over escaped paths. */
export const escapedFs = {
  readdir(path: string, ...rest: unknown[]): void {
    const callback = rest.pop() as Callback<unknown[]>;
    const options = rest[0] as fs.ObjectEncodingOptions & { withFileTypes?: boolean } | undefined;
    fs.readdir(unescapeName(path), { ...options, encoding: 'utf8' } as { withFileTypes: true }, (error, items: unknown[]) => {
      if (error) return callback(vanished(error), []);
      callback(null, items.map((item) => (typeof item === 'string' ? escapeName(item) : escapeDirent(item as fs.Dirent))));
    });
  },
  lstat(path: string, callback: Callback<fs.Stats | undefined>): void {
    fs.lstat(unescapeName(path), (error, stats) => callback(vanished(error), stats));
  },
  stat(path: string, callback: Callback<fs.Stats | undefined>): void {
    fs.stat(unescapeName(path), (error, stats) => callback(vanished(error), stats));
  },
  lstatSync: (path: string) => fs.lstatSync(unescapeName(path)),
  statSync: (path: string) => fs.statSync(unescapeName(path)),
  readdirSync: (path: string) => fs.readdirSync(unescapeName(path)).map(escapeName),
};

function escapeDirent(dirent: fs.Dirent): fs.Dirent {
  const copy = Object.create(Object.getPrototypeOf(dirent) as object) as fs.Dirent;
  return Object.assign(copy, dirent, { name: escapeName(dirent.name) });
}
