import * as fs from 'node:fs';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { dirname, resolve as resolvePath } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import {
  ErrorCode,
  KetterError,
  type Adapter,
  type AdapterCapabilities,
  type FileStat,
  type ListEntry,
  type ListOptions,
  type ReadOptions,
  type StatfsResult,
  type WriteOptions,
} from '@ketter/core';
import { errnoOf, fsError } from './errors.js';
import { listTree } from './list.js';
import { renameNoClobber } from './rename.js';
import { toFileStat } from './stat.js';
import { mapStreamErrors } from './streams.js';
import { syncAll } from './sync.js';

/** Options of {@link FsAdapter}. */
export interface FsAdapterOptions {
  /**
   * The directory this adapter sees as its root: a local folder or a mounted volume
   * (`/mnt/nexis/ingest`). It must exist; `connect()` resolves it to its real path.
   */
  root: string;
}

// The hot per-file calls use the callback API: fs.promises wraps every call in a FileHandle
// and promise machinery that, for thousands of small files, costs more than the I/O.
const lstat = promisify(fs.lstat);
const readFile = (path: string, signal?: AbortSignal): Promise<Buffer> =>
  new Promise((resolve, reject) => fs.readFile(path, signal ? { signal } : {}, (error, data) => (error ? reject(error) : resolve(data))));
const writeFile = (path: string, data: Uint8Array, options: fs.WriteFileOptions & { signal?: AbortSignal }): Promise<void> =>
  new Promise((resolve, reject) => fs.writeFile(path, data, options, (error) => (error ? reject(error) : resolve())));
const utimes = promisify(fs.utimes);
const chmod = promisify(fs.chmod);

/** Default read chunk: large buffers are what make big files fast. */
const DEFAULT_READ_CHUNK = 1024 * 1024;

const CAPABILITIES: AdapterCapabilities = Object.freeze({
  statfs: true,
  fsync: true,
  serverSideHash: Object.freeze([]) as readonly [],
  serverSideExtract: false,
  mtimePrecisionMs: 1,
  setTimes: true,
  setMode: true,
  symlinks: true,
});

/**
 * Adapter for local disks and mounted volumes (Avid NEXIS, StorNext, SMB/NFS mounts),
 * through `node:fs`. Paths it receives are already confined by the {@link Portal}; it joins
 * them to the root and maps every platform error to a {@link KetterError}.
 *
 * @example
 * ```ts
 * const adapter = new FsAdapter({ root: '/mnt/nexis/ingest' });
 * await adapter.connect();
 * const portal = new Portal('ingest', adapter);
 * ```
 */
export class FsAdapter implements Adapter {
  readonly kind = 'fs';
  /** One namespace for every local path: locks are keyed `fs:<absolute path>`. */
  readonly id = 'fs';
  readonly capabilities: AdapterCapabilities = CAPABILITIES;
  #root: string;

  constructor(options: FsAdapterOptions) {
    if (typeof options?.root !== 'string' || options.root === '') {
      throw new KetterError(ErrorCode.INVALID_REQUEST, '[fs] the adapter needs a root directory');
    }
    this.#root = resolvePath(options.root);
  }

  /** The absolute root; its real path (symlinks resolved) once `connect()` has run. */
  get root(): string {
    return this.#root;
  }

  /** Resolve the root to its real path and check it is a directory. */
  async connect(): Promise<void> {
    let real: string;
    try {
      real = await fsp.realpath(this.#root);
    } catch (error) {
      throw new KetterError(ErrorCode.INVALID_REQUEST, `[fs] root '${this.#root}' does not exist or cannot be reached`, { cause: error });
    }
    const stats = await fsp.stat(real).catch((error: unknown) => {
      throw new KetterError(ErrorCode.INVALID_REQUEST, `[fs] root '${this.#root}' cannot be read`, { cause: error });
    });
    if (!stats.isDirectory()) {
      throw new KetterError(ErrorCode.INVALID_REQUEST, `[fs] root '${this.#root}' is not a directory`);
    }
    this.#root = real;
  }

  async close(): Promise<void> {}

  async stat(path: string): Promise<FileStat | null> {
    try {
      return toFileStat(await lstat(this.#abs(path)));
    } catch (error) {
      // ENOTDIR: a parent is a file, so nothing can exist at `path`.
      const code = errnoOf(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw fsError(error, 'stat', path);
    }
  }

  async readlink(path: string): Promise<string> {
    try {
      return await fsp.readlink(this.#abs(path));
    } catch (error) {
      throw fsError(error, 'readlink', path);
    }
  }

  async *list(path: string, options: ListOptions = {}): AsyncIterable<ListEntry> {
    const abs = this.#abs(path);
    let stats;
    try {
      stats = await fsp.lstat(abs);
    } catch (error) {
      throw fsError(error, 'list', path, options.signal);
    }
    if (!stats.isDirectory()) {
      throw new KetterError(ErrorCode.INVALID_REQUEST, `[fs] list: not a directory '${path}'`, { path });
    }
    yield* listTree(abs, path, { signal: options.signal });
  }

  openRead(path: string, options: ReadOptions = {}): Readable {
    const { signal, start, end } = options;
    // An inclusive end just before the start is an empty range, which node would refuse.
    if (start !== undefined && end !== undefined && end < start) {
      return mapStreamErrors(Readable.from([]), (error) => fsError(error, 'read', path, signal), signal);
    }
    const stream = createReadStream(this.#abs(path), {
      highWaterMark: options.highWaterMark ?? DEFAULT_READ_CHUNK,
      ...(options.start === undefined ? {} : { start: options.start }),
      ...(options.end === undefined ? {} : { end: options.end }),
    });
    return mapStreamErrors(stream, (error) => fsError(error, 'read', path, signal), signal);
  }

  openWrite(path: string, options: WriteOptions = {}): Writable {
    const { signal } = options;
    const stream = createWriteStream(this.#abs(path), {
      flags: 'wx',
      ...(options.mode === undefined ? {} : { mode: options.mode }),
      ...(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark }),
    });
    return mapStreamErrors(stream, (error) => fsError(error, 'write', path, signal), signal);
  }

  // `sizeHint` is not needed here: the kernel reports the size and the read is sized to it.
  async readFile(path: string, options: { signal?: AbortSignal; sizeHint?: number } = {}): Promise<Uint8Array> {
    try {
      return await readFile(this.#abs(path), options.signal);
    } catch (error) {
      throw fsError(error, 'read', path, options.signal);
    }
  }

  async writeFile(path: string, data: Uint8Array, options: { mode?: number; signal?: AbortSignal } = {}): Promise<void> {
    try {
      await writeFile(this.#abs(path), data, {
        flag: 'wx',
        ...(options.mode === undefined ? {} : { mode: options.mode }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      throw fsError(error, 'write', path, options.signal);
    }
  }

  async mkdir(path: string): Promise<void> {
    try {
      await fsp.mkdir(this.#abs(path), { recursive: true });
    } catch (error) {
      throw fsError(error, 'mkdir', path);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await renameNoClobber(this.#abs(from), this.#abs(to), from, to);
  }

  async unlink(path: string): Promise<void> {
    try {
      await fsp.unlink(this.#abs(path));
    } catch (error) {
      throw fsError(error, 'unlink', path);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      await fsp.rmdir(this.#abs(path));
    } catch (error) {
      throw fsError(error, 'rmdir', path);
    }
  }

  async removeTree(path: string): Promise<void> {
    // The portal root is the operator's volume, never Ketter's to delete.
    if (path === '') throw new KetterError(ErrorCode.INVALID_REQUEST, '[fs] refusing to remove the root of the adapter');
    try {
      // rm does not follow links: a link in the tree is removed, never its target.
      await fsp.rm(this.#abs(path), { recursive: true, force: true });
    } catch (error) {
      throw fsError(error, 'removeTree', path);
    }
  }

  async setTimes(path: string, mtimeMs: number): Promise<void> {
    const time = new Date(mtimeMs);
    try {
      await utimes(this.#abs(path), time, time);
    } catch (error) {
      throw fsError(error, 'setTimes', path);
    }
  }

  async setMode(path: string, mode: number): Promise<void> {
    try {
      await chmod(this.#abs(path), mode & 0o7777);
    } catch (error) {
      throw fsError(error, 'setMode', path);
    }
  }

  async sync(paths: readonly string[]): Promise<void> {
    await syncAll(paths, (rel) => this.#abs(rel));
  }

  /** Free space for the path, or for its nearest existing ancestor when it does not exist yet. */
  async statfs(path: string): Promise<StatfsResult> {
    let abs = this.#abs(path);
    for (;;) {
      try {
        const stats = await fsp.statfs(abs);
        return { freeBytes: stats.bavail * stats.bsize };
      } catch (error) {
        const code = errnoOf(error);
        const parent = dirname(abs);
        if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === abs) throw fsError(error, 'statfs', path);
        abs = parent;
      }
    }
  }

  /**
   * The absolute local path of a root-relative `path` (already confined by core). Lets
   * core move small files between two local volumes on its worker threads.
   */
  localPath(path: string): string {
    return this.#abs(path);
  }

  #abs(path: string): string {
    return path === '' ? this.#root : `${this.#root === '/' ? '' : this.#root}/${path}`;
  }
}
