import type { HashAlgorithm } from '../hash/algorithms.js';
import type { EventMap, EventType, KetterEvent, Mode, Strategy } from '../events.js';
import type { Thresholds, StrategyChoice } from '../plan.js';
import type { Portal } from '../portal.js';
import type { SymlinkPolicy } from '../scan.js';
import type { Store } from '../store.js';

/** What to do when `destination/<name>` already exists. */
export type ConflictPolicy = 'fail' | 'skip-identical';

/** A place named by a job: a portal and a path relative to its root. */
export interface Location {
  portal: Portal;
  path: string;
}

/** One transfer: copy or move `source` into the directory `destination`. */
export interface TransferRequest {
  /** Job id; a random UUID when absent. */
  id?: string;
  mode: Mode;
  source: Location;
  /** The destination directory: the source lands at `destination/<basename(source)>`. */
  destination: Location;
  /** Hash algorithm for source and destination; `sha256` by default. */
  algorithm?: HashAlgorithm;
  /** `fail` by default. */
  onConflict?: ConflictPolicy;
  /** Symlinks inside the source tree; `fail` by default. */
  symlinks?: SymlinkPolicy;
}

/** Per-file retry of transient faults, with exponential backoff and full jitter. */
export interface RetryOptions {
  /** Total attempts per file, including the first (default 3). */
  attempts?: number;
  /** First backoff in ms (default 200). */
  baseDelayMs?: number;
  /** Cap of one backoff in ms (default 5000). */
  maxDelayMs?: number;
}

/** A typed event hook; throwing from a hook never fails a job (the error is reported to `onHookError`). */
export type EventHook = (event: KetterEvent) => void;

/** Runtime context of a job: where events go, how to stop it, how hard to push. */
export interface RunContext {
  /** Persists events and provides locks. Required: a job without an audit trail is not a Ketter job. */
  store: Store;
  signal?: AbortSignal;
  /** Called synchronously for every event, progress included. */
  onEvent?: EventHook;
  /** Called when an `onEvent` hook throws. Defaults to ignoring. */
  onHookError?: (error: unknown, event: KetterEvent) => void;
  /** Recorded in every event; defaults to the OS user. */
  operator?: string;
  /** Recorded in every event; defaults to the hostname. */
  host?: string;
  /** Files in flight at once for many-file trees (default 16 between local filesystems, 64 when either end is remote). */
  concurrency?: number;
  retry?: RetryOptions;
  /** Minimum interval between `job.progress` events (default 250 ms). */
  progressIntervalMs?: number;
  /** Largest batch of events handed to the store at once (default 1000). */
  eventBatchSize?: number;
}

/** Context of `runTransfer`/`runZipFirst`: the request plus the runtime context. */
export interface TransferContext extends RunContext {
  request: TransferRequest;
}

/** Strategy selection for {@link transfer}. */
export interface StrategyOptions {
  strategy?: StrategyChoice;
  thresholds?: Partial<Thresholds>;
}

/** What a finished job reports. */
export interface TransferResult {
  jobId: string;
  status: 'succeeded';
  mode: Mode;
  strategy: Strategy;
  filesCopied: number;
  bytesCopied: number;
  durationMs: number;
  /** Where the source landed, relative to the destination portal. */
  destination: { portal: string; path: string };
  /** MOVE: source files kept because they changed after commit (nothing is lost; they are not deleted). */
  sourcesKept: string[];
  /** True when `skip-identical` found the destination already identical and copied nothing. */
  skipped: boolean;
}

export type { EventMap, EventType };

/** What `previewTransfer` reports: the decision and the preflight outcome, with no writes and no job recorded. */
export interface TransferPreview {
  strategy: Strategy;
  forced: boolean;
  reason: string;
  rootKind: 'file' | 'directory';
  nFiles: number;
  totalBytes: number;
  avgSizeBytes: number;
  thresholds: { files: number; avgSizeBytes: number };
  /** Where the source would land. */
  destination: { portal: string; path: string };
  requiredBytes: number;
  freeBytes: number | null;
  /** The preflight failure the job would hit, if any. */
  error: { code: string; message: string } | null;
}
