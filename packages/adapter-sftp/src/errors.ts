import { ErrorCode, KetterError } from '@ketter/core';
import { ChannelClosedError } from './sftp-calls.js';

/** SFTP v3 status codes (draft-ietf-secsh-filexfer-02), as ssh2 reports them in `error.code`. */
export const SftpStatus = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;

/** Where an error happened, for the message; `path` is relative to the adapter root. */
export interface ErrorContext {
  operation: string;
  path?: string;
  /** `sftp://host:port`, credential-free. */
  endpoint: string;
}

export function statusOf(error: unknown): number | undefined {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'number') return error.code;
  return undefined;
}

/** Whether an ssh2 error means the SSH link (not the file) is gone. */
export function isConnectionLoss(error: unknown): boolean {
  if (error instanceof ChannelClosedError) return true;
  if (!(error instanceof Error)) return false;
  const status = statusOf(error);
  if (status === SftpStatus.NO_CONNECTION || status === SftpStatus.CONNECTION_LOST) return true;
  const level = (error as { level?: unknown }).level;
  if (typeof level === 'string' && /socket|timeout|protocol|handshake/.test(level)) return true;
  const errno = (error as NodeJS.ErrnoException).code;
  if (typeof errno === 'string' && /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENETDOWN)$/.test(errno)) {
    return true;
  }
  return /No response from server|Not connected|Channel (?:is )?not open|No SFTP|connection (?:lost|closed)/i.test(error.message);
}

function where(context: ErrorContext): string {
  return context.path === undefined ? '' : ` '${context.path === '' ? '.' : context.path}'`;
}

/** A CONNECTION_ERROR: transient, so the engine retries the file after the adapter reconnects. */
export function connectionError(context: ErrorContext, cause?: unknown): KetterError {
  const reason = cause instanceof Error ? `: ${cause.message}` : '';
  return new KetterError(ErrorCode.CONNECTION_ERROR, `[sftp] ${context.operation}${where(context)}: connection to ${context.endpoint} lost${reason}`, {
    path: context.path,
    cause,
    transient: true,
  });
}

/**
 * Map an ssh2/SFTP error to a KetterError with a stable code. SFTP v3 has no "exists"
 * or "not empty" status (OpenSSH sends FAILURE for both), so callers that can tell those
 * apart with a stat do so before falling back here.
 */
export function mapSftpError(error: unknown, context: ErrorContext): KetterError {
  if (error instanceof KetterError) return error;
  if (isConnectionLoss(error)) return connectionError(context, error);
  const status = statusOf(error);
  const opts = { path: context.path, cause: error };
  const head = `[sftp] ${context.operation}${where(context)}`;
  switch (status) {
    case SftpStatus.NO_SUCH_FILE:
      return new KetterError(ErrorCode.SOURCE_NOT_FOUND, `${head}: no such file or directory`, opts);
    case SftpStatus.PERMISSION_DENIED:
      return new KetterError(ErrorCode.PERMISSION_DENIED, `${head}: permission denied`, opts);
    case SftpStatus.OP_UNSUPPORTED:
      return new KetterError(ErrorCode.NOT_SUPPORTED, `${head}: operation not supported by the server`, opts);
    default: {
      const reason = error instanceof Error ? error.message : String(error);
      return new KetterError(ErrorCode.IO_ERROR, `${head} failed: ${reason}`, { ...opts, transient: false });
    }
  }
}
