import { createHash, randomUUID } from 'node:crypto';
import {
  EVENT_VERSION,
  KetterEventSchema,
  type Endpoint,
  type Envelope,
  type ErrorInfo,
  type EventMap,
  type EventType,
  type KetterEvent,
  type Mode,
  type Strategy,
} from '../events.js';

/** Options of {@link JobEventFactory}. */
export interface EventFactoryOptions {
  /** Defaults to a fresh UUID. */
  jobId?: string;
  /** Timestamp of the first event (seq 0). Defaults to now. */
  start?: Date | string;
  /** Milliseconds between consecutive events' timestamps. Default 1. */
  stepMs?: number;
  operator?: string;
  host?: string;
}

/** What an event of type `T` carries besides the envelope. */
export type EventBody<T extends EventType> = Omit<EventMap[T], keyof Envelope | 'type'>;

/**
 * Builds one job's events with valid envelopes: UUID ids, ISO timestamps `stepMs` apart,
 * `seq` from 0 without gaps. Every event is checked against {@link KetterEventSchema}, so
 * a test cannot feed a store something the engine would never emit.
 */
export class JobEventFactory {
  readonly jobId: string;
  readonly operator: string;
  readonly host: string;
  readonly #startMs: number;
  readonly #stepMs: number;
  #seq = 0;

  constructor(options: EventFactoryOptions = {}) {
    this.jobId = options.jobId ?? randomUUID();
    this.operator = options.operator ?? 'ingest-operator';
    this.host = options.host ?? 'automation-node-01';
    this.#startMs = options.start === undefined ? Date.now() : new Date(options.start).getTime();
    this.#stepMs = options.stepMs ?? 1;
  }

  /** The `seq` the next event gets. */
  get seq(): number {
    return this.#seq;
  }

  /** The next event of this job. */
  next<T extends EventType>(type: T, body: EventBody<T>): EventMap[T] {
    const seq = this.#seq;
    const event = KetterEventSchema.parse({
      v: EVENT_VERSION,
      id: randomUUID(),
      ts: new Date(this.#startMs + seq * this.#stepMs).toISOString(),
      jobId: this.jobId,
      seq,
      operator: this.operator,
      host: this.host,
      type,
      ...body,
    });
    this.#seq += 1;
    return event as EventMap[T];
  }
}

/** How a generated job ends; `running` stops after the copies, `created` after the first event. */
export type JobOutcome = 'succeeded' | 'failed' | 'cancelled' | 'running' | 'created';

/** Options of {@link jobStart}. */
export interface JobStartOptions {
  mode?: Mode;
  strategy?: Strategy;
  /** Files the plan counts. Default 3. */
  files?: number;
  /** Bytes per file. Default 1024. */
  fileBytes?: number;
  source?: Endpoint;
  destination?: Endpoint;
  /** Staging recorded by `preflight.passed`. Default `<destination>/.ketter-<job id>.partial`. */
  staging?: string;
  /** Pid recorded by `job.started`. Default 4242. */
  pid?: number;
}

/**
 * The first events of a job, up to the staging it creates, as the engine writes them:
 * `job.created`, `job.started`, `plan.decided` (a directory) and `preflight.passed`. Go on
 * with `f.next(...)` for what the job does next.
 */
export function jobStart(f: JobEventFactory, options: JobStartOptions = {}): KetterEvent[] {
  const strategy = options.strategy ?? 'DIRECT';
  const files = options.files ?? 3;
  const fileBytes = options.fileBytes ?? 1024;
  const totalBytes = files * fileBytes;
  const destination = options.destination ?? { portal: 'dubbing', path: 'incoming' };
  return [
    f.next('job.created', {
      mode: options.mode ?? 'copy',
      source: options.source ?? { portal: 'ingest', path: 'sessions/EP101' },
      destination,
      algorithm: 'sha256',
      onConflict: 'fail',
      requestedStrategy: 'auto',
    }),
    f.next('job.started', { pid: options.pid ?? 4242 }),
    f.next('plan.decided', {
      strategy,
      forced: false,
      rootKind: 'directory',
      nFiles: files,
      totalBytes,
      avgSizeBytes: files === 0 ? 0 : fileBytes,
      reason: strategy === 'ZIP_FIRST' ? 'many small files' : 'few or large files',
      thresholds: { files: 1000, avgSizeBytes: 4 * 1024 * 1024 },
    }),
    f.next('preflight.passed', {
      requiredBytes: totalBytes,
      freeBytes: null,
      staging: options.staging ?? `${destination.path === '' ? '' : `${destination.path}/`}.ketter-${f.jobId}.partial`,
    }),
  ];
}

/** Options of {@link jobEvents}. */
export interface JobEventsOptions extends EventFactoryOptions, Omit<JobStartOptions, 'staging' | 'pid'> {
  outcome?: JobOutcome;
  /** Error of a failed job. */
  error?: ErrorInfo;
}

/**
 * A realistic event trail of one job, as the engine writes it: created, started, plan,
 * preflight, a copy and a verification per file, then the outcome. With `files = n` a
 * succeeded job has `6 + 2n` events.
 */
export function jobEvents(options: JobEventsOptions = {}): KetterEvent[] {
  const f = new JobEventFactory(options);
  const outcome = options.outcome ?? 'succeeded';
  const strategy = options.strategy ?? 'DIRECT';
  const files = options.files ?? 3;
  const fileBytes = options.fileBytes ?? 1024;
  const totalBytes = files * fileBytes;
  const destination = options.destination ?? { portal: 'dubbing', path: 'incoming' };
  const events = jobStart(f, options);
  if (outcome === 'created') return events.slice(0, 1);
  for (let i = 0; i < files; i++) {
    const path = `EP101/audio/track-${String(i).padStart(5, '0')}.wav`;
    const hash = createHash('sha256').update(`${f.jobId}/${path}`).digest('hex');
    events.push(
      f.next('file.copied', { path, size: fileBytes, algorithm: 'sha256', hash, attempt: 1 }),
      f.next('file.verified', { path, size: fileBytes, algorithm: 'sha256', sourceHash: hash, destinationHash: hash, method: 'reread' }),
    );
  }
  const durationMs = f.seq * (options.stepMs ?? 1);
  switch (outcome) {
    case 'running':
      break;
    case 'succeeded':
      events.push(
        f.next('job.committed', { destination, files, bytes: totalBytes }),
        f.next('job.succeeded', { strategy, filesCopied: files, bytesCopied: totalBytes, durationMs, sourcesKept: [] }),
      );
      break;
    case 'failed':
      events.push(
        f.next('job.failed', {
          error: options.error ?? { code: 'CHECKSUM_MISMATCH', message: '[ketter] checksum mismatch', portal: 'dubbing', path: 'EP101/audio/track-00000.wav' },
          committed: false,
          durationMs,
        }),
      );
      break;
    case 'cancelled':
      events.push(f.next('job.cancelled', { committed: false, durationMs }));
      break;
  }
  return events;
}
