import type { Endpoint } from './events.js';

/** One file or directory of a source tree. `path` is relative to the source root. */
export interface ManifestEntry {
  readonly path: string;
  readonly kind: 'file' | 'directory';
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
}

/**
 * What `scan()` found at a source: the input of `plan()` and the list of work for the
 * engines. For a file source, `entries` holds that file alone with `path: ''`.
 */
export interface Manifest {
  readonly source: Endpoint;
  readonly rootKind: 'file' | 'directory';
  /** Basename of the source: the name it gets under the destination. */
  readonly name: string;
  /** Modification time and mode of the source root itself (kept on the destination root). */
  readonly root: { readonly mtimeMs: number; readonly mode: number };
  readonly entries: readonly ManifestEntry[];
  readonly nFiles: number;
  readonly totalBytes: number;
  /** Symlinks left out under the `skip` symlink policy, by path. */
  readonly skippedSymlinks: readonly string[];
}
