import type { EntryKind, FileStat } from '@ketter/core';
import type { Attributes, InputAttributes, OpenMode, SFTPWrapper } from 'ssh2';

/**
 * ssh2 queues a request on a closed channel and never answers it, so every call checks
 * the channel first and fails fast with a connection-loss error instead of hanging.
 */
export class ChannelClosedError extends Error {
  constructor() {
    super('SFTP channel is not open (connection lost)');
  }
}

interface ChannelState {
  outgoing?: { state?: string };
  _maxReadLen?: number;
  _maxWriteLen?: number;
  _extensions?: Record<string, string>;
}

/** Sessions whose connection is gone: nothing sent on them will ever be answered. */
const abandoned = new WeakSet<SFTPWrapper>();
/** Rejecters of requests waiting on each session, failed at once when it is abandoned. */
const waiting = new WeakMap<SFTPWrapper, Set<(error: Error) => void>>();

export function channelOpen(sftp: SFTPWrapper): boolean {
  if (abandoned.has(sftp)) return false;
  const state = (sftp as unknown as ChannelState).outgoing?.state;
  return state === undefined || state === 'open';
}

/**
 * Mark a session dead and fail everything waiting on it. ssh2 answers requests in flight
 * when the socket closes, but a request issued in the same tick (a stream closing its
 * handle, say) would wait forever; this closes that gap.
 */
export function abandonChannel(sftp: SFTPWrapper): void {
  abandoned.add(sftp);
  const rejecters = waiting.get(sftp);
  waiting.delete(sftp);
  for (const reject of rejecters ?? []) reject(new ChannelClosedError());
}

/** Largest read/write payload the server accepts in one request (OpenSSH: ~256 KiB, or its limits@openssh.com answer). */
export function maxReadLen(sftp: SFTPWrapper): number {
  return (sftp as unknown as ChannelState)._maxReadLen ?? 32_768;
}
export function maxWriteLen(sftp: SFTPWrapper): number {
  return (sftp as unknown as ChannelState)._maxWriteLen ?? 32_768;
}

/** Extensions the server announced in its VERSION packet (name → version). */
export function serverExtensions(sftp: SFTPWrapper): Readonly<Record<string, string>> {
  return { ...((sftp as unknown as ChannelState)._extensions ?? {}) };
}

/** Promisify one ssh2 SFTP request. */
export function call<T = void>(sftp: SFTPWrapper, issue: (done: (error: Error | undefined | null, value?: T) => void) => void): Promise<T> {
  if (!channelOpen(sftp)) return Promise.reject(new ChannelClosedError());
  return new Promise<T>((resolve, reject) => {
    let set = waiting.get(sftp);
    if (!set) waiting.set(sftp, (set = new Set()));
    const pending = set;
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      pending.delete(fail);
      reject(error);
    };
    pending.add(fail);
    try {
      issue((error, value) => {
        if (error) return fail(error);
        if (settled) return;
        settled = true;
        pending.delete(fail);
        resolve(value as T);
      });
    } catch (error) {
      // ssh2 throws synchronously for requests the server does not support.
      fail(error as Error);
    }
  });
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

export function kindOf(mode: number): EntryKind {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'directory';
    case S_IFREG:
      return 'file';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

/** SFTP v3 attributes → core's FileStat (mtime has one-second precision). */
export function toFileStat(attrs: Attributes): FileStat {
  return { kind: kindOf(attrs.mode), size: Number(attrs.size), mtimeMs: Number(attrs.mtime) * 1000, mode: attrs.mode & 0o777 };
}

export const sftpCalls = {
  lstat: (s: SFTPWrapper, p: string) => call<Attributes>(s, (cb) => s.lstat(p, cb)),
  realpath: (s: SFTPWrapper, p: string) => call<string>(s, (cb) => s.realpath(p, cb)),
  readlink: (s: SFTPWrapper, p: string) => call<string>(s, (cb) => s.readlink(p, cb)),
  mkdir: (s: SFTPWrapper, p: string) => call(s, (cb) => s.mkdir(p, cb)),
  rmdir: (s: SFTPWrapper, p: string) => call(s, (cb) => s.rmdir(p, cb)),
  unlink: (s: SFTPWrapper, p: string) => call(s, (cb) => s.unlink(p, cb)),
  rename: (s: SFTPWrapper, from: string, to: string) => call(s, (cb) => s.rename(from, to, cb)),
  utimes: (s: SFTPWrapper, p: string, atime: number, mtime: number) => call(s, (cb) => s.utimes(p, atime, mtime, cb)),
  chmod: (s: SFTPWrapper, p: string, mode: number) => call(s, (cb) => s.chmod(p, mode, cb)),
  open: (s: SFTPWrapper, p: string, flags: OpenMode, attrs?: InputAttributes) =>
    call<Buffer>(s, (cb) => (attrs ? s.open(p, flags, attrs, cb) : s.open(p, flags, cb))),
  opendir: (s: SFTPWrapper, p: string) => call<Buffer>(s, (cb) => s.opendir(p, cb)),
  close: (s: SFTPWrapper, handle: Buffer) => call(s, (cb) => s.close(handle, cb)),
  fsync: (s: SFTPWrapper, handle: Buffer) => call(s, (cb) => s.ext_openssh_fsync(handle, (err) => cb(err))),
  fstat: (s: SFTPWrapper, handle: Buffer) => call<Attributes>(s, (cb) => s.fstat(handle, cb)),
  fsetstat: (s: SFTPWrapper, handle: Buffer, attrs: InputAttributes) => call(s, (cb) => s.fsetstat(handle, attrs, cb)),
  statvfs: (s: SFTPWrapper, p: string) =>
    call<{ f_frsize: number | bigint; f_bavail: number | bigint }>(s, (cb) => s.ext_openssh_statvfs(p, cb)),
  /** One READDIR page, or null at end of directory. */
  readdirPage: (s: SFTPWrapper, handle: Buffer) =>
    call<{ filename: string; attrs: Attributes }[] | null>(s, (cb) =>
      s.readdir(handle, (err, list) => {
        if (err && (err as { code?: unknown }).code === 1) cb(undefined, null);
        else cb(err, list);
      }),
    ),
  /** Read up to `length` bytes at `position`; fewer only at end of file. */
  read: (s: SFTPWrapper, handle: Buffer, buffer: Buffer, offset: number, length: number, position: number) =>
    call<number>(s, (cb) => s.read(handle, buffer, offset, length, position, (err, bytesRead) => cb(err, bytesRead))),
  write: (s: SFTPWrapper, handle: Buffer, buffer: Buffer, offset: number, length: number, position: number) =>
    call(s, (cb) => s.write(handle, buffer, offset, length, position, (err) => cb(err))),
};
