import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ErrorCode,
  KetterError,
  throwIfAborted,
  type Adapter,
  type AdapterCapabilities,
  type FileStat,
  type HashAlgorithm,
  type ListEntry,
  type ListOptions,
  type ReadOptions,
  type StatfsResult,
  type WriteOptions,
} from '@ketter/core';
import type { SFTPWrapper } from 'ssh2';
import { SshConnection } from './connection.js';
import { resolveAuth } from './credentials.js';
import { connectionError, isConnectionLoss, mapSftpError, SftpStatus, statusOf, type ErrorContext } from './errors.js';
import { fingerprintPolicy, knownHostsPolicy, type HostKeyPolicy } from './host-key.js';
import { walk } from './list.js';
import { parseOptions, type ResolvedSftpOptions, type SftpAdapterOptions } from './options.js';
import { HASH_TOOLS, probeTools, remoteExtract, remoteHash, remoteSync } from './remote-exec.js';
import { maxReadLen, maxWriteLen, sftpCalls, toFileStat } from './sftp-calls.js';
import { SftpReadStream, SftpWriteStream, type OpenedFile } from './streams.js';
import { parseSftpUrl, type FromUrlOptions } from './url.js';

/** What an SFTP server can do before we have asked it: the safe floor. */
const UNCONNECTED: AdapterCapabilities = Object.freeze({
  statfs: false,
  fsync: false,
  serverSideHash: Object.freeze([]) as readonly HashAlgorithm[],
  serverSideExtract: false,
  mtimePrecisionMs: 1000,
  setTimes: true,
  setMode: true,
  symlinks: true,
});

/**
 * SFTP requests issued at once by tree-wide operations (remove, sync): each file costs
 * round trips, not bandwidth, so many in flight hide the latency (OpenSSH's server answers
 * them in order, one channel).
 */
const TREE_CONCURRENCY = 64;
/** From this many paths on (and where commands may run), one remote `sync -f` replaces per-file fsyncs. */
const REMOTE_SYNC_THRESHOLD = 16;

/** A tiny semaphore: run at most `limit` of the given tasks at once. */
function limiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (task) => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

function hostForUrl(host: string): string {
  const h = host.toLowerCase();
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}

/**
 * An SFTP host as a Ketter adapter, over one SSH connection (ssh2) with a pool of SFTP
 * sessions. The host key is always verified; credentials are read from files or
 * environment variables at connect time and never appear in errors or events.
 *
 * A dropped connection fails the operations in flight with a transient `CONNECTION_ERROR`;
 * the next operation reconnects (with backoff), so the engine's per-file retry succeeds.
 */
export class SftpAdapter implements Adapter {
  readonly kind = 'sftp';
  /** `sftp://host:port`: no user, no credentials, the same for every adapter on this server. */
  readonly id: string;

  // Present only when the server offers them (decided at connect), so an unsupported
  // operation is absent rather than a silent no-op.
  declare sync?: (paths: readonly string[]) => Promise<void>;
  declare statfs?: (path: string) => Promise<StatfsResult>;
  declare hash?: (paths: readonly string[], algorithm: HashAlgorithm, options?: { signal?: AbortSignal }) => Promise<string[]>;
  declare extract?: (archive: string, into: string, options?: { signal?: AbortSignal }) => Promise<void>;

  readonly #options: ResolvedSftpOptions;
  #root: string;
  #capabilities: AdapterCapabilities = UNCONNECTED;
  /** Server tools found at connect (only probed where commands may run). */
  #tools: ReadonlySet<string> = new Set();
  #state: 'idle' | 'open' | 'closed' = 'idle';
  #conn: SshConnection | null = null;
  #reconnecting: Promise<SshConnection> | null = null;
  #connecting: Promise<void> | null = null;
  /** Why the last connect failed, for operations that were waiting on it or came after it. */
  #connectFailure: { error: unknown } | null = null;

  /** Validates options (INVALID_REQUEST) and does nothing else: no I/O until {@link connect}. */
  constructor(options: SftpAdapterOptions) {
    this.#options = parseOptions(options);
    this.id = `sftp://${hostForUrl(this.#options.host)}:${this.#options.port}`;
    this.#root = this.#options.root.replace(/\/+$/, '') || '/';
  }

  /**
   * An adapter for a bare `sftp://user@host[:port]/path` URL, set up as OpenSSH's `sftp`
   * client would be: host keys from `~/.ssh/known_hosts` (and `/etc/ssh/ssh_known_hosts`),
   * authentication by the agent at `$SSH_AUTH_SOCK` and then the default identity files
   * that exist. The adapter's root is `/`; `path` is the URL's path relative to it.
   */
  static fromUrl(url: string, options: FromUrlOptions = {}): { adapter: SftpAdapter; path: string } {
    const parsed = parseSftpUrl(url, options);
    return { adapter: new SftpAdapter(parsed.options), path: parsed.path };
  }

  /** Absolute path of the root on the server (realpath, after {@link connect}). */
  get root(): string {
    return this.#root;
  }

  /** What this server allows, decided at connect. Before connect: the conservative floor. */
  get capabilities(): AdapterCapabilities {
    return this.#capabilities;
  }

  /**
   * Connect, verify the host key, authenticate, resolve the root and (with `allowExec`)
   * probe the server's tools. Calls made while a connect is in flight share it, and every
   * operation started meanwhile waits for it (and fails with its error): a caller may start
   * connecting and go on with other work, such as scanning the source.
   */
  connect(): Promise<void> {
    if (this.#state === 'open' && this.#conn?.alive && this.#connecting === null) return Promise.resolve();
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = null;
    });
    return this.#connecting;
  }

  async #connect(): Promise<void> {
    this.#state = 'open';
    try {
      const conn = await this.#dial();
      if (this.#state !== 'open') {
        conn.close();
        throw new KetterError(ErrorCode.INVALID_REQUEST, `[sftp] adapter for ${this.id} was closed while connecting`);
      }
      this.#conn = conn;
      // Neither depends on the other: one round trip instead of two.
      const [root, tools] = await Promise.all([this.#resolveRoot(conn), this.#options.allowExec ? this.#probe(conn) : Promise.resolve(new Set<string>())]);
      this.#root = root;
      this.#decideCapabilities(conn, tools);
      this.#connectFailure = null;
    } catch (error) {
      this.#connectFailure = { error };
      if (this.#state === 'open') this.#state = 'idle';
      this.#conn?.close();
      this.#conn = null;
      throw error;
    }
  }

  async close(): Promise<void> {
    this.#state = 'closed';
    this.#durable.clear();
    const conn = this.#conn;
    this.#conn = null;
    conn?.close();
  }

  async stat(path: string): Promise<FileStat | null> {
    return this.#withSftp('stat', path, async (sftp) => {
      try {
        return toFileStat(await sftpCalls.lstat(sftp, this.#abs(path)));
      } catch (error) {
        if (statusOf(error) === SftpStatus.NO_SUCH_FILE) return null;
        throw error;
      }
    });
  }

  async readlink(path: string): Promise<string> {
    return this.#withSftp('readlink', path, (sftp) => sftpCalls.readlink(sftp, this.#abs(path)));
  }

  async *list(path: string, options: ListOptions = {}): AsyncIterable<ListEntry> {
    throwIfAborted(options.signal);
    await this.#ensure('list', path);
    yield* walk(this.#abs(path), {
      acquire: async () => (await this.#ensure('list', path)).acquire(),
      mapError: (error, relative) => this.#mapError(error, { operation: 'list', path: join(path, relative) }),
      signal: options.signal,
    });
  }

  openRead(path: string, options: ReadOptions = {}): Readable {
    return new SftpReadStream(
      {
        open: () => this.#openFile('read', path, 'r'),
        mapError: (error) => this.#mapError(error, { operation: 'read', path }),
        signal: options.signal,
      },
      { start: options.start, end: options.end, highWaterMark: options.highWaterMark },
    );
  }

  openWrite(path: string, options: WriteOptions = {}): Writable {
    const mode = options.mode === undefined ? undefined : options.mode & 0o7777;
    return new SftpWriteStream(
      {
        open: () => this.#openFile('write', path, 'wx', mode),
        mapError: (error) => this.#mapWriteError(error, path),
        signal: options.signal,
        fsyncOnClose: this.#fsyncOnClose() ? { durable: () => void this.#durable.add(this.#abs(path)) } : undefined,
      },
      options.highWaterMark,
    );
  }

  /**
   * A whole small file in two round trips: open, then the reads for its size and one byte
   * more (growth shows), an fstat and the close, all in flight together. The stream path
   * pays open, read, a read that answers EOF, and close, one after the other. The first read
   * is sized to `sizeHint` (and one byte more) when given: what it returns keeps its buffer
   * alive, and thousands of small files each holding a full request's buffer add up.
   */
  async readFile(path: string, options: { signal?: AbortSignal; sizeHint?: number } = {}): Promise<Uint8Array> {
    throwIfAborted(options.signal);
    return this.#withSftp('read', path, async (sftp) => {
      const handle = await sftpCalls.open(sftp, this.#abs(path), 'r');
      // The server answers in order: the read and the fstat go out before the close.
      const hint = options.sizeHint;
      const first = Buffer.allocUnsafe(hint !== undefined && hint >= 0 && hint < maxReadLen(sftp) ? hint + 1 : maxReadLen(sftp));
      const reading = Promise.all([readSome(sftp, handle, first, 0), sftpCalls.fstat(sftp, handle)]);
      reading.catch(() => undefined);
      const closing = sftpCalls.close(sftp, handle);
      closing.catch(() => undefined);
      const [n, attrs] = await reading;
      await closing;
      // Shorter than a piece: the whole file (a read past the end answers 0 bytes).
      if (n < first.length) return first.subarray(0, n);
      // Larger than one piece: the rest through a fresh handle, every piece in flight.
      return this.#readRest(sftp, path, first, attrs.size);
    });
  }

  async #readRest(sftp: SFTPWrapper, path: string, head: Buffer, size: number): Promise<Uint8Array> {
    const piece = maxReadLen(sftp);
    const handle = await sftpCalls.open(sftp, this.#abs(path), 'r');
    try {
      const buffer = Buffer.allocUnsafe(size + 1);
      head.copy(buffer, 0);
      const offsets: number[] = [];
      for (let at = head.length; at < buffer.length; at += piece) offsets.push(at);
      const got = await Promise.all(offsets.map((at) => readSome(sftp, handle, buffer.subarray(at, Math.min(at + piece, buffer.length)), at)));
      let total = head.length;
      for (let i = 0; i < offsets.length; i++) {
        total += got[i] as number;
        // A short answer before the end: read on from there, one request at a time.
        if ((got[i] as number) < Math.min(piece, buffer.length - (offsets[i] as number))) {
          return Buffer.concat([buffer.subarray(0, total), await readToEnd(sftp, handle, total)]);
        }
      }
      return total > size ? Buffer.concat([buffer.subarray(0, total), await readToEnd(sftp, handle, total)]) : buffer.subarray(0, total);
    } finally {
      await sftpCalls.close(sftp, handle).catch(() => undefined);
    }
  }

  /**
   * A new small file in two round trips: the exclusive open, then the writes, the mode
   * (set on the handle: the server's umask applied to the open's), the fsync where no
   * remote \`sync\` will follow, and the close, all in flight together.
   */
  async writeFile(path: string, data: Uint8Array, options: { mode?: number; signal?: AbortSignal } = {}): Promise<void> {
    throwIfAborted(options.signal);
    const mode = options.mode === undefined ? undefined : options.mode & 0o7777;
    const conn = await this.#ensure('write', path);
    const { sftp, release } = conn.acquire();
    try {
      const handle = await sftpCalls.open(sftp, this.#abs(path), 'wx', mode === undefined ? undefined : { mode });
      const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const piece = maxWriteLen(sftp);
      const requests: Array<Promise<void>> = [];
      for (let at = 0; at < bytes.length; at += piece) requests.push(sftpCalls.write(sftp, handle, bytes, at, Math.min(piece, bytes.length - at), at));
      if (mode !== undefined) requests.push(sftpCalls.fsetstat(sftp, handle, { mode }));
      const durable = this.#fsyncOnClose();
      if (durable) requests.push(sftpCalls.fsync(sftp, handle));
      const written = Promise.all(requests);
      written.catch(() => undefined);
      // The close goes out behind the writes: it reports a late failure (a full disk) too.
      const closed = sftpCalls.close(sftp, handle);
      await Promise.all([written, closed]);
      if (durable) this.#durable.add(this.#abs(path));
    } catch (error) {
      throw conn.alive ? await this.#mapWriteError(error, path) : connectionError({ operation: 'write', path, endpoint: this.id }, error);
    } finally {
      release();
    }
  }

  /** Files written since, already fsynced on close: `sync` skips them (their directories still get synced). */
  readonly #durable = new Set<string>();

  /** Where no remote \`sync -f\` will make a tree durable, each written file is fsynced as it is closed. */
  #fsyncOnClose(): boolean {
    return this.#capabilities.fsync && !this.#tools.has('sync');
  }

  async mkdir(path: string): Promise<void> {
    await this.#withSftp('mkdir', path, (sftp) => this.#mkdirp(sftp, path));
  }

  async rename(from: string, to: string): Promise<void> {
    await this.#withSftp('rename', from, async (sftp) => {
      // OpenSSH refuses to rename onto an existing name, but not every server does; the
      // check first means a clobbering server is caught too (only a racing writer slips by).
      if (await this.#exists(sftp, to)) throw this.#exists_(to, 'rename');
      try {
        // Plain SSH_FXP_RENAME, never posix-rename@openssh.com: that one replaces the target.
        await sftpCalls.rename(sftp, this.#abs(from), this.#abs(to));
      } catch (error) {
        if (isConnectionLoss(error)) throw error;
        if (await this.#exists(sftp, to)) throw this.#exists_(to, 'rename');
        if (!(await this.#exists(sftp, from))) {
          throw new KetterError(ErrorCode.SOURCE_NOT_FOUND, `[sftp] rename: no such file or directory '${from}'`, { path: from, cause: error });
        }
        throw this.#mapError(error, { operation: `rename to '${to}'`, path: from });
      }
    });
  }

  async unlink(path: string): Promise<void> {
    await this.#withSftp('unlink', path, (sftp) => sftpCalls.unlink(sftp, this.#abs(path)));
  }

  async rmdir(path: string): Promise<void> {
    await this.#withSftp('rmdir', path, async (sftp) => {
      try {
        await sftpCalls.rmdir(sftp, this.#abs(path));
      } catch (error) {
        if (statusOf(error) !== SftpStatus.FAILURE) throw error;
        const stat = await sftpCalls.lstat(sftp, this.#abs(path)).catch(() => null);
        if (stat && toFileStat(stat).kind === 'directory') {
          throw new KetterError(ErrorCode.IO_ERROR, `[sftp] rmdir '${path}': directory not empty`, { path, cause: error, transient: false });
        }
        throw error;
      }
    });
  }

  async removeTree(path: string): Promise<void> {
    const limit = limiter(TREE_CONCURRENCY);
    await this.#withSftp('removeTree', path, async (sftp) => {
      const top = await limit(() => sftpCalls.lstat(sftp, this.#abs(path))).catch((error: unknown) => {
        if (statusOf(error) === SftpStatus.NO_SUCH_FILE) return null;
        throw error;
      });
      if (top === null) return;
      await this.#removeEntry(sftp, path, toFileStat(top).kind === 'directory', limit);
    });
  }

  async setTimes(path: string, mtimeMs: number): Promise<void> {
    // SFTP v3 carries whole seconds and sets atime with mtime; atime becomes "now".
    const mtime = Math.floor(mtimeMs / 1000);
    const atime = Math.floor(Date.now() / 1000);
    await this.#withSftp('setTimes', path, (sftp) => sftpCalls.utimes(sftp, this.#abs(path), atime, mtime));
  }

  async setMode(path: string, mode: number): Promise<void> {
    await this.#withSftp('setMode', path, (sftp) => sftpCalls.chmod(sftp, this.#abs(path), mode & 0o7777));
  }

  // ---------------------------------------------------------------- capabilities

  #decideCapabilities(conn: SshConnection, tools: ReadonlySet<string>): void {
    this.#tools = tools;
    const statfs = conn.extensions['statvfs@openssh.com'] === '2';
    const fsync = conn.extensions['fsync@openssh.com'] === '1';
    const serverSideHash = (Object.entries(HASH_TOOLS) as Array<[HashAlgorithm, string]>)
      .filter(([, tool]) => tools.has(tool))
      .map(([algorithm]) => algorithm);
    const serverSideExtract = tools.has('unzip');
    this.#capabilities = Object.freeze({
      ...UNCONNECTED,
      statfs,
      fsync,
      serverSideHash: Object.freeze(serverSideHash),
      serverSideExtract,
    });
    this.sync = fsync ? (paths) => this.#sync(paths) : undefined;
    this.statfs = statfs ? (path) => this.#statfs(path) : undefined;
    this.hash = serverSideHash.length > 0 ? (paths, algorithm, options) => this.#hash(paths, algorithm, options?.signal) : undefined;
    this.extract = serverSideExtract ? (archive, into, options) => this.#extract(archive, into, options?.signal) : undefined;
  }

  async #probe(conn: SshConnection): Promise<Set<string>> {
    try {
      return await probeTools((command, signal) => conn.exec(command, signal));
    } catch (error) {
      throw this.#mapError(error, { operation: 'probe server tools' });
    }
  }

  /**
   * Files: open read-only and `fsync@openssh.com` the handle. Directories: OpenSSH opens a
   * directory read-only like a file (Linux allows fsync on such a descriptor), which makes
   * the directory entries durable; a server that refuses to open a directory fails the sync
   * with an error rather than skipping it.
   */
  async #sync(paths: readonly string[]): Promise<void> {
    if (paths.length >= REMOTE_SYNC_THRESHOLD && this.#tools.has('sync')) {
      // The paths synced together live in one staging tree Ketter created: one filesystem.
      const dirs = [...new Set(paths.map((p) => this.#abs(parent(p))))];
      const conn = await this.#ensure('sync', paths[0] ?? '');
      try {
        await remoteSync((command, signal) => conn.exec(command, signal), dirs.length > 64 ? dirs.slice(0, 1) : dirs);
        return;
      } catch (error) {
        throw this.#mapError(error, { operation: 'sync', path: paths[0] ?? '' });
      }
    }
    const limit = limiter(TREE_CONCURRENCY);
    const pending = paths.filter((path) => !this.#durable.delete(this.#abs(path)));
    await Promise.all(
      pending.map((path) =>
        limit(() =>
          this.#withSftp('sync', path, async (sftp) => {
            const handle = await sftpCalls.open(sftp, this.#abs(path), 'r');
            try {
              await sftpCalls.fsync(sftp, handle);
            } finally {
              await sftpCalls.close(sftp, handle).catch(() => undefined);
            }
          }),
        ),
      ),
    );
  }

  /** Free space of the filesystem holding `path`, or its nearest existing ancestor (a destination may not exist yet). */
  async #statfs(path: string): Promise<StatfsResult> {
    return this.#withSftp('statfs', path, async (sftp) => {
      for (let at = path; ; at = parent(at)) {
        try {
          const info = await sftpCalls.statvfs(sftp, this.#abs(at));
          return { freeBytes: Number(info.f_bavail) * Number(info.f_frsize) };
        } catch (error) {
          if (statusOf(error) !== SftpStatus.NO_SUCH_FILE || at === '') throw error;
        }
      }
    });
  }

  async #hash(paths: readonly string[], algorithm: HashAlgorithm, signal?: AbortSignal): Promise<string[]> {
    if (!this.#capabilities.serverSideHash.includes(algorithm)) {
      throw new KetterError(ErrorCode.NOT_SUPPORTED, `[sftp] ${this.id} has no server-side ${algorithm} (capabilities.serverSideHash)`);
    }
    if (paths.length === 0) return [];
    const conn = await this.#ensure('hash', paths[0]);
    try {
      return await remoteHash(
        (command, s) => conn.exec(command, s),
        paths.map((p) => this.#abs(p)),
        algorithm,
        (absolute) => this.#relative(absolute),
        signal,
        this.#tools,
      );
    } catch (error) {
      throw this.#mapError(error, { operation: `server-side ${algorithm}`, path: paths.length === 1 ? paths[0] : undefined });
    }
  }

  async #extract(archive: string, into: string, signal?: AbortSignal): Promise<void> {
    const conn = await this.#ensure('extract', archive);
    try {
      await remoteExtract((command, s) => conn.exec(command, s), this.#abs(archive), this.#abs(into), archive, signal);
    } catch (error) {
      throw this.#mapError(error, { operation: 'server-side extract', path: archive });
    }
  }

  // ---------------------------------------------------------------- connection

  #hostKeyPolicy(): HostKeyPolicy {
    const { hostKey, host, port } = this.#options;
    if ('fingerprint' in hostKey) {
      return fingerprintPolicy(Array.isArray(hostKey.fingerprint) ? hostKey.fingerprint : [hostKey.fingerprint], this.id);
    }
    return knownHostsPolicy(Array.isArray(hostKey.knownHosts) ? hostKey.knownHosts : [hostKey.knownHosts], host, port, this.id);
  }

  async #dial(): Promise<SshConnection> {
    const o = this.#options;
    const auth = await resolveAuth(Array.isArray(o.auth) ? o.auth : [o.auth], o.username, this.id);
    const conn = await SshConnection.open({
      host: o.host,
      port: o.port,
      username: o.username,
      endpoint: this.id,
      hostKey: this.#hostKeyPolicy(),
      auth,
      channels: o.channels,
      readyTimeoutMs: o.readyTimeoutMs,
      keepaliveIntervalMs: o.keepaliveIntervalMs,
    });
    return conn;
  }

  async #resolveRoot(conn: SshConnection): Promise<string> {
    const { sftp, release } = conn.acquire();
    try {
      const real = await sftpCalls.realpath(sftp, this.#options.root);
      const attrs = await sftpCalls.lstat(sftp, real);
      if (toFileStat(attrs).kind !== 'directory') {
        throw new KetterError(ErrorCode.INVALID_REQUEST, `[sftp] root '${this.#options.root}' on ${this.id} is not a directory`);
      }
      return real.replace(/\/+$/, '') || '/';
    } catch (error) {
      if (statusOf(error) === SftpStatus.NO_SUCH_FILE) {
        throw new KetterError(ErrorCode.SOURCE_NOT_FOUND, `[sftp] root '${this.#options.root}' does not exist on ${this.id}`, { cause: error });
      }
      throw this.#mapError(error, { operation: `resolve root '${this.#options.root}'` });
    } finally {
      release();
    }
  }

  /** A live connection, reconnecting (with backoff) if the last one dropped. */
  async #ensure(operation: string, path?: string): Promise<SshConnection> {
    if (this.#connecting !== null) await this.#connecting;
    // A connect started without waiting for it (work went on meanwhile) failed: that failure is this operation's.
    if (this.#state === 'idle' && this.#connectFailure !== null) throw this.#connectFailure.error;
    if (this.#state !== 'open') {
      throw new KetterError(
        ErrorCode.INVALID_REQUEST,
        `[sftp] ${operation}: adapter for ${this.id} is ${this.#state === 'closed' ? 'closed' : 'not connected (call connect() first)'}`,
        { path },
      );
    }
    if (this.#conn?.alive) return this.#conn;
    this.#reconnecting ??= this.#reconnect().finally(() => {
      this.#reconnecting = null;
    });
    return this.#reconnecting;
  }

  async #reconnect(): Promise<SshConnection> {
    const { attempts, baseDelayMs, maxDelayMs } = this.#options.retry;
    let last: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        // Exponential backoff with full jitter, so many workers do not reconnect in step.
        const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
        await sleep(Math.random() * cap);
      }
      if (this.#state !== 'open') break;
      try {
        const conn = await this.#dial();
        if (this.#state !== 'open') {
          conn.close();
          break;
        }
        this.#conn = conn;
        return conn;
      } catch (error) {
        last = error;
        // A changed host key or refused credentials will not fix themselves.
        if (error instanceof KetterError && !error.transient) throw error;
      }
    }
    if (last instanceof KetterError) throw last;
    throw connectionError({ operation: 'reconnect', endpoint: this.id }, last);
  }

  async #withSftp<T>(operation: string, path: string, run: (sftp: SFTPWrapper) => Promise<T>): Promise<T> {
    const conn = await this.#ensure(operation, path);
    const { sftp, release } = conn.acquire();
    try {
      return await run(sftp);
    } catch (error) {
      throw conn.alive ? this.#mapError(error, { operation, path }) : connectionError({ operation, path, endpoint: this.id }, error);
    } finally {
      release();
    }
  }

  async #openFile(operation: string, path: string, flags: 'r' | 'wx', mode?: number): Promise<OpenedFile> {
    const conn = await this.#ensure(operation, path);
    const { sftp, release } = conn.acquire();
    try {
      const handle = await sftpCalls.open(sftp, this.#abs(path), flags, mode === undefined ? undefined : { mode });
      return { sftp, handle, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  #mapError(error: unknown, context: Omit<ErrorContext, 'endpoint'>): KetterError {
    const ctx = { ...context, endpoint: this.id };
    if (error instanceof KetterError) return error;
    if (isConnectionLoss(error) || (this.#conn !== null && !this.#conn.alive)) return connectionError(ctx, error);
    return mapSftpError(error, ctx);
  }

  /** Exclusive create reports an existing file as a bare FAILURE: look before calling it an I/O error. */
  async #mapWriteError(error: unknown, path: string): Promise<KetterError> {
    if (statusOf(error) === SftpStatus.FAILURE && this.#conn?.alive) {
      const { sftp, release } = this.#conn.acquire();
      try {
        if (await this.#exists(sftp, path)) return this.#exists_(path, 'write');
      } catch {
        // Fall through to the generic mapping.
      } finally {
        release();
      }
    }
    return this.#mapError(error, { operation: 'write', path });
  }

  // ---------------------------------------------------------------- helpers

  #abs(path: string): string {
    if (path === '') return this.#root;
    return this.#root === '/' ? `/${path}` : `${this.#root}/${path}`;
  }

  #relative(absolute: string): string {
    if (absolute === this.#root) return '.';
    const prefix = this.#root === '/' ? '/' : `${this.#root}/`;
    return absolute.startsWith(prefix) ? absolute.slice(prefix.length) : absolute;
  }

  async #exists(sftp: SFTPWrapper, path: string): Promise<boolean> {
    try {
      await sftpCalls.lstat(sftp, this.#abs(path));
      return true;
    } catch (error) {
      if (statusOf(error) === SftpStatus.NO_SUCH_FILE) return false;
      throw error;
    }
  }

  #exists_(path: string, operation: string): KetterError {
    return new KetterError(ErrorCode.DESTINATION_EXISTS, `[sftp] ${operation}: already exists '${path}'`, { path, transient: false });
  }

  async #mkdirp(sftp: SFTPWrapper, path: string): Promise<void> {
    try {
      await sftpCalls.mkdir(sftp, this.#abs(path));
      return;
    } catch (error) {
      const status = statusOf(error);
      if (status === SftpStatus.NO_SUCH_FILE && path !== '') {
        await this.#mkdirp(sftp, parent(path));
        try {
          await sftpCalls.mkdir(sftp, this.#abs(path));
          return;
        } catch (again) {
          if (statusOf(again) !== SftpStatus.FAILURE) throw again;
        }
      } else if (status !== SftpStatus.FAILURE) throw error;
    }
    // FAILURE is how OpenSSH says EEXIST (among others): fine if a directory is there.
    const stat = await sftpCalls.lstat(sftp, this.#abs(path)).catch((e: unknown) => {
      if (statusOf(e) === SftpStatus.NO_SUCH_FILE) return null;
      throw e;
    });
    if (stat === null) throw new KetterError(ErrorCode.IO_ERROR, `[sftp] mkdir '${path}' failed on ${this.id}`, { path, transient: false });
    if (toFileStat(stat).kind !== 'directory') {
      throw new KetterError(ErrorCode.DESTINATION_EXISTS, `[sftp] mkdir: '${path}' exists and is not a directory`, { path, transient: false });
    }
  }

  async #removeEntry(sftp: SFTPWrapper, path: string, isDirectory: boolean, limit: <T>(task: () => Promise<T>) => Promise<T>): Promise<void> {
    const ignoreMissing = (error: unknown): undefined => {
      if (statusOf(error) !== SftpStatus.NO_SUCH_FILE) throw error;
      return undefined;
    };
    if (!isDirectory) {
      await limit(() => sftpCalls.unlink(sftp, this.#abs(path))).catch(ignoreMissing);
      return;
    }
    const children = await limit(() => readWholeDir(sftp, this.#abs(path))).catch((error: unknown) => {
      ignoreMissing(error);
      return [];
    });
    await Promise.all(
      children.map((child) => this.#removeEntry(sftp, join(path, child.filename), toFileStat(child.attrs).kind === 'directory', limit)),
    );
    await limit(() => sftpCalls.rmdir(sftp, this.#abs(path))).catch(ignoreMissing);
  }
}

function join(a: string, b: string): string {
  if (a === '') return b;
  if (b === '') return a;
  return `${a}/${b}`;
}

function parent(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** One read request (at most the session's read length): the bytes read, 0 at end of file. */
function readSome(sftp: SFTPWrapper, handle: Buffer, into: Buffer, position: number): Promise<number> {
  return sftpCalls.read(sftp, handle, into, 0, into.length, position);
}

/** Everything from `position` to the end of the file, one request at a time. */
async function readToEnd(sftp: SFTPWrapper, handle: Buffer, position: number): Promise<Buffer> {
  const piece = maxReadLen(sftp);
  const parts: Buffer[] = [];
  for (let at = position; ; ) {
    const buffer = Buffer.allocUnsafe(piece);
    const n = await readSome(sftp, handle, buffer, at);
    if (n === 0) return Buffer.concat(parts);
    parts.push(buffer.subarray(0, n));
    at += n;
  }
}

async function readWholeDir(sftp: SFTPWrapper, absolute: string): Promise<Array<{ filename: string; attrs: import('ssh2').Attributes }>> {
  const handle = await sftpCalls.opendir(sftp, absolute);
  const out: Array<{ filename: string; attrs: import('ssh2').Attributes }> = [];
  try {
    for (;;) {
      const page = await sftpCalls.readdirPage(sftp, handle);
      if (page === null) break;
      for (const entry of page) if (entry.filename !== '.' && entry.filename !== '..') out.push(entry);
    }
  } finally {
    await sftpCalls.close(sftp, handle).catch(() => undefined);
  }
  return out;
}
