import type { Readable, Writable } from 'node:stream';
import type { HashAlgorithm } from './hash/algorithms.js';

/** Files up to this size go through an adapter's `readFile`/`writeFile` fast path when it has one. */
export const SMALL_FILE_BYTES = 1024 * 1024;

/** What a path names on a backend. `other` covers sockets, devices and FIFOs, which Ketter never copies. */
export type EntryKind = 'file' | 'directory' | 'symlink' | 'other';

/** Metadata of one path, without following a symlink at that path (lstat semantics). */
export interface FileStat {
  readonly kind: EntryKind;
  readonly size: number;
  /** Modification time in milliseconds since the epoch, at the backend's precision. */
  readonly mtimeMs: number;
  /** Permission bits (`0o777` range). */
  readonly mode: number;
}

/** One entry of a recursive listing; `path` is relative to the listed directory, `/`-separated. */
export interface ListEntry extends FileStat {
  readonly path: string;
}

/**
 * What an adapter can do, declared as data. Core reads these to choose how to verify,
 * make data durable and check free space; the adapter conformance suite checks every
 * declaration against behaviour. A missing capability is filled in by core where it
 * honestly can (hash by re-reading) and reported where it cannot (free space unknown).
 */
export interface AdapterCapabilities {
  /** `statfs()` reports free space, so preflight can refuse a job that cannot fit. */
  readonly statfs: boolean;
  /** `sync()` makes written files and directory entries durable before commit. */
  readonly fsync: boolean;
  /** Algorithms `hash()` computes on the storage side, without moving the bytes. */
  readonly serverSideHash: readonly HashAlgorithm[];
  /** `extract()` unpacks a zip archive on the storage side. */
  readonly serverSideExtract: boolean;
  /** Precision of `mtimeMs` as stored and reported (1 for most local filesystems, 1000 for SFTP). */
  readonly mtimePrecisionMs: number;
  /** `setTimes()` preserves modification times. */
  readonly setTimes: boolean;
  /** `setMode()` preserves permission bits. */
  readonly setMode: boolean;
  /** `stat`/`list` report symlinks as `symlink` and `readlink()` reads them. */
  readonly symlinks: boolean;
}

export interface ReadOptions {
  signal?: AbortSignal;
  /** First byte to read (default 0). Ranged reads let core read a zip's central directory. */
  start?: number;
  /** Last byte to read, inclusive (default: end of file). */
  end?: number;
  /** Preferred chunk size; large buffers matter for throughput on big files. */
  highWaterMark?: number;
}

export interface WriteOptions {
  signal?: AbortSignal;
  /** Permission bits for the new file. */
  mode?: number;
  highWaterMark?: number;
}

export interface ListOptions {
  signal?: AbortSignal;
}

export interface StatfsResult {
  /** Bytes available to the adapter's user. */
  readonly freeBytes: number;
}

/**
 * A storage backend seen through a root. Every `path` argument is relative to the root,
 * `/`-separated, with `''` naming the root itself, and has already been confined to the
 * root by core (see {@link Portal}); adapters join it to their root and never interpret
 * `..` themselves.
 *
 * Errors thrown are {@link KetterError}s with stable codes (adapters map platform errors
 * with `fromSystemError`). An operation an adapter does not support is absent, and its
 * capability flag is false: never a silent no-op.
 */
export interface Adapter {
  /** Backend family, e.g. `fs` or `sftp`. */
  readonly kind: string;
  /**
   * Stable, credential-free identity of the storage this adapter sees, used as the
   * namespace of locks (e.g. `fs:/mnt/nexis`, `sftp://host:22`). Two adapters over the
   * same storage must report the same `id` so their jobs exclude each other.
   */
  readonly id: string;
  /** Absolute `/`-separated path of the root on the backend, after `connect()`. */
  readonly root: string;
  readonly capabilities: AdapterCapabilities;

  connect(): Promise<void>;
  close(): Promise<void>;

  /** lstat: `null` when nothing exists at `path`. */
  stat(path: string): Promise<FileStat | null>;
  /** The raw target of the symlink at `path`. */
  readlink(path: string): Promise<string>;
  /**
   * Recursive listing below the directory `path`: files, directories, symlinks (never
   * followed) and dotfiles, in any order, streamed so memory stays bounded.
   */
  list(path: string, options?: ListOptions): AsyncIterable<ListEntry>;

  openRead(path: string, options?: ReadOptions): Readable;
  /** Create a new file exclusively: fails with DESTINATION_EXISTS if anything is at `path`. */
  openWrite(path: string, options?: WriteOptions): Writable;
  /**
   * Read a whole small file in one call. Optional fast path: for small files, per-file
   * stream setup costs more than the bytes, so core uses this (when present) for files up
   * to {@link SMALL_FILE_BYTES} and streams otherwise. `sizeHint` is the size the caller
   * expects (from a scan or a listing), so a remote adapter can size its first read to the
   * file instead of to its largest request; it is never a limit: a file of another size is
   * still read whole.
   */
  readFile?(path: string, options?: { signal?: AbortSignal; sizeHint?: number }): Promise<Uint8Array>;
  /** Create a new small file exclusively with these bytes (DESTINATION_EXISTS if anything is at `path`). */
  writeFile?(path: string, data: Uint8Array, options?: { mode?: number; signal?: AbortSignal }): Promise<void>;
  /** Create a directory and any missing parents; succeeds if it already exists. */
  mkdir(path: string): Promise<void>;
  /**
   * Atomic, no-clobber rename within this adapter: fails with DESTINATION_EXISTS if `to`
   * exists, and never leaves a half-renamed tree.
   */
  rename(from: string, to: string): Promise<void>;
  /** Remove one file (or symlink). */
  unlink(path: string): Promise<void>;
  /** Remove one empty directory. */
  rmdir(path: string): Promise<void>;
  /** Remove a file or a directory tree; succeeds if nothing is there. */
  removeTree(path: string): Promise<void>;

  setTimes?(path: string, mtimeMs: number): Promise<void>;
  setMode?(path: string, mode: number): Promise<void>;
  /** Make the given files and directories durable (contents and directory entries). */
  sync?(paths: readonly string[]): Promise<void>;
  statfs?(path: string): Promise<StatfsResult>;
  /** Hash files on the storage side; returns lowercase hex digests in the order asked. */
  hash?(paths: readonly string[], algorithm: HashAlgorithm, options?: { signal?: AbortSignal }): Promise<string[]>;
  /** Unpack the zip archive at `archive` into the existing directory `into`, on the storage side. */
  extract?(archive: string, into: string, options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * The absolute path of `path` on this machine's filesystem, for adapters whose storage is
   * a local disk or a mounted volume. Optional. When both ends of a DIRECT job offer it,
   * core copies and verifies small files on its own worker threads with synchronous
   * `node:fs` calls instead of through this adapter's methods — the same proof (hash of
   * the source as read, re-read and hash of the destination), at a fraction of the
   * per-file cost. While those workers are running, core also lists the committed tree of
   * a destination that offers it on them, for the re-check after commit, and re-reads a
   * larger file to hash it (a verification, or a skip-identical check) through two reused
   * buffers instead of a stream of this adapter's. Paths are already
   * confined by core; the adapter only joins `path` to its root. Omit it for anything not
   * reachable as a local path (network protocols), and in wrappers that must see every
   * read, write and listing.
   */
  localPath?(path: string): string;
}
