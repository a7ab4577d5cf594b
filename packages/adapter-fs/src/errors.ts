import { cancelledError, fromSystemError, type KetterError } from '@ketter/core';

/** Map any error an fs call throws to a KetterError that names the root-relative path. */
export function fsError(error: unknown, operation: string, path: string, signal?: AbortSignal): KetterError {
  if (signal?.aborted || (error instanceof Error && error.name === 'AbortError')) return cancelledError(signal);
  return fromSystemError(error, { path: path === '' ? '.' : path, operation: `[fs] ${operation}` });
}

/** The errno code of a platform error, if it has one. */
export function errnoOf(error: unknown): string | undefined {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}
