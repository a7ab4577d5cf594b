import { ErrorCode, KetterError } from './errors.js';

/** Join `/`-separated relative paths, skipping empty parts (`''` is the root). */
export function joinPath(...parts: readonly string[]): string {
  return parts.filter((p) => p !== '' && p !== '.').join('/');
}

/** The last segment of a relative path (`''` for the root). */
export function baseName(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

/** The parent of a relative path (`''` for a top-level name and for the root). */
export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** Whether `a` and `b` are the same path or one contains the other (segment-wise). */
export function pathsOverlap(a: string, b: string): boolean {
  if (a === b || a === '' || b === '') return true;
  return a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

function notAllowed(input: string, why: string, portal?: string): KetterError {
  return new KetterError(ErrorCode.PATH_NOT_ALLOWED, `${portal ? `[${portal}] ` : ''}path not allowed (${why}): '${input}'`, {
    portal,
    path: input,
  });
}

/**
 * Anything that keeps a path from being its own normal form: an empty, `.` or `..` segment,
 * a leading or trailing `/`, a backslash, a NUL byte or a drive letter.
 */
const NOT_NORMAL = /(?:^|\/)\.{0,2}(?:\/|$)|^[A-Za-z]:|[\\\0]/;

/**
 * Normalise a user-supplied path to a root-relative, `/`-separated form, refusing
 * anything that could name a place outside the root: `..` segments, absolute paths
 * (POSIX, UNC or drive-letter), backslash separators and NUL bytes. This is purely
 * lexical; {@link Portal.resolve} adds the symlink checks.
 */
export function normalizeRelative(input: string, portal?: string): string {
  // Listings hand over thousands of paths, nearly all already in normal form: those are
  // returned as they are, and only the rest take the checks below.
  if (typeof input === 'string' && input !== '' && !NOT_NORMAL.test(input)) return input;
  if (typeof input !== 'string') throw notAllowed(String(input), 'not a string', portal);
  if (input.includes('\0')) throw notAllowed(input, 'NUL byte', portal);
  if (input.startsWith('/') || input.startsWith('\\') || /^[A-Za-z]:/.test(input)) {
    throw notAllowed(input, 'absolute path', portal);
  }
  // A backslash is a separator on the SMB shares studios mount; treating it as one and
  // refusing it avoids a name that is harmless here but escapes on the next hop.
  if (input.includes('\\')) throw notAllowed(input, 'backslash in path', portal);
  const segments: string[] = [];
  for (const segment of input.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') throw notAllowed(input, "'..' segment", portal);
    segments.push(segment);
  }
  return segments.join('/');
}

/**
 * Resolve `..` lexically inside the root: returns null when the path would climb above it.
 * Used for symlink targets, which may legitimately contain `..` as long as they stay inside.
 */
export function resolveInside(base: readonly string[], target: string): string[] | null {
  const out = [...base];
  for (const segment of target.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(segment);
  }
  return out;
}
