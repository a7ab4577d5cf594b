import { throwIfAborted, type ListEntry } from '@ketter/core';
import type { Attributes, SFTPWrapper } from 'ssh2';
import { sftpCalls, toFileStat } from './sftp-calls.js';

/** What the walker needs from the adapter: a session per directory and error mapping. */
export interface WalkHooks {
  acquire(): Promise<{ sftp: SFTPWrapper; release(): void }>;
  mapError(error: unknown, relativePath: string): Promise<Error> | Error;
  signal?: AbortSignal | undefined;
}

interface OpenDir {
  /** Path relative to the listed directory (`''` for it). */
  readonly relative: string;
  readonly absolute: string;
  readonly sftp: SFTPWrapper;
  readonly handle: Buffer;
  readonly release: () => void;
}

type Page = { dir: OpenDir; list: Array<{ filename: string; attrs: Attributes }> | null };

/** Directories read at once: each READDIR is a round trip, so a deep tree is latency-bound. */
const DIRECTORY_CONCURRENCY = 4;

/**
 * READDIR requests in flight per directory. Each answer is simply the next batch of
 * entries (about 100 from OpenSSH), whatever order the requests are served in, so a
 * directory of thousands of files costs a fraction of its page count in round trips.
 */
const PAGES_PER_DIRECTORY = 8;

/**
 * Recursive listing that yields entries page by page as the server sends them. At most
 * {@link DIRECTORY_CONCURRENCY} directories are open and {@link PAGES_PER_DIRECTORY}
 * pages per directory in flight; a directory's next page is only asked for after one of
 * its pages was yielded, so memory stays bounded by the pages in flight plus the queue of
 * directory names still to read. Entries come from READDIR's attributes, which OpenSSH
 * takes with lstat: links are reported as links and never followed.
 */
export async function* walk(rootAbsolute: string, hooks: WalkHooks): AsyncGenerator<ListEntry> {
  const pendingDirs: Array<{ relative: string; absolute: string }> = [{ relative: '', absolute: rootAbsolute }];
  // Keyed by directory; a settled page stays in the map until the loop takes it, so two
  // pages settling in the same tick are both consumed.
  const inFlight = new Map<object, Promise<{ key: object; page: Page }>>();
  const open = new Set<OpenDir>();
  // Per open directory: READDIR requests not yet answered, and whether one said "no more".
  const outstanding = new Map<OpenDir, number>();
  const exhausted = new Set<OpenDir>();
  let dirsActive = 0;

  const openDir = async (relative: string, absolute: string): Promise<Page> => {
    const { sftp, release } = await hooks.acquire();
    let handle: Buffer;
    try {
      handle = await sftpCalls.opendir(sftp, absolute);
    } catch (error) {
      release();
      throw await hooks.mapError(error, relative);
    }
    const dir: OpenDir = { relative, absolute, sftp, handle, release };
    open.add(dir);
    return { dir, list: [] };
  };

  const readPage = async (dir: OpenDir): Promise<Page> => {
    try {
      return { dir, list: await sftpCalls.readdirPage(dir.sftp, dir.handle) };
    } catch (error) {
      throw await hooks.mapError(error, dir.relative);
    }
  };

  const closeDir = async (dir: OpenDir): Promise<void> => {
    open.delete(dir);
    try {
      await sftpCalls.close(dir.sftp, dir.handle);
    } catch {
      // Closing after a lost connection fails; the handle is gone with the session.
    } finally {
      dir.release();
    }
  };

  /** Keep the directory's READDIR requests in flight, unless it said it has no more. */
  const requestPages = (dir: OpenDir): void => {
    if (exhausted.has(dir)) return;
    for (let n = outstanding.get(dir) ?? 0; n < PAGES_PER_DIRECTORY; n++) {
      outstanding.set(dir, n + 1);
      track({ dir }, readPage(dir));
    }
  };

  const track = (key: object, page: Promise<Page>): void => {
    const keyed = page.then((p) => ({ key, page: p }));
    // A page may fail while the consumer holds the generator at a yield; mark it handled
    // now, the loop still sees the rejection through Promise.race.
    keyed.catch(() => undefined);
    inFlight.set(key, keyed);
  };

  try {
    while (pendingDirs.length > 0 || inFlight.size > 0) {
      throwIfAborted(hooks.signal);
      while (dirsActive < DIRECTORY_CONCURRENCY && pendingDirs.length > 0) {
        const next = pendingDirs.shift() as { relative: string; absolute: string };
        dirsActive += 1;
        track({ relative: next.relative }, openDir(next.relative, next.absolute));
      }
      const { key, page } = await Promise.race(inFlight.values());
      inFlight.delete(key);
      const dir = page.dir;
      // An opened directory arrives as an empty page that answered no request.
      if (outstanding.has(dir)) outstanding.set(dir, (outstanding.get(dir) as number) - 1);
      if (page.list === null) exhausted.add(dir);
      if (exhausted.has(dir) && outstanding.get(dir) === 0) {
        outstanding.delete(dir);
        exhausted.delete(dir);
        dirsActive -= 1;
        await closeDir(dir);
      }
      if (page.list === null) continue;
      for (const item of page.list) {
        if (item.filename === '.' || item.filename === '..') continue;
        const path = page.dir.relative === '' ? item.filename : `${page.dir.relative}/${item.filename}`;
        const entry: ListEntry = { path, ...toFileStat(item.attrs) };
        if (entry.kind === 'directory') {
          const absolute = page.dir.absolute === '/' ? `/${item.filename}` : `${page.dir.absolute}/${item.filename}`;
          pendingDirs.push({ relative: path, absolute });
        }
        yield entry;
      }
      throwIfAborted(hooks.signal);
      if (open.has(dir)) requestPages(dir);
    }
  } finally {
    // Early exit (break, error, abort): settle what is in flight, then close every handle.
    await Promise.allSettled(inFlight.values());
    await Promise.allSettled([...open].map((dir) => closeDir(dir)));
  }
}
