import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { HASH_ALGORITHMS } from '@ketter/core';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from './exit.js';

/** Portal names as the core accepts them; also what `portal:path` locations must start with. */
export const PORTAL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const FsPortalSchema = z.strictObject({
  type: z.literal('fs'),
  root: z.string().min(1),
});

// SFTP settings belong to the adapter, which validates them itself; the CLI checks only
// what it needs to route the portal and passes the rest through untouched.
const SftpPortalSchema = z.looseObject({
  type: z.literal('sftp'),
  host: z.string().min(1),
});

const PortalSchema = z.discriminatedUnion('type', [FsPortalSchema, SftpPortalSchema]);

const StoreSchema = z.union([
  z.string().min(1),
  z.strictObject({
    /** A `postgres://` URL without a password. */
    url: z.string().min(1),
    /** Environment variable holding the database password. */
    passwordEnv: z.string().min(1).optional(),
  }),
]);

export const ConfigSchema = z.strictObject({
  store: StoreSchema.optional(),
  operator: z.string().min(1).optional(),
  hash: z.enum(HASH_ALGORITHMS).optional(),
  concurrency: z.number().int().positive().optional(),
  thresholds: z
    .strictObject({
      files: z.number().int().nonnegative().optional(),
      avgSizeBytes: z.number().int().positive().optional(),
    })
    .optional(),
  portals: z
    .record(z.string().regex(PORTAL_NAME, 'portal names use letters, digits, ".", "_" and "-"'), PortalSchema)
    .optional(),
  // Read by `ketter watch`, which owns its own validation.
  watch: z.unknown().optional(),
});

export type Config = z.infer<typeof ConfigSchema>;
export type PortalConfig = z.infer<typeof PortalSchema>;

/** A validated config and where it came from (relative paths in it are relative to its folder). */
export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file, or null when none was used. */
  file: string | null;
  /** Folder relative paths in the config resolve against. */
  baseDir: string;
}

/**
 * Load `--config FILE`, or `./ketter.yaml` when present. A missing explicit file, YAML
 * syntax errors and schema violations are usage errors naming the file and the key.
 */
export function loadConfig(explicit: string | undefined, cwd: string): LoadedConfig {
  const file = explicit === undefined ? resolve(cwd, 'ketter.yaml') : resolve(cwd, explicit);
  if (!existsSync(file)) {
    if (explicit !== undefined) throw new UsageError(`config file not found: ${file}`);
    return { config: {}, file: null, baseDir: cwd };
  }
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new UsageError(`config ${file}: invalid YAML: ${reason}`);
  }
  const parsed = ConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`config ${file}: ${issue ? describeIssue(issue) : 'invalid'}`);
  }
  if (parsed.data.portals?.local !== undefined) {
    throw new UsageError(`config ${file}: 'portals.local': the name 'local' is reserved for local paths`);
  }
  return { config: parsed.data, file, baseDir: dirname(file) };
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (at ? `${at}.${k}` : k));
    return `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${k}'`).join(', ')}`;
  }
  return `'${at || '(root)'}': ${issue.message}`;
}
