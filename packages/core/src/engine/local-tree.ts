import { laneWorkerCount, postWalk } from './local-lane.js';

/**
 * Entries a worker lists per answer: enough to make a message cheap per entry, few enough
 * for the workers to share a tree — and for what a worker holds until it answers (paths
 * promoted out of a small young generation while held): re-checking 200,000 files peaked
 * ~30 MiB higher with 2,048 than with 256. A larger directory is answered in pages of this
 * size: held whole, 20 directories of 10,000 files peaked ~25 MiB higher.
 */
const WALK_BUDGET = 256;

/** A worker's answer to a walk request (see `local-lane-worker.ts`). */
type WalkAnswer =
  | { paths: string[]; kinds: number[]; sizes: number[]; pending: string[] }
  | { error: { path: string; errno?: string; syscall?: string; message: string } };

const FILE = 0;

/** A walk that failed in a worker: errno-style, naming the root-relative path it failed on. */
export class LocalWalkError extends Error {
  readonly code: string | undefined;
  readonly syscall: string | undefined;
  constructor(
    /** Where the walk failed, relative to the adapter's root. */
    readonly path: string,
    errno: string | undefined,
    syscall: string | undefined,
    message: string,
  ) {
    super(message);
    this.code = errno;
    this.syscall = syscall;
  }
}

/**
 * Every regular file below the local directory `absDir` (root-relative `relDir`, for
 * messages), handed to `onFile` with its `/`-separated path relative to it and its size,
 * listed on the local lane's worker threads. The same walk as an adapter's listing —
 * `readdir` and an `lstat` per entry, links reported and never followed — but with
 * synchronous calls (a few µs each, against several times that in main-thread work per
 * asynchronous call), shared between the workers a directory frontier at a time. Worth it
 * where the workers are already running; it spawns them otherwise. Nothing is collected:
 * the walk holds about one page (`WALK_BUDGET` entries) of each worker at a time, however
 * large the tree or a directory in it.
 *
 * Throws a {@link LocalWalkError} when `absDir` is not a directory, a directory cannot be
 * read or an entry vanishes.
 */
export async function walkLocalFiles(absDir: string, relDir: string, onFile: (path: string, size: number) => void): Promise<void> {
  const frontier: string[] = [''];
  const slots = laneWorkerCount();
  let inFlight = 0;
  let failure: { error: unknown } | null = null;
  await new Promise<void>((resolve) => {
    const take = (answer: WalkAnswer): void => {
      // After a failure the visitor is handed nothing more: pages of a directory still
      // being read, and answers to requests in flight, are dropped.
      if (failure !== null) return;
      if ('error' in answer) {
        const { path, errno, syscall, message } = answer.error;
        // The worker names absolute paths; errors name root-relative ones only.
        const rel = [relDir, path].filter((p) => p !== '').join('/');
        failure ??= { error: new LocalWalkError(rel, errno, syscall, message.split(absDir).join(relDir)) };
        return;
      }
      const { paths, kinds, sizes: bytes, pending } = answer;
      try {
        for (let i = 0; i < paths.length; i++) if (kinds[i] === FILE) onFile(paths[i] as string, bytes[i] as number);
      } catch (error) {
        failure ??= { error };
        return;
      }
      for (const dir of pending) frontier.push(dir);
    };
    // Hand out the frontier in equal shares to free workers; each answer brings more of it.
    const pump = (): void => {
      while (failure === null && frontier.length > 0 && inFlight < slots) {
        const dirs = frontier.splice(0, Math.ceil(frontier.length / (slots - inFlight)));
        inFlight++;
        postWalk({ root: absDir, dirs, budget: WALK_BUDGET }, (page) => take(page as WalkAnswer))
          .then(
            (answer) => take(answer as WalkAnswer),
            (error: unknown) => {
              failure ??= { error };
            },
          )
          .finally(() => {
            inFlight--;
            pump();
          });
      }
      if (inFlight === 0) resolve();
    };
    pump();
  });
  if (failure !== null) throw (failure as { error: unknown }).error;
}
