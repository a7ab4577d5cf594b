import { ErrorCode, KetterError } from '@ketter/core';

/** SQLSTATE classes and codes that mean the link to the server failed, not the request. */
const CONNECTION_SQLSTATE = /^(08|57P0[1-3]|53300)/;
const AUTH_SQLSTATE = new Set(['28000', '28P01']);
const RETRYABLE_SQLSTATE = new Set(['40001', '40P01']);
const CONNECTION_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
]);
/** pg reports some link failures with a message and no code. */
const CONNECTION_MESSAGE = /connection terminated|timeout exceeded when trying to connect|Connection terminated|client has encountered a connection error|server closed the connection/i;

/** Redacts credentials from connection strings and from any text that may echo them. */
export class Redactor {
  readonly #secrets: string[] = [];
  /** The connection target with its password removed, for messages. */
  readonly target: string;

  constructor(connectionString?: string) {
    this.target = 'PostgreSQL';
    if (!connectionString) return;
    const password = passwordOf(connectionString);
    if (password) {
      this.#secrets.push(password);
      const encoded = encodeURIComponent(password);
      if (encoded !== password) this.#secrets.push(encoded);
    }
    this.target = this.redact(connectionString);
  }

  /** Text with URL user-info passwords, `password=` settings and known secrets masked. */
  redact(text: string): string {
    let out = text
      .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*):[^@/?#\s]*@/gi, '$1:***@')
      .replace(/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi, '$1***');
    for (const secret of this.#secrets) {
      // Very short secrets would mask ordinary words; the patterns above cover where they appear.
      if (secret.length >= 4) out = out.split(secret).join('***');
    }
    return out;
  }
}

function passwordOf(connectionString: string): string | undefined {
  try {
    const url = new URL(connectionString);
    if (url.password) return decodeURIComponent(url.password);
  } catch {
    // key=value form
  }
  const kv = /\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/i.exec(connectionString);
  if (!kv?.[1]) return undefined;
  return kv[1].startsWith("'") ? kv[1].slice(1, -1).replace(/\\(.)/g, '$1') : kv[1];
}

function codeOf(error: unknown): string | undefined {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/**
 * Map anything pg throws to a KetterError with a redacted message: `CONNECTION_ERROR`
 * (transient) when the server could not be reached or dropped the link,
 * `AUTHENTICATION_FAILED` for refused credentials, `STORE_ERROR` otherwise.
 */
export function toStoreError(error: unknown, operation: string, redactor: Redactor): KetterError {
  if (error instanceof KetterError) return error;
  const code = codeOf(error);
  const raw = error instanceof Error ? error.message : String(error);
  const detail = redactor.redact(raw || code || 'unknown error');
  if (code && AUTH_SQLSTATE.has(code)) {
    return new KetterError(ErrorCode.AUTHENTICATION_FAILED, `[postgres] ${operation}: ${redactor.target} refused the credentials: ${detail}`, {
      cause: error,
      transient: false,
    });
  }
  if ((code && (CONNECTION_SQLSTATE.test(code) || CONNECTION_ERRNO.has(code))) || CONNECTION_MESSAGE.test(raw)) {
    return new KetterError(ErrorCode.CONNECTION_ERROR, `[postgres] ${operation}: cannot reach ${redactor.target}: ${detail}`, {
      cause: error,
      transient: true,
    });
  }
  return new KetterError(ErrorCode.STORE_ERROR, `[postgres] ${operation} failed: ${detail}${code ? ` (SQLSTATE ${code})` : ''}`, {
    cause: error,
    transient: code !== undefined && RETRYABLE_SQLSTATE.has(code),
  });
}
