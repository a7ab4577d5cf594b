import { randomBytes } from 'node:crypto';
import { ErrorCode, KetterError, type HashAlgorithm } from '@ketter/core';
import type { ExecResult } from './connection.js';

/** Runs one command line on the server (through the login shell, as `ssh host cmd` does). */
export type Exec = (command: string, signal?: AbortSignal) => Promise<ExecResult>;

/** The coreutils-style tool for each algorithm: one `<hex>  <name>` line per file, in argument order. */
export const HASH_TOOLS: Readonly<Partial<Record<HashAlgorithm, string>>> = {
  sha256: 'sha256sum',
  md5: 'md5sum',
  xxh128: 'xxh128sum',
  blake3: 'b3sum',
};

const HEX_LENGTH: Readonly<Record<HashAlgorithm, number>> = { sha256: 64, md5: 32, xxh128: 32, blake3: 64 };

/** Tools looked for at connect. `b2sum` is BLAKE2b, not BLAKE3, so it is deliberately absent. */
const PROBED_TOOLS = [...Object.values(HASH_TOOLS), 'unzip', 'sync', 'openssl'] as string[];

/** Algorithms `openssl dgst` computes ~4× faster than coreutils where the CPU has SHA instructions. */
const OPENSSL_DIGESTS: ReadonlySet<HashAlgorithm> = new Set(['sha256', 'md5']);

/**
 * The whole command travels as one argument to the login shell (`$SHELL -c`), which Linux
 * caps at 128 KiB; batches stay well below.
 */
const MAX_COMMAND_BYTES = 64 * 1024;

/** POSIX single-quoting: safe for any byte string except NUL (which paths cannot contain). */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * A command line that runs `script` under `sh` whatever the login shell prints first:
 * the script prints a random marker, and output before it (a chatty `.bashrc`) is ignored.
 * `$0` is the marker; `$1…` are the arguments.
 */
function shCommand(script: string, args: readonly string[]): { command: string; marker: string } {
  const marker = `ketter-${randomBytes(8).toString('hex')}`;
  const command = ['sh', '-c', shellQuote(`printf '%s\\n' "$0"; ${script}`), marker, ...args.map(shellQuote)].join(' ');
  return { command, marker };
}

/** Lines printed after the marker (the marker line itself excluded), or null if it never appeared. */
function afterMarker(stdout: Buffer, marker: string): string[] | null {
  const text = stdout.toString('utf8');
  const at = text.indexOf(`${marker}\n`);
  if (at < 0) return null;
  const rest = text.slice(at + marker.length + 1);
  const lines = rest.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function firstLine(text: string): string {
  const line = text.trim().split('\n').find((l) => l.trim() !== '') ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** Which of the probed tools the server has; one command for all of them. */
export async function probeTools(exec: Exec): Promise<Set<string>> {
  const { command, marker } = shCommand('for t in "$@"; do command -v "$t" >/dev/null 2>&1 && printf \'%s\\n\' "$t"; done; exit 0', PROBED_TOOLS);
  const result = await exec(command);
  const lines = afterMarker(result.stdout, marker);
  if (result.code !== 0 || lines === null) {
    throw new KetterError(ErrorCode.IO_ERROR, `[sftp] probing server tools failed (exit ${result.code ?? result.signal}): ${firstLine(result.stderr)}`);
  }
  return new Set(lines.filter((l) => PROBED_TOOLS.includes(l)));
}

/** Split absolute paths into batches whose command line stays under the limit. */
function batches(paths: readonly string[]): string[][] {
  const out: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const path of paths) {
    const size = Buffer.byteLength(shellQuote(path)) + 1;
    if (current.length > 0 && bytes + size > MAX_COMMAND_BYTES) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(path);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function hashFailure(tool: string, result: ExecResult, relative: (absolute: string) => string): KetterError {
  const message = firstLine(result.stderr);
  const code = /No such file or directory/i.test(message)
    ? ErrorCode.SOURCE_NOT_FOUND
    : /Permission denied/i.test(message)
      ? ErrorCode.PERMISSION_DENIED
      : ErrorCode.IO_ERROR;
  // Name the file as the caller knows it, not by its server path.
  const cleaned = message.replace(/\/\S*/g, (abs) => relative(abs.replace(/:$/, '')) + (abs.endsWith(':') ? ':' : ''));
  return new KetterError(code, `[sftp] server-side ${tool} failed (exit ${result.code ?? result.signal}): ${cleaned}`, { transient: false });
}

/**
 * Hash files on the server with one command per batch (`sha256sum -- p1 p2 …`). Every
 * file must produce a digest: a missing or unreadable file fails the whole call, and so
 * does any output we cannot account for — never a silent skip or a local fallback.
 */
export async function remoteHash(
  exec: Exec,
  absolutePaths: readonly string[],
  algorithm: HashAlgorithm,
  relative: (absolute: string) => string,
  signal?: AbortSignal,
  tools: ReadonlySet<string> = new Set(),
): Promise<string[]> {
  const tool = HASH_TOOLS[algorithm];
  if (!tool) throw new KetterError(ErrorCode.NOT_SUPPORTED, `[sftp] no server-side tool for ${algorithm}`);
  const digests: string[] = [];
  for (const batch of batches(absolutePaths)) {
    if (tools.has('openssl') && OPENSSL_DIGESTS.has(algorithm)) {
      const fast = await opensslDigests(exec, batch, algorithm, signal);
      if (fast) {
        digests.push(...fast);
        continue;
      }
      // Unusual names (a newline, say) make openssl's output ambiguous: the coreutils tool,
      // which escapes them, hashes this batch instead — the same algorithm, never a weaker one.
    }
    const { command, marker } = shCommand(`exec ${tool} -- "$@"`, batch);
    const result = await exec(command, signal);
    if (result.code !== 0) throw hashFailure(tool, result, relative);
    const lines = afterMarker(result.stdout, marker);
    if (lines === null || lines.length !== batch.length) {
      throw new KetterError(
        ErrorCode.IO_ERROR,
        `[sftp] server-side ${tool} printed ${lines?.length ?? 'no'} lines for ${batch.length} files; refusing to guess which digest is whose`,
      );
    }
    for (const line of lines) {
      // coreutils prefixes a line with '\' when it had to escape the file name.
      const match = /^\\?([0-9a-f]+) /.exec(line);
      if (!match || (match[1] as string).length !== HEX_LENGTH[algorithm]) {
        throw new KetterError(ErrorCode.IO_ERROR, `[sftp] server-side ${tool} printed an unexpected line: ${line.slice(0, 200)}`);
      }
      digests.push(match[1] as string);
    }
  }
  return digests;
}

/** Digests by `openssl dgst -r`, or null when its output cannot be matched to the files unambiguously. */
async function opensslDigests(exec: Exec, batch: readonly string[], algorithm: HashAlgorithm, signal?: AbortSignal): Promise<string[] | null> {
  if (batch.some((p) => p.includes('\n') || p.includes('\r'))) return null;
  const { command, marker } = shCommand(`exec openssl dgst -${algorithm} -r "$@"`, batch);
  const result = await exec(command, signal);
  const lines = result.code === 0 ? afterMarker(result.stdout, marker) : null;
  if (lines === null || lines.length !== batch.length) return null;
  const out: string[] = [];
  for (const [i, line] of lines.entries()) {
    const match = /^([0-9a-f]+) \*(.*)$/.exec(line);
    if (!match || (match[1] as string).length !== HEX_LENGTH[algorithm] || match[2] !== batch[i]) return null;
    out.push(match[1] as string);
  }
  return out;
}

/**
 * Make everything under the given directories durable with one command: coreutils
 * `sync -f` runs syncfs(2) on the filesystem of each. One round trip instead of three per
 * file (open, fsync@openssh.com, close); a failure is reported, never skipped.
 */
export async function remoteSync(exec: Exec, absoluteDirs: readonly string[], signal?: AbortSignal): Promise<void> {
  for (const batch of batches(absoluteDirs)) {
    const { command, marker } = shCommand('exec sync -f -- "$@"', batch);
    const result = await exec(command, signal);
    if (result.code !== 0 || afterMarker(result.stdout, marker) === null) {
      throw new KetterError(ErrorCode.IO_ERROR, `[sftp] server-side sync failed (exit ${result.code ?? result.signal}): ${firstLine(result.stderr)}`);
    }
  }
}

/** Whether a zip entry name could land outside the extraction directory. */
function unsafeName(name: string): boolean {
  if (name === '' || name.startsWith('/') || name.includes('\\') || /^[A-Za-z]:/.test(name)) return true;
  return name.split('/').some((segment) => segment === '..');
}

/**
 * Remote commands start in the server's default locale, often plain C, where unzip
 * mangles UTF-8 entry names (`#U00e9`); C.UTF-8 makes it write them as stored.
 */
const UTF8 = 'LC_ALL=C.UTF-8; export LC_ALL;';

/** One `unzip -Zs` entry line: permissions, version, os, size, flags, method, date, time, name. */
const ZIPINFO_LINE = /^(\S{10})\s+\S+\s+\S+\s+\d+\s+\S+\s+\S+\s+\S+\s+\S+ (.*)$/;

/**
 * Unpack a zip on the server with `unzip`, after listing it with `unzip -Zs` and refusing
 * any entry that could escape `into` (absolute, `..`, backslashes) or that is a symbolic
 * link (a later entry could write through it). `-n` never overwrites an existing file.
 */
export async function remoteExtract(exec: Exec, archive: string, into: string, archiveLabel: string, signal?: AbortSignal): Promise<void> {
  const listing = shCommand(`${UTF8} exec unzip -Zs "$1"`, [archive]);
  const listed = await exec(listing.command, signal);
  const lines = afterMarker(listed.stdout, listing.marker);
  if (listed.code !== 0 || lines === null) {
    const code = /cannot find or open/i.test(listed.stderr + listed.stdout.toString()) ? ErrorCode.SOURCE_NOT_FOUND : ErrorCode.IO_ERROR;
    throw new KetterError(code, `[sftp] server-side unzip could not list '${archiveLabel}' (exit ${listed.code ?? listed.signal}): ${firstLine(listed.stderr)}`);
  }
  const declared = Number(/number of entries: (\d+)/.exec(lines.join('\n'))?.[1] ?? Number.NaN);
  const entries = lines.flatMap((line) => {
    const m = ZIPINFO_LINE.exec(line);
    return m ? [{ mode: m[1] as string, name: m[2] as string }] : [];
  });
  if (!Number.isFinite(declared) || entries.length !== declared) {
    throw new KetterError(ErrorCode.IO_ERROR, `[sftp] could not read the listing of '${archiveLabel}' from server-side unzip`);
  }
  for (const entry of entries) {
    if (unsafeName(entry.name) || entry.mode.startsWith('l')) {
      throw new KetterError(ErrorCode.UNSAFE_ARCHIVE_ENTRY, `[sftp] archive '${archiveLabel}' has an unsafe entry '${entry.name}'`, {
        transient: false,
      });
    }
  }
  const extract = shCommand(`${UTF8} exec unzip -qq -n "$1" -d "$2"`, [archive, into]);
  const result = await exec(extract.command, signal);
  if (result.code !== 0) {
    throw new KetterError(
      ErrorCode.IO_ERROR,
      `[sftp] server-side unzip of '${archiveLabel}' failed (exit ${result.code ?? result.signal}): ${firstLine(result.stderr || result.stdout.toString())}`,
      { transient: false },
    );
  }
}
