import { ErrorCode, KetterError, throwIfAborted } from './errors.js';
import { ManifestBuilder, ManifestEntries, type Manifest } from './manifest.js';
import { baseName, joinPath, normalizeRelative } from './paths.js';
import type { Portal } from './portal.js';

/** What to do with a symlink inside a source tree. Links are never followed. */
export type SymlinkPolicy = 'fail' | 'skip';

export interface ScanOptions {
  signal?: AbortSignal;
  /** `fail` (default): a link in the tree fails the job with `SYMLINK_NOT_ALLOWED`; `skip`: leave it out and record it. */
  symlinks?: SymlinkPolicy;
}

/**
 * Walk a source (file or directory) and describe it. Streaming underneath: the adapter's
 * listing is consumed entry by entry and only the compact manifest is kept. Symlinks are
 * never followed. The path must already be resolved with {@link Portal.resolve}.
 */
export async function scan(portal: Portal, path: string, options: ScanOptions = {}): Promise<Manifest> {
  const { signal } = options;
  const policy = options.symlinks ?? 'fail';
  throwIfAborted(signal);
  const root = await portal.adapter.stat(path);
  if (root === null) {
    throw new KetterError(ErrorCode.SOURCE_NOT_FOUND, `source not found: ${portal.describe(path)}`, { portal: portal.name, path });
  }
  if (path === '' && root.kind === 'directory') {
    throw new KetterError(ErrorCode.INVALID_REQUEST, `the source cannot be the root of portal '${portal.name}'; name a folder or file inside it`, {
      portal: portal.name,
      path,
    });
  }
  const source = { portal: portal.name, path };
  const name = baseName(path);
  if (root.kind === 'file') {
    const entries = ManifestEntries.from([{ path: '', kind: 'file', size: root.size, mtimeMs: root.mtimeMs, mode: root.mode }]);
    return { source, rootKind: 'file', name, root: { mtimeMs: root.mtimeMs, mode: root.mode }, entries, nFiles: 1, totalBytes: root.size, skippedSymlinks: [] };
  }
  if (root.kind !== 'directory') {
    throw new KetterError(ErrorCode.SYMLINK_NOT_ALLOWED, `source is not a regular file or directory: ${portal.describe(path)}`, {
      portal: portal.name,
      path,
    });
  }

  const entries = new ManifestBuilder();
  const skippedSymlinks: string[] = [];
  let nFiles = 0;
  let totalBytes = 0;
  for await (const item of portal.adapter.list(path, { signal })) {
    throwIfAborted(signal);
    // Re-validate what the adapter returns: a listing must never smuggle in `..`.
    const rel = normalizeRelative(item.path, portal.name);
    if (rel === '') continue;
    if (item.kind === 'file') {
      entries.add({ path: rel, kind: 'file', size: item.size, mtimeMs: item.mtimeMs, mode: item.mode });
      nFiles += 1;
      totalBytes += item.size;
    } else if (item.kind === 'directory') {
      entries.add({ path: rel, kind: 'directory', size: 0, mtimeMs: item.mtimeMs, mode: item.mode });
    } else if (policy === 'skip') {
      skippedSymlinks.push(rel);
    } else {
      const full = joinPath(path, rel);
      throw new KetterError(
        item.kind === 'symlink' ? ErrorCode.SYMLINK_NOT_ALLOWED : ErrorCode.INVALID_REQUEST,
        `${item.kind === 'symlink' ? 'symbolic link' : 'special file'} in source tree: ${portal.describe(full)} (links are never followed; use the skip symlink policy to leave them out)`,
        { portal: portal.name, path: full },
      );
    }
  }
  // Sorted by path: parents before children, and a stable order for reproducible archives and events.
  return { source, rootKind: 'directory', name, root: { mtimeMs: root.mtimeMs, mode: root.mode }, entries: entries.finish(), nFiles, totalBytes, skippedSymlinks };
}
