import * as fs from 'node:fs';
import { cancelledError, ErrorCode, KetterError, type ListEntry } from '@ketter/core';
import { errnoOf, fsError } from './errors.js';
import { toListEntry } from './stat.js';

type Callback<T> = (error: NodeJS.ErrnoException | null, value: T) => void;

/** The two calls a walk makes. Injectable so tests can change the tree under a walk. */
export interface WalkFs {
  readdir(path: string, callback: Callback<string[]>): void;
  lstat(path: string, callback: Callback<fs.Stats>): void;
}

const nodeFs: WalkFs = {
  readdir: (path, callback) => fs.readdir(path, 'utf8', callback),
  lstat: (path, callback) => fs.lstat(path, callback),
};

/**
 * fs calls in flight at once. More than libuv's thread pool, so its threads never idle
 * while the event loop hands out the next call (the disk queue stays deep on a cold cache
 * and on network mounts); small enough to bound what a walk holds.
 */
export const LIST_CONCURRENCY = 64;
/** Directories read at once: their names feed the lstats, which are most of the work. */
const READDIR_CONCURRENCY = 4;
/** Entries found before a waiting consumer is woken. */
const WAKE_BATCH = 256;
/** Entries found but not yet taken by the consumer beyond which the walk pauses. */
const HIGH_WATER = 4096;

/** Options of {@link listTree}; the defaults are what the adapter uses. */
export interface ListTreeOptions {
  signal?: AbortSignal;
  fs?: WalkFs;
  concurrency?: number;
}

/**
 * Walk the directory `absDir` (root-relative `relDir`, for messages) and yield every entry
 * below it with lstat metadata, paths relative to `absDir`, in no particular order.
 *
 * Built on `readdir` + one `lstat` per entry through node's callback API, with bounded
 * concurrency: a listing's cost is per entry, and the callback API is the cheapest way to
 * keep several calls in flight. No glob matching, so every name is reported as it is
 * (newlines, `%`, `*` included). Links are reported, never descended into; dotfiles are
 * included. A directory that cannot be read fails the listing, and so does an entry that
 * vanishes mid-walk (SOURCE_CHANGED): a listing is complete or it is an error.
 *
 * The walk stays at most {@link HIGH_WATER} entries ahead of its consumer and reads more
 * directories only while fewer names than that wait for their lstat, so memory is bounded
 * by the largest directories rather than by the tree.
 */
export async function* listTree(absDir: string, relDir: string, options: ListTreeOptions = {}): AsyncGenerator<ListEntry> {
  const { signal } = options;
  if (signal?.aborted) throw cancelledError(signal);
  const walk = new TreeWalk(absDir, relDir, options.fs ?? nodeFs, options.concurrency ?? LIST_CONCURRENCY);
  const onAbort = () => walk.fail(cancelledError(signal));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (let batch = await walk.take(); batch !== null; batch = await walk.take()) {
      for (const entry of batch) {
        if (signal?.aborted) throw cancelledError(signal);
        yield entry;
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    walk.stop();
  }
}

/** The state of one walk: work to issue, calls in flight, entries found, and one waiting consumer. */
class TreeWalk {
  readonly #base: string;
  readonly #relDir: string;
  readonly #fs: WalkFs;
  readonly #limit: number;
  /** Directories to read, relative to the listed one (`''` is the listed one). */
  readonly #dirs: string[] = [''];
  /** Entries named by a readdir, still to be lstat'ed. */
  readonly #names: string[] = [];
  #found: ListEntry[] = [];
  #inFlight = 0;
  #readdirsInFlight = 0;
  #error: unknown = null;
  #stopped = false;
  #waiter: (() => void) | null = null;

  constructor(absDir: string, relDir: string, walkFs: WalkFs, limit: number) {
    this.#base = absDir.endsWith('/') ? absDir : `${absDir}/`;
    this.#relDir = relDir;
    this.#fs = walkFs;
    this.#limit = Math.max(1, limit);
  }

  /** The entries found since the last call, waiting for some; null once the walk is complete. */
  async take(): Promise<ListEntry[] | null> {
    for (;;) {
      if (this.#error !== null) throw this.#error;
      if (this.#found.length > 0) {
        const batch = this.#found;
        this.#found = [];
        this.#pump();
        return batch;
      }
      this.#pump();
      if (this.#done()) return null;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
    }
  }

  /** End the walk with `error` (first one wins); calls in flight finish unheard. */
  fail(error: unknown): void {
    if (this.#error === null) this.#error = error;
    this.#wake();
  }

  /** The consumer is gone: issue nothing more. */
  stop(): void {
    this.#stopped = true;
  }

  #done(): boolean {
    return this.#inFlight === 0 && this.#names.length === 0 && this.#dirs.length === 0;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }

  /** Issue calls up to the limits; the consumer's pace (HIGH_WATER) bounds how far ahead. */
  #pump(): void {
    while (!this.#stopped && this.#error === null && this.#inFlight < this.#limit && this.#found.length < HIGH_WATER) {
      // Reading a directory early keeps names queued for the lstats, whose latency dominates;
      // but only so many, or a tree of many small folders would be held in memory as names.
      if (this.#dirs.length > 0 && this.#readdirsInFlight < READDIR_CONCURRENCY && this.#names.length < HIGH_WATER) {
        this.#readdir(this.#dirs.pop() as string);
      } else if (this.#names.length > 0) {
        this.#lstat(this.#names.pop() as string);
      } else break;
    }
  }

  #readdir(rel: string): void {
    this.#inFlight++;
    this.#readdirsInFlight++;
    this.#fs.readdir(rel === '' ? this.#base : this.#base + rel, (error, names) => {
      this.#inFlight--;
      this.#readdirsInFlight--;
      if (error) return this.fail(this.#mapError(error, rel));
      const prefix = rel === '' ? '' : `${rel}/`;
      for (const name of names) this.#names.push(prefix + name);
      this.#settled();
    });
  }

  #lstat(rel: string): void {
    this.#inFlight++;
    this.#fs.lstat(this.#base + rel, (error, stats) => {
      this.#inFlight--;
      if (error) return this.fail(this.#mapError(error, rel));
      const entry = toListEntry(rel, stats);
      // Links are reported as links and never descended into.
      if (entry.kind === 'directory') this.#dirs.push(rel);
      this.#found.push(entry);
      this.#settled();
    });
  }

  #settled(): void {
    this.#pump();
    // Waking the consumer per entry would cost a promise round trip each; a batch, or the
    // last call settling (nothing more is coming until the consumer acts), wakes it.
    if (this.#found.length >= WAKE_BATCH || this.#inFlight === 0) this.#wake();
  }

  /**
   * Something named a moment ago is gone (or is no longer a directory): the tree changed
   * under the walk. Skipping it would lose files without a word, so the listing fails.
   */
  #mapError(error: NodeJS.ErrnoException, rel: string): KetterError {
    const path = [this.#relDir, rel].filter((p) => p !== '').join('/');
    const code = errnoOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return new KetterError(ErrorCode.SOURCE_CHANGED, `[fs] list: '${path}' disappeared or changed while listing`, { path, cause: error });
    }
    return fsError(error, 'list', path);
  }
}
