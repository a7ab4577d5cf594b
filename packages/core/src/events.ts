import { z } from 'zod';
import { HASH_ALGORITHMS } from './hash/algorithms.js';
import { ErrorCode } from './errors.js';

/** Version of the event envelope; bumped only for incompatible changes. */
export const EVENT_VERSION = 1;

/** Event type names. An `as const` object so they can be iterated and narrowed. */
export const EventType = {
  JobCreated: 'job.created',
  JobStarted: 'job.started',
  JobResumed: 'job.resumed',
  PlanDecided: 'plan.decided',
  PreflightPassed: 'preflight.passed',
  PreflightFailed: 'preflight.failed',
  FileCopied: 'file.copied',
  FileVerified: 'file.verified',
  ArchivePacked: 'archive.packed',
  ArchiveExtracted: 'archive.extracted',
  JobCommitted: 'job.committed',
  SourceDeleted: 'source.deleted',
  RetryScheduled: 'retry.scheduled',
  JobProgress: 'job.progress',
  JobSucceeded: 'job.succeeded',
  JobFailed: 'job.failed',
  JobCancelled: 'job.cancelled',
  JobInterrupted: 'job.interrupted',
  StagingRemoved: 'staging.removed',
} as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export const ModeSchema = z.enum(['copy', 'move']);
export type Mode = z.infer<typeof ModeSchema>;
export const StrategySchema = z.enum(['DIRECT', 'ZIP_FIRST']);
export type Strategy = z.infer<typeof StrategySchema>;
export const HashAlgorithmSchema = z.enum(HASH_ALGORITHMS);
export const EndpointSchema = z.object({ portal: z.string(), path: z.string() });
export type Endpoint = z.infer<typeof EndpointSchema>;
export const ErrorInfoSchema = z.object({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  portal: z.string().optional(),
  path: z.string().optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfoSchema>;

/** Fields every event carries. `seq` orders a job's events from 0 with no gaps. */
export const EnvelopeSchema = z.object({
  v: z.literal(EVENT_VERSION),
  id: z.string().uuid(),
  ts: z.string().datetime({ offset: true }),
  jobId: z.string().min(1),
  seq: z.number().int().nonnegative(),
  /** The OS user or configured identity that ran the job. */
  operator: z.string(),
  host: z.string(),
});
export type Envelope = z.infer<typeof EnvelopeSchema>;

const nonNegInt = z.number().int().nonnegative();
const hashHex = z.string().regex(/^[0-9a-f]+$/);

/** How a staged file's hash was obtained at the destination. */
/**
 * How a staged file's hash was obtained at the destination: `reread` (read back and
 * hashed), `server` (hashed by the storage side), `existing` (an identical file already at
 * the destination, skip-identical), `resumed` (verified by the interrupted job this one
 * resumed; size and mtime unchanged since).
 */
export const VerifyMethodSchema = z.enum(['reread', 'server', 'existing', 'resumed']);
export type VerifyMethod = z.infer<typeof VerifyMethodSchema>;

export const PhaseSchema = z.enum(['scan', 'preflight', 'stage', 'pack', 'extract', 'verify', 'commit', 'delete-source']);
export type Phase = z.infer<typeof PhaseSchema>;

const event = <T extends EventType, S extends z.ZodRawShape>(type: T, shape: S) =>
  EnvelopeSchema.extend({ type: z.literal(type), ...shape });

export const JobCreatedSchema = event(EventType.JobCreated, {
  mode: ModeSchema,
  source: EndpointSchema,
  destination: EndpointSchema,
  algorithm: HashAlgorithmSchema,
  onConflict: z.enum(['fail', 'skip-identical']),
  /** Strategy the caller asked for: `auto` lets the plan decide. */
  requestedStrategy: z.enum(['auto', 'direct', 'zip']),
});
export const JobStartedSchema = event(EventType.JobStarted, { pid: nonNegInt });
/** A job that takes over the staging of an interrupted one. */
export const JobResumedSchema = event(EventType.JobResumed, {
  fromJobId: z.string(),
  staging: z.string(),
  /** Files whose earlier verification carries over. */
  filesVerified: nonNegInt,
});
export const PlanDecidedSchema = event(EventType.PlanDecided, {
  strategy: StrategySchema,
  forced: z.boolean(),
  rootKind: z.enum(['file', 'directory']),
  nFiles: nonNegInt,
  totalBytes: nonNegInt,
  avgSizeBytes: z.number().nonnegative(),
  reason: z.string(),
  thresholds: z.object({ files: nonNegInt, avgSizeBytes: nonNegInt }),
});
export const PreflightPassedSchema = event(EventType.PreflightPassed, {
  requiredBytes: nonNegInt,
  /** Free bytes at the destination, or null where the adapter cannot tell. */
  freeBytes: nonNegInt.nullable(),
  staging: z.string(),
});
export const PreflightFailedSchema = event(EventType.PreflightFailed, { error: ErrorInfoSchema });
export const FileCopiedSchema = event(EventType.FileCopied, {
  path: z.string(),
  size: nonNegInt,
  algorithm: HashAlgorithmSchema,
  hash: hashHex,
  attempt: z.number().int().positive(),
  /** The source file's mtime when it was read; lets a later job resume without re-reading it. */
  sourceMtimeMs: z.number().optional(),
});
export const FileVerifiedSchema = event(EventType.FileVerified, {
  path: z.string(),
  size: nonNegInt,
  algorithm: HashAlgorithmSchema,
  sourceHash: hashHex,
  destinationHash: hashHex,
  method: VerifyMethodSchema,
});
export const ArchivePackedSchema = event(EventType.ArchivePacked, {
  files: nonNegInt,
  bytes: nonNegInt,
  archive: z.string(),
  archiveBytes: nonNegInt,
  algorithm: HashAlgorithmSchema,
  archiveHash: hashHex,
});
export const ArchiveExtractedSchema = event(EventType.ArchiveExtracted, {
  files: nonNegInt,
  bytes: nonNegInt,
  algorithm: HashAlgorithmSchema,
  archiveHash: hashHex,
  method: z.enum(['adapter', 'server']),
});
export const JobCommittedSchema = event(EventType.JobCommitted, {
  destination: EndpointSchema,
  files: nonNegInt,
  bytes: nonNegInt,
});
export const SourceDeletedSchema = event(EventType.SourceDeleted, {
  path: z.string(),
  kind: z.enum(['file', 'directory']),
});
export const RetryScheduledSchema = event(EventType.RetryScheduled, {
  path: z.string(),
  attempt: z.number().int().positive(),
  maxAttempts: z.number().int().positive(),
  delayMs: nonNegInt,
  error: ErrorInfoSchema,
});
export const JobProgressSchema = event(EventType.JobProgress, {
  phase: PhaseSchema,
  filesDone: nonNegInt,
  filesTotal: nonNegInt,
  bytesDone: nonNegInt,
  bytesTotal: nonNegInt,
});
export const JobSucceededSchema = event(EventType.JobSucceeded, {
  strategy: StrategySchema,
  filesCopied: nonNegInt,
  bytesCopied: nonNegInt,
  durationMs: nonNegInt,
  /** Source files MOVE kept because they changed after commit (empty for COPY). */
  sourcesKept: z.array(z.string()).default([]),
});
export const JobFailedSchema = event(EventType.JobFailed, {
  error: ErrorInfoSchema,
  /** Whether the destination was already committed when the failure happened. */
  committed: z.boolean(),
  durationMs: nonNegInt,
});
export const JobCancelledSchema = event(EventType.JobCancelled, { committed: z.boolean(), durationMs: nonNegInt });
export const JobInterruptedSchema = event(EventType.JobInterrupted, {
  reason: z.string(),
  /** Staging recovery found in place and kept for the same request to resume (absent: unchanged). */
  staging: z.array(z.string()).optional(),
});
export const StagingRemovedSchema = event(EventType.StagingRemoved, { portal: z.string(), path: z.string() });

/** Schema of every event, discriminated by `type`. */
export const KetterEventSchema = z.discriminatedUnion('type', [
  JobCreatedSchema,
  JobStartedSchema,
  JobResumedSchema,
  PlanDecidedSchema,
  PreflightPassedSchema,
  PreflightFailedSchema,
  FileCopiedSchema,
  FileVerifiedSchema,
  ArchivePackedSchema,
  ArchiveExtractedSchema,
  JobCommittedSchema,
  SourceDeletedSchema,
  RetryScheduledSchema,
  JobProgressSchema,
  JobSucceededSchema,
  JobFailedSchema,
  JobCancelledSchema,
  JobInterruptedSchema,
  StagingRemovedSchema,
]);
export type KetterEvent = z.infer<typeof KetterEventSchema>;

/** Maps each event type to its event, for typed handlers: `EventMap['file.verified']`. */
export type EventMap = { [E in KetterEvent as E['type']]: E };

/** Per-type schemas, for validating one kind of event. */
export const EventSchemas = Object.fromEntries(
  KetterEventSchema.options.map((s) => [s.shape.type.value, s]),
) as unknown as { [K in EventType]: z.ZodType<EventMap[K]> };

/** An event's payload: what the engine supplies; the envelope is added when it is emitted. */
export type EventPayload<E extends KetterEvent = KetterEvent> = E extends KetterEvent ? Omit<E, keyof Envelope> : never;

/** Events that are not persisted: they only feed hooks and progress bars. */
export const EPHEMERAL_EVENTS: ReadonlySet<EventType> = new Set([EventType.JobProgress]);

/** Events that end a job; the job's state is final once one is recorded. */
export const TERMINAL_EVENTS: ReadonlySet<EventType> = new Set([
  EventType.JobSucceeded,
  EventType.JobFailed,
  EventType.JobCancelled,
  EventType.JobInterrupted,
]);
