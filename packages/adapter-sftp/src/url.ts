import { existsSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, KetterError } from '@ketter/core';
import type { AuthMethod, SftpAdapterOptions } from './options.js';

/** Overrides for {@link SftpAdapter.fromUrl}; anything left out is chosen as OpenSSH's client would. */
export interface FromUrlOptions extends Partial<Omit<SftpAdapterOptions, 'host' | 'port' | 'username' | 'root'>> {
  /** Home directory whose `.ssh/` holds known_hosts and identity files (default: the OS user's). */
  home?: string;
  /** Username when the URL has none (default: the OS user, as `ssh` does). */
  username?: string;
}

/** Identity files `ssh` tries by default, in its order (DSA and security-key types left out). */
const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

function invalid(message: string): KetterError {
  return new KetterError(ErrorCode.INVALID_REQUEST, `[sftp] ${message}`);
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid(`malformed percent-encoding in the URL ${what}`);
  }
}

/** Parse `sftp://[user@]host[:port][/path]` into adapter options (root `/`) and a root-relative path. */
export function parseSftpUrl(input: string, overrides: FromUrlOptions): { options: SftpAdapterOptions; path: string } {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    // The input may carry a password; never echo it.
    throw invalid('not a valid sftp:// URL');
  }
  if (url.protocol !== 'sftp:') throw invalid(`expected an sftp:// URL, got ${url.protocol}//`);
  if (url.password !== '') {
    throw invalid('a password in the URL is not allowed: pass credentials by reference (auth.passwordEnv, a key file or the agent)');
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw invalid('the URL has no host');
  if (url.search !== '' || url.hash !== '') throw invalid('query strings and fragments are not part of an sftp:// URL');
  const port = url.port === '' ? 22 : Number(url.port);
  const username = url.username !== '' ? decode(url.username, 'user name') : (overrides.username ?? userInfo().username);
  const path = decode(url.pathname, 'path').replace(/^\/+/, '').replace(/\/+$/, '');

  const { home: homeOverride, username: _username, ...rest } = overrides;
  const home = homeOverride ?? homedir();
  const sshDir = join(home, '.ssh');
  const hostKey = rest.hostKey ?? { knownHosts: [join(sshDir, 'known_hosts'), '/etc/ssh/ssh_known_hosts'] };
  let auth = rest.auth;
  if (auth === undefined) {
    const methods: AuthMethod[] = [];
    if (process.env.SSH_AUTH_SOCK) methods.push({ agent: true });
    for (const name of DEFAULT_IDENTITIES) {
      const file = join(sshDir, name);
      if (existsSync(file)) methods.push({ privateKeyPath: file });
    }
    if (methods.length === 0) {
      throw invalid(`no way to authenticate to ${host}: SSH_AUTH_SOCK is not set and ${sshDir} has no ${DEFAULT_IDENTITIES.join('/')}; pass options.auth`);
    }
    auth = methods;
  }
  return { options: { ...rest, host, port, username, root: '/', hostKey, auth }, path };
}
