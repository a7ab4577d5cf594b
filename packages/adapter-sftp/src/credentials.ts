import { readFile } from 'node:fs/promises';
import { ErrorCode, KetterError } from '@ketter/core';
// ssh2 is CommonJS: its named exports are not visible to Node's ESM loader.
import ssh2, { type AnyAuthMethod } from 'ssh2';

const { utils } = ssh2;
import type { AuthMethod } from './options.js';

/** ssh2 auth attempts plus a secret-free description of each, for error messages. */
export interface ResolvedAuth {
  readonly methods: AnyAuthMethod[];
  readonly described: string[];
}

/** A human label for a method that names where the secret comes from, never the secret. */
export function describeAuth(method: AuthMethod): string {
  if ('privateKeyPath' in method) {
    return `key ${method.privateKeyPath}${method.passphraseEnv ? ` (passphrase from $${method.passphraseEnv})` : ''}`;
  }
  if ('passwordEnv' in method) return `password from $${method.passwordEnv}`;
  return method.agent === true ? 'agent at $SSH_AUTH_SOCK' : `agent at ${method.agent}`;
}

class Unusable extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function readEnv(name: string, what: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Unusable(ErrorCode.INVALID_REQUEST, `environment variable ${name} (${what}) is not set`);
  return value;
}

async function toSsh2(method: AuthMethod, username: string): Promise<AnyAuthMethod> {
  if ('passwordEnv' in method) return { type: 'password', username, password: readEnv(method.passwordEnv, 'password') };
  if ('agent' in method) {
    const socket = method.agent === true ? process.env.SSH_AUTH_SOCK : method.agent;
    if (!socket) throw new Unusable(ErrorCode.INVALID_REQUEST, 'agent authentication asked for but SSH_AUTH_SOCK is not set');
    return { type: 'agent', username, agent: socket };
  }
  let keyText: Buffer;
  try {
    keyText = await readFile(method.privateKeyPath);
  } catch (error) {
    throw new Unusable(ErrorCode.INVALID_REQUEST, `cannot read private key ${method.privateKeyPath}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const passphrase = method.passphraseEnv === undefined ? undefined : readEnv(method.passphraseEnv, 'key passphrase');
  const parsed = utils.parseKey(keyText, passphrase);
  // ssh2's parse errors say what is wrong with the key (encrypted, bad passphrase, format)
  // without echoing the passphrase; still, only a fixed summary goes into our message.
  if (parsed instanceof Error || Array.isArray(parsed)) {
    const encrypted = parsed instanceof Error && /encrypted|passphrase|decrypt/i.test(parsed.message);
    throw new Unusable(
      ErrorCode.AUTHENTICATION_FAILED,
      encrypted
        ? `private key ${method.privateKeyPath} is encrypted and ${passphrase === undefined ? 'no passphraseEnv is configured' : 'the passphrase does not decrypt it'}`
        : `private key ${method.privateKeyPath} is not a supported private key`,
    );
  }
  return { type: 'publickey', username, key: parsed };
}

/**
 * Turn configured methods into ssh2 attempts, reading key files and environment variables
 * now (at connect), so secrets live only as long as one connection attempt needs them.
 * With one method its problem is thrown; with several, unusable ones are skipped (as
 * OpenSSH skips identity files it cannot load) and only an all-unusable list throws.
 */
export async function resolveAuth(methods: readonly AuthMethod[], username: string, where: string): Promise<ResolvedAuth> {
  const resolved: AnyAuthMethod[] = [];
  const described: string[] = [];
  const problems: Unusable[] = [];
  for (const method of methods) {
    try {
      resolved.push(await toSsh2(method, username));
      described.push(describeAuth(method));
    } catch (error) {
      if (!(error instanceof Unusable)) throw error;
      if (methods.length === 1) throw new KetterError(error.code, `[sftp] ${where}: ${error.message}`);
      problems.push(error);
    }
  }
  if (resolved.length === 0) {
    const code = problems.every((p) => p.code === ErrorCode.INVALID_REQUEST) ? ErrorCode.INVALID_REQUEST : ErrorCode.AUTHENTICATION_FAILED;
    throw new KetterError(code, `[sftp] ${where}: no usable authentication method (${problems.map((p) => p.message).join('; ')})`);
  }
  return { methods: resolved, described };
}
