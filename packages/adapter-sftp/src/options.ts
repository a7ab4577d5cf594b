import { ErrorCode, KetterError } from '@ketter/core';
import { z } from 'zod';

/** Environment variable names, not values: credentials are always passed by reference. */
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

const absolutePath = z.string().min(1).refine((p) => p.startsWith('/'), 'an absolute path');

/** `SHA256:` followed by unpadded base64, as `ssh-keygen -l` prints it. */
const fingerprint = z
  .string()
  .regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/, "an OpenSSH SHA-256 fingerprint ('SHA256:' + 43 base64 characters)");

const HostKeySchema = z.union([
  z.strictObject({ fingerprint: z.union([fingerprint, z.array(fingerprint).min(1)]) }),
  z.strictObject({ knownHosts: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]) }),
]);

const KeyAuthSchema = z.strictObject({
  privateKeyPath: z.string().min(1),
  passphraseEnv: envName.optional(),
});
const PasswordAuthSchema = z.strictObject({ passwordEnv: envName });
const AgentAuthSchema = z.strictObject({ agent: z.union([z.literal(true), z.string().min(1)]) });
const AuthMethodSchema = z.union([KeyAuthSchema, PasswordAuthSchema, AgentAuthSchema]);

const RetrySchema = z.strictObject({
  attempts: z.number().int().min(1).max(100).default(3),
  baseDelayMs: z.number().int().min(0).default(200),
  maxDelayMs: z.number().int().min(0).default(5000),
});

/** The options schema; parse results are what {@link SftpAdapter} runs on. */
export const SftpAdapterOptionsSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(22),
  username: z.string().min(1),
  root: absolutePath,
  hostKey: HostKeySchema,
  auth: z.union([AuthMethodSchema, z.array(AuthMethodSchema).min(1)]),
  allowExec: z.boolean().default(false),
  channels: z.number().int().min(1).max(64).default(4),
  readyTimeoutMs: z.number().int().min(1).default(20_000),
  keepaliveIntervalMs: z.number().int().min(0).default(10_000),
  retry: RetrySchema.default({ attempts: 3, baseDelayMs: 200, maxDelayMs: 5000 }),
});

/** How the server's host key is checked; there is deliberately no "accept anything" form. */
export type HostKeyOptions =
  /** Accept only keys with these SHA-256 fingerprints (`SHA256:…`, as `ssh-keygen -lf` prints). */
  | { fingerprint: string | string[] }
  /** Accept the keys an OpenSSH `known_hosts` file lists for this host (hashed entries and `[host]:port` included). */
  | { knownHosts: string | string[] };

/**
 * One way to authenticate. Secrets are referenced, never given inline: a key file path,
 * or the name of an environment variable that holds the passphrase or password.
 */
export type AuthMethod =
  | { privateKeyPath: string; passphraseEnv?: string }
  | { passwordEnv: string }
  /** `true`: the agent at `$SSH_AUTH_SOCK`; a string: that agent socket path. */
  | { agent: true | string };

/** Options of {@link SftpAdapter}. */
export interface SftpAdapterOptions {
  host: string;
  /** Default 22. */
  port?: number;
  username: string;
  /** Absolute path on the server that every adapter path is relative to; resolved with realpath at connect. */
  root: string;
  hostKey: HostKeyOptions;
  /** One method, or several tried in order (as OpenSSH tries agent keys, then identity files). */
  auth: AuthMethod | AuthMethod[];
  /** Allow running commands on the server (server-side hashing and extraction). Default false. */
  allowExec?: boolean;
  /** SFTP sessions opened on the one SSH connection, for files in flight at once. Default 4. */
  channels?: number;
  /** How long the SSH handshake and authentication may take. Default 20 s. */
  readyTimeoutMs?: number;
  /** SSH keepalive interval, so a dead link is noticed; 0 turns it off. Default 10 s. */
  keepaliveIntervalMs?: number;
  /** Reconnection after a dropped connection: attempts and exponential backoff with jitter. */
  retry?: { attempts?: number; baseDelayMs?: number; maxDelayMs?: number };
}

export type ResolvedSftpOptions = z.output<typeof SftpAdapterOptionsSchema>;

/** Validate options; the message names the offending field but never echoes a value. */
export function parseOptions(options: SftpAdapterOptions): ResolvedSftpOptions {
  const result = SftpAdapterOptionsSchema.safeParse(options);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => `${issue.path.join('.') || '(options)'}: ${issue.message}`).join('; ');
  throw new KetterError(ErrorCode.INVALID_REQUEST, `[sftp] invalid adapter options: ${issues}`);
}
