import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ErrorCode, KetterError } from '@ketter/core';

/** OpenSSH's fingerprint of a public key blob: `SHA256:` + unpadded base64 of its SHA-256. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named at the start of an SSH public key blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, ...). */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const len = keyBlob.readUInt32BE(0);
  if (len > keyBlob.length - 4) return 'unknown';
  return keyBlob.subarray(4, 4 + len).toString('latin1');
}

/** Host key algorithms ssh2 can negotiate for a key type found in known_hosts. */
const ALGORITHMS_BY_KEY_TYPE: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** One usable line of a known_hosts file. */
export interface KnownHostEntry {
  readonly marker: 'revoked' | 'cert-authority' | null;
  readonly keyType: string;
  readonly key: Buffer;
  /** Where the entry came from, for messages (`file:line`). */
  readonly source: string;
  matches(hostName: string): boolean;
}

/** The name OpenSSH looks a host up by: `host` on port 22, `[host]:port` elsewhere. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** `*` and `?` glob match, as in OpenSSH host patterns (case-insensitive). */
function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .toLowerCase()
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(value);
}

/** Whether a hashed host field (`|1|salt|hash`) names `hostName`: HMAC-SHA1 keyed by the salt. */
function hashedMatch(field: string, hostName: string): boolean {
  const parts = field.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2] ?? '', 'base64');
  const expected = Buffer.from(parts[3] ?? '', 'base64');
  if (salt.length === 0 || expected.length !== 20) return false;
  const actual = createHmac('sha1', salt).update(hostName).digest();
  return timingSafeEqual(actual, expected);
}

/** Host patterns of one line: a comma list where `!pattern` vetoes a match. */
function patternListMatcher(field: string): (hostName: string) => boolean {
  if (field.startsWith('|')) return (hostName) => hashedMatch(field, hostName);
  const patterns = field.split(',').filter(Boolean);
  return (hostName) => {
    let matched = false;
    for (const pattern of patterns) {
      if (pattern.startsWith('!')) {
        if (globMatch(pattern.slice(1), hostName)) return false;
      } else if (globMatch(pattern, hostName)) matched = true;
    }
    return matched;
  };
}

/** Parse the text of a known_hosts file. Malformed lines are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string, fileName = 'known_hosts'): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else continue;
    }
    const [hosts, keyType, keyBase64] = fields;
    if (!hosts || !keyType || !keyBase64) continue;
    const key = Buffer.from(keyBase64, 'base64');
    // A line whose blob does not name its own type is corrupt: skip rather than trust it.
    if (keyTypeOf(key) !== keyType) continue;
    entries.push({ marker, keyType, key, source: `${fileName}:${i + 1}`, matches: patternListMatcher(hosts) });
  }
  return entries;
}

/** What a host verifier decided; `reason` is for the HOST_KEY_REJECTED message. */
export type HostKeyVerdict = { ok: true } | { ok: false; reason: string };

/** A host key policy for one host, built before connecting. */
export interface HostKeyPolicy {
  /** Host key algorithms to offer, so the server presents a key type we know (undefined: ssh2's defaults). */
  readonly algorithms: string[] | undefined;
  verify(keyBlob: Buffer): HostKeyVerdict;
}

/** Accept only keys whose SHA-256 fingerprint is listed. */
export function fingerprintPolicy(fingerprints: readonly string[], hostLabel: string): HostKeyPolicy {
  // base64 is case-sensitive: compare exactly, but tolerate a trailing '=' some tools print.
  const wanted = fingerprints.map((f) => f.replace(/=+$/, ''));
  return {
    algorithms: undefined,
    verify(keyBlob) {
      const seen = fingerprintOf(keyBlob);
      if (wanted.includes(seen)) return { ok: true };
      return {
        ok: false,
        reason: `host key of ${hostLabel} does not match the configured fingerprint: expected ${wanted.join(' or ')}, server presented ${keyTypeOf(keyBlob)} ${seen}`,
      };
    },
  };
}

/**
 * Accept the keys OpenSSH would accept for `host:port` from these known_hosts files:
 * plain, wildcard, negated, hashed (`|1|salt|hash`) and `[host]:port` entries; `@revoked`
 * keys are refused; `@cert-authority` lines are ignored (certificates are not supported).
 * Missing files count as empty, so an unknown host is refused rather than trusted.
 */
export function knownHostsPolicy(files: readonly string[], host: string, port: number, hostLabel: string): HostKeyPolicy {
  const name = knownHostsName(host, port);
  const all: KnownHostEntry[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new KetterError(ErrorCode.INVALID_REQUEST, `[sftp] cannot read known_hosts file '${file}': ${(error as Error).message}`, {
        cause: error,
      });
    }
    all.push(...parseKnownHosts(text, file));
  }
  const forHost = all.filter((e) => e.matches(name));
  const revoked = forHost.filter((e) => e.marker === 'revoked');
  const known = forHost.filter((e) => e.marker === null);
  // Offer only algorithms for key types we hold, in file order, so a host known by its
  // ECDSA key is not rejected for presenting its Ed25519 key first.
  const algorithms = [...new Set(known.flatMap((e) => ALGORITHMS_BY_KEY_TYPE[e.keyType] ?? []))];
  return {
    algorithms: algorithms.length > 0 ? algorithms : undefined,
    verify(keyBlob) {
      const seen = `${keyTypeOf(keyBlob)} ${fingerprintOf(keyBlob)}`;
      if (revoked.some((e) => e.key.equals(keyBlob))) {
        return { ok: false, reason: `host key of ${hostLabel} is marked @revoked in known_hosts: ${seen}` };
      }
      if (known.length === 0) {
        return {
          ok: false,
          reason: `host ${name} is not in known_hosts (${files.join(', ')}); server presented ${seen}. Verify it out of band and add it`,
        };
      }
      if (known.some((e) => e.key.equals(keyBlob))) return { ok: true };
      const expected = known.map((e) => `${e.keyType} ${fingerprintOf(e.key)} (${e.source})`).join(', ');
      return {
        ok: false,
        reason: `host key of ${hostLabel} has CHANGED: known_hosts expects ${expected}; server presented ${seen}`,
      };
    },
  };
}
