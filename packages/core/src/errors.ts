/**
 * Stable error codes. Tests and callers branch on these, never on message text;
 * renaming one is a breaking change.
 */
export const ErrorCode = {
  INVALID_REQUEST: 'INVALID_REQUEST',
  SOURCE_NOT_FOUND: 'SOURCE_NOT_FOUND',
  DESTINATION_EXISTS: 'DESTINATION_EXISTS',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  INSUFFICIENT_SPACE: 'INSUFFICIENT_SPACE',
  PATH_NOT_ALLOWED: 'PATH_NOT_ALLOWED',
  SYMLINK_NOT_ALLOWED: 'SYMLINK_NOT_ALLOWED',
  SOURCE_DEST_OVERLAP: 'SOURCE_DEST_OVERLAP',
  SOURCE_LOCKED: 'SOURCE_LOCKED',
  DESTINATION_LOCKED: 'DESTINATION_LOCKED',
  SOURCE_CHANGED: 'SOURCE_CHANGED',
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  UNSAFE_ARCHIVE_ENTRY: 'UNSAFE_ARCHIVE_ENTRY',
  CONNECTION_ERROR: 'CONNECTION_ERROR',
  HOST_KEY_REJECTED: 'HOST_KEY_REJECTED',
  AUTHENTICATION_FAILED: 'AUTHENTICATION_FAILED',
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  STORE_ERROR: 'STORE_ERROR',
  AUDIT_TAMPERED: 'AUDIT_TAMPERED',
  IO_ERROR: 'IO_ERROR',
  CANCELLED: 'CANCELLED',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes worth retrying per file: the fault is in the path to the data, not in the request. */
const TRANSIENT_CODES: ReadonlySet<ErrorCode> = new Set([ErrorCode.CONNECTION_ERROR, ErrorCode.IO_ERROR]);

/** errno values that come and go (busy devices, dropped links) rather than stating a fact about the file. */
const TRANSIENT_ERRNO = new Set([
  'EAGAIN',
  'EBUSY',
  'ETIMEDOUT',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EINTR',
]);

export interface KetterErrorOptions {
  /** The portal the error concerns, by name (never its credentials). */
  portal?: string;
  /** The path the error concerns, relative to the portal root. */
  path?: string;
  /** Whether retrying the same operation may succeed. Defaults from the code and cause. */
  transient?: boolean;
  /** The job that failed, when the error ends a job. */
  jobId?: string;
  cause?: unknown;
}

/**
 * The one error type Ketter throws. `code` is stable; `message` is for humans and is
 * prefixed `[ketter]` so it reads well in mixed logs.
 */
/** Marks a KetterError whichever copy of this package made it (see `Symbol.hasInstance` below). */
const KETTER_ERROR = Symbol.for('@ketter/core.KetterError');

export class KetterError extends Error {
  /**
   * `error instanceof KetterError` holds for errors made by any copy of `@ketter/core` — a
   * bundled CLI beside a separately installed adapter, or two versions in one tree — so a
   * Ketter error is never mistaken for an unknown system error. Subclasses keep the usual
   * prototype check.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== KetterError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [KETTER_ERROR]?: unknown })[KETTER_ERROR] === true;
  }

  override readonly name = 'KetterError';
  readonly code: ErrorCode;
  readonly portal: string | undefined;
  readonly path: string | undefined;
  readonly transient: boolean;
  /** Set when this error ended a job: look the job up in the store for its trail. */
  jobId: string | undefined;

  constructor(code: ErrorCode, message: string, options: KetterErrorOptions = {}) {
    super(message.startsWith('[ketter]') ? message : `[ketter] ${message}`, { cause: options.cause });
    this.code = code;
    this.portal = options.portal;
    this.path = options.path;
    this.jobId = options.jobId;
    this.transient = options.transient ?? (code === ErrorCode.CONNECTION_ERROR || isTransientErrno(options.cause));
    Object.defineProperty(this, KETTER_ERROR, { value: true });
  }

  /** A plain, credential-free description for events, `--json` output and logs. */
  toJSON(): { code: ErrorCode; message: string; portal?: string; path?: string } {
    return {
      code: this.code,
      message: this.message,
      ...(this.portal === undefined ? {} : { portal: this.portal }),
      ...(this.path === undefined ? {} : { path: this.path }),
    };
  }
}

export function isKetterError(value: unknown, code?: ErrorCode): value is KetterError {
  return value instanceof KetterError && (code === undefined || value.code === code);
}

function errnoOf(cause: unknown): string | undefined {
  if (cause && typeof cause === 'object' && 'code' in cause && typeof cause.code === 'string') return cause.code;
  return undefined;
}

function isTransientErrno(cause: unknown): boolean {
  const code = errnoOf(cause);
  return code !== undefined && TRANSIENT_ERRNO.has(code);
}

/** Whether an error is worth retrying (with backoff) on the same file. */
export function isTransient(error: unknown): boolean {
  if (error instanceof KetterError) return error.transient && TRANSIENT_CODES.has(error.code);
  return isTransientErrno(error);
}

/**
 * Map a platform error (errno-style `code`) to a KetterError. Adapters call this so the
 * engine and users only ever see stable codes.
 */
export function fromSystemError(
  error: unknown,
  context: { portal?: string; path?: string; operation: string },
): KetterError {
  if (error instanceof KetterError) return error;
  const errno = errnoOf(error);
  const where = context.path === undefined ? '' : ` '${context.path}'`;
  const portal = context.portal === undefined ? '' : `[${context.portal}] `;
  const opts: KetterErrorOptions = { portal: context.portal, path: context.path, cause: error };
  switch (errno) {
    case 'ENOENT':
      return new KetterError(ErrorCode.SOURCE_NOT_FOUND, `${portal}${context.operation}: no such file or directory${where}`, opts);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new KetterError(ErrorCode.PERMISSION_DENIED, `${portal}${context.operation}: permission denied${where}`, opts);
    case 'ENOSPC':
    case 'EDQUOT':
      return new KetterError(ErrorCode.INSUFFICIENT_SPACE, `${portal}${context.operation}: no space left on device${where}`, opts);
    case 'EEXIST':
    case 'ENOTEMPTY':
      return new KetterError(ErrorCode.DESTINATION_EXISTS, `${portal}${context.operation}: already exists${where}`, opts);
    case 'ELOOP':
      return new KetterError(ErrorCode.SYMLINK_NOT_ALLOWED, `${portal}${context.operation}: symbolic link loop${where}`, opts);
    default: {
      const transient = isTransientErrno(error);
      const reason = error instanceof Error ? error.message : String(error);
      return new KetterError(
        transient && /CONN|PIPE|HOST|NET/.test(errno ?? '') ? ErrorCode.CONNECTION_ERROR : ErrorCode.IO_ERROR,
        `${portal}${context.operation} failed${where}: ${reason}`,
        { ...opts, transient },
      );
    }
  }
}

/** A CANCELLED error carrying the abort reason, thrown wherever an AbortSignal fires. */
export function cancelledError(signal?: AbortSignal): KetterError {
  const reason = signal?.reason instanceof Error ? signal.reason.message : signal?.reason ? String(signal.reason) : undefined;
  return new KetterError(ErrorCode.CANCELLED, reason ? `cancelled: ${reason}` : 'cancelled', { cause: signal?.reason });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelledError(signal);
}
