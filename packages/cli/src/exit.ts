import { ErrorCode, KetterError } from '@ketter/core';
import { redact } from './redact.js';

/** Exit statuses of the `ketter` command; scripts and schedulers branch on them. */
export const ExitCode = {
  OK: 0,
  /** The job (or the check) failed. */
  FAILED: 1,
  /** Invalid usage or input: nothing was attempted. */
  USAGE: 2,
  /** Cancelled by SIGINT/SIGTERM (128 + SIGINT, as shells report it). */
  CANCELLED: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * A problem with what the user asked for (arguments, config file, environment), raised
 * before anything is attempted. Always exit 2.
 */
export class UsageError extends KetterError {
  constructor(message: string, code: ErrorCode = ErrorCode.INVALID_REQUEST) {
    super(code, message);
  }
}

// Codes that describe the request itself rather than the storage: when raised before a
// job is recorded they mean "fix the command line", not "the transfer failed".
const USAGE_CODES: ReadonlySet<string> = new Set([ErrorCode.INVALID_REQUEST, ErrorCode.PATH_NOT_ALLOWED]);

/** Exit status for an error that ended a command. */
export function exitCodeFor(error: unknown): ExitCode {
  if (error instanceof UsageError) return ExitCode.USAGE;
  if (error instanceof KetterError) {
    if (error.code === ErrorCode.CANCELLED) return ExitCode.CANCELLED;
    if (error.jobId !== undefined) return ExitCode.FAILED;
    return USAGE_CODES.has(error.code) ? ExitCode.USAGE : ExitCode.FAILED;
  }
  return ExitCode.FAILED;
}

/** `{ code, message }` of any error, credential-free and without the `[ketter]` prefix. */
export function describeError(error: unknown): { code: string; message: string } {
  if (error instanceof KetterError) return { code: error.code, message: cleanMessage(error.message) };
  const message = error instanceof Error ? error.message : String(error);
  return { code: ErrorCode.IO_ERROR, message: cleanMessage(message) };
}

/** One line, no prefix, no credentials; local paths shown as absolute paths rather than `local:…`. */
export function cleanMessage(message: string): string {
  const text = message
    .replace(/^\[ketter\]\s*/, '')
    .replace(/\s*\n\s*/g, ' ')
    .replace(/(^|[\s'"(])local:\/?/g, '$1/')
    .trim();
  return redact(text);
}

/** The one-line form every error takes on stderr: `ketter: [CODE] message`. */
export function errorLine(error: { code: string; message: string }, suffix = ''): string {
  return `ketter: [${error.code}] ${cleanMessage(error.message)}${suffix}\n`;
}
