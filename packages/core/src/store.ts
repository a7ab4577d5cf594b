import type { Endpoint, ErrorInfo, KetterEvent, Mode, Strategy } from './events.js';

/** Where a job is in its life, derived from its events. */
export type JobStatus = 'created' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

/** Filters for {@link Store.listJobs}; all optional, combined with AND. */
export interface JobFilter {
  /** Most recent first; defaults to 50. */
  limit?: number;
  mode?: Mode;
  status?: JobStatus;
  strategy?: Strategy;
  /**
   * Only jobs that may have left staging at their destination (`staging` not empty): what
   * recovery looks for, without reading every ended job's events.
   */
  withStaging?: boolean;
}

/** One row of job history. */
export interface JobSummary {
  id: string;
  status: JobStatus;
  mode: Mode;
  source: Endpoint;
  destination: Endpoint;
  strategy: Strategy | null;
  nFiles: number;
  totalBytes: number;
  filesCopied: number;
  bytesCopied: number;
  operator: string;
  host: string;
  createdAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  error: ErrorInfo | null;
  /**
   * Hidden paths the job created at its destination (staging, and a ZIP_FIRST archive) that
   * are not on record as removed, relative to the destination portal. Empty once the job
   * committed (its staging became the destination) or removed them; a job that ended with
   * paths here failed to roll back, or kept its staging to be resumed, and recovery removes
   * them.
   */
  staging: string[];
}

/** A job with its full event trail. */
export interface JobDetail extends JobSummary {
  events: KetterEvent[];
}

/** What a job asks to lock: storage-qualified keys from {@link Portal.lockKey}. */
export interface LockRequest {
  jobId: string;
  source: string;
  destination: string;
}

/** A held lock; release it exactly once when the job ends. */
export interface LockLease {
  readonly jobId: string;
  release(): Promise<void>;
}

/** A currently held lock, as reported for recovery and `jobs` views. */
export interface HeldLock {
  jobId: string;
  source: string;
  destination: string;
  /** Whether the holder is known to be alive (process alive, lease not expired). */
  alive: boolean;
}

/** Result of checking the audit trail's hash chain. */
export interface AuditReport {
  ok: boolean;
  /** Records checked. */
  records: number;
  /** The first record that fails the check, when `ok` is false. */
  firstBad?: {
    /** Where it is, e.g. `events-2026-11-21.jsonl:42` or `job_events#1234`. */
    location: string;
    eventId?: string;
    jobId?: string;
    reason: string;
  };
}

/**
 * Persistence of the audit trail and of locks. Stores append events (in batches: the
 * engine never writes one event per round trip), derive job state from them, and
 * provide locks that exclude overlapping paths across processes.
 */
export interface Store {
  /** Backend family, e.g. `jsonl` or `postgres`. */
  readonly kind: string;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Append events atomically as a batch, in order. Ephemeral events are not passed here. */
  append(events: readonly KetterEvent[]): Promise<void>;
  getJob(id: string): Promise<JobDetail | null>;
  listJobs(filter?: JobFilter): Promise<JobSummary[]>;
  /**
   * Lock a job's source and destination. Fails fast with `SOURCE_LOCKED` or
   * `DESTINATION_LOCKED` when either overlaps (same path, ancestor or descendant) a path
   * held by another live job; never waits.
   */
  acquireLocks(request: LockRequest): Promise<LockLease>;
  /** Locks currently recorded, including those of dead holders not yet reclaimed. */
  listLocks(): Promise<HeldLock[]>;
  verifyAudit(): Promise<AuditReport>;
}
