import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError } from './exit.js';

/**
 * Load an optional Ketter package (`@ketter/adapter-sftp`, `@ketter/store-postgres`) only
 * when a command needs it, so the CLI works without their heavy clients installed.
 * Looks beside the CLI first, then in `node_modules` folders above `cwd` (a project-local
 * install). A package that cannot be found is a usage error that says what to install.
 */
export async function importOptional<T>(specifier: string, purpose: string, cwd: string): Promise<T> {
  try {
    // A non-literal specifier keeps the bundler from trying to inline the package.
    return (await import(/* @vite-ignore */ specifier)) as T;
  } catch (error) {
    if (!isNotFound(error, specifier)) throw loadFailed(specifier, purpose, error);
  }
  const entry = findInNodeModules(specifier, cwd);
  if (entry !== null) {
    try {
      return (await import(pathToFileURL(entry).href)) as T;
    } catch (error) {
      throw loadFailed(specifier, purpose, error);
    }
  }
  throw new UsageError(`${purpose} needs the ${specifier} package, which is not installed (npm install ${specifier})`);
}

function isNotFound(error: unknown, specifier: string): boolean {
  if (!error || typeof error !== 'object') return false;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : '';
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(specifier);
}

function loadFailed(specifier: string, purpose: string, error: unknown): UsageError {
  const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return new UsageError(`${purpose} needs the ${specifier} package, which failed to load: ${reason}`);
}

function findInNodeModules(specifier: string, from: string): string | null {
  let dir = from;
  for (;;) {
    const pkgDir = join(dir, 'node_modules', ...specifier.split('/'));
    const manifest = join(pkgDir, 'package.json');
    if (existsSync(manifest)) {
      const entry = entryOf(JSON.parse(readFileSync(manifest, 'utf8')) as PackageJson);
      return entry === null ? null : join(pkgDir, entry);
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

interface PackageJson {
  exports?: unknown;
  module?: string;
  main?: string;
}

function entryOf(pkg: PackageJson): string | null {
  const root = typeof pkg.exports === 'object' && pkg.exports !== null ? (pkg.exports as Record<string, unknown>)['.'] : pkg.exports;
  if (typeof root === 'string') return root;
  if (root && typeof root === 'object') {
    const conditions = root as Record<string, unknown>;
    for (const key of ['import', 'node', 'default']) if (typeof conditions[key] === 'string') return conditions[key] as string;
  }
  return pkg.module ?? pkg.main ?? null;
}
