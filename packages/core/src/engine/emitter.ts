import { randomUUID } from 'node:crypto';
import { EPHEMERAL_EVENTS, EVENT_VERSION, TERMINAL_EVENTS, type EventPayload, type KetterEvent, type Phase } from '../events.js';
import { ErrorCode, isTransient, KetterError } from '../errors.js';
import { backoffDelay, sleep } from './retry.js';

const STORE_ATTEMPTS = 4;
const STORE_RETRY = { attempts: STORE_ATTEMPTS, baseDelayMs: 250, maxDelayMs: 2000 };
import type { Store } from '../store.js';
import type { EventHook } from './types.js';

export interface EmitterOptions {
  jobId: string;
  store: Store;
  operator: string;
  host: string;
  onEvent?: EventHook;
  onHookError?: (error: unknown, event: KetterEvent) => void;
  batchSize: number;
  /** Longest time a persistent event waits in the buffer. */
  flushIntervalMs: number;
  progressIntervalMs: number;
  /** Next sequence number, for a job resumed with events already recorded. */
  startSeq?: number;
}

/**
 * An emitter that adds events to a job already in the store (recovery marking a dead job
 * interrupted, a resume taking over its staging): sequence numbers continue after its last event.
 */
export function continueJob(
  job: { id: string; events: readonly KetterEvent[] },
  options: { store: Store; operator: string; host: string; onEvent?: EventHook },
): JobEmitter {
  return new JobEmitter({
    jobId: job.id,
    ...options,
    batchSize: 1000,
    flushIntervalMs: 50,
    progressIntervalMs: 1000,
    startSeq: (job.events.at(-1)?.seq ?? -1) + 1,
  });
}

/** Counters behind `job.progress`. */
export interface ProgressCounters {
  phase: Phase;
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

/**
 * Stamps events with the envelope, hands them to hooks at once, and persists them to the
 * store in ordered batches: per-file events never cost a store round trip each.
 */
/** Events a job may hold for the store before its per-file loops wait (see `caughtUp`). */
export const MAX_UNWRITTEN_EVENTS = 5_000;

export class JobEmitter {
  readonly #o: EmitterOptions;
  #seq: number;
  #buffer: KetterEvent[] = [];
  /** Persistent events emitted and not yet in the store. */
  #unwritten = 0;
  #writing: Promise<void> = Promise.resolve();
  #failure: unknown = null;
  #timer: NodeJS.Timeout | null = null;
  #progressTimer: NodeJS.Timeout | null = null;
  #progressSent = '';
  readonly progress: ProgressCounters = { phase: 'scan', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 };

  constructor(options: EmitterOptions) {
    this.#o = options;
    this.#seq = options.startSeq ?? 0;
  }

  get jobId(): string {
    return this.#o.jobId;
  }

  /** Emit one event. Persistent events are buffered; terminal ones flush the buffer. */
  emit<P extends EventPayload>(payload: P): KetterEvent {
    const event = {
      v: EVENT_VERSION,
      id: randomUUID(),
      ts: new Date().toISOString(),
      jobId: this.#o.jobId,
      seq: EPHEMERAL_EVENTS.has(payload.type) ? this.#seq : this.#seq++,
      operator: this.#o.operator,
      host: this.#o.host,
      ...payload,
    } as KetterEvent;
    this.#callHook(event);
    if (!EPHEMERAL_EVENTS.has(event.type)) {
      this.#buffer.push(event);
      this.#unwritten += 1;
      if (this.#buffer.length >= this.#o.batchSize) void this.#drain();
      else this.#timer ??= setTimeout(() => void this.#drain(), this.#o.flushIntervalMs);
    }
    return event;
  }

  /**
   * Wait until every event emitted so far is in the store. Called before any step that
   * must be on record first (commit, deleting sources) and at the end of the job.
   */
  async flush(): Promise<void> {
    await this.#drain();
    await this.#writing;
    if (this.#failure) throw this.#storeError(this.#failure);
  }

  /**
   * Resolves at once unless the store has fallen more than {@link MAX_UNWRITTEN_EVENTS}
   * events behind; then once it has caught up. Loops that emit per file await it, so a store
   * slower than the copy slows the job instead of piling events up in memory.
   */
  caughtUp(): Promise<void> {
    if (this.#unwritten <= MAX_UNWRITTEN_EVENTS || this.#failure) return Promise.resolve();
    return this.#drain();
  }

  /** Start periodic `job.progress` events (only when something changed). */
  startProgress(): void {
    if (this.#progressTimer) return;
    this.#progressTimer = setInterval(() => this.emitProgress(), this.#o.progressIntervalMs);
    this.#progressTimer.unref();
  }

  /** Emit `job.progress` now if the counters changed since the last one. */
  emitProgress(): void {
    const p = this.progress;
    const key = `${p.phase}|${p.filesDone}|${p.bytesDone}|${p.filesTotal}|${p.bytesTotal}`;
    if (key === this.#progressSent) return;
    this.#progressSent = key;
    this.emit({ type: 'job.progress', ...p });
  }

  setPhase(phase: Phase): void {
    this.progress.phase = phase;
    this.emitProgress();
  }

  stopProgress(): void {
    if (this.#progressTimer) clearInterval(this.#progressTimer);
    this.#progressTimer = null;
  }

  /** Whether the last emitted persistent event ended the job. */
  isTerminal(event: KetterEvent): boolean {
    return TERMINAL_EVENTS.has(event.type);
  }

  #callHook(event: KetterEvent): void {
    if (!this.#o.onEvent) return;
    try {
      this.#o.onEvent(event);
    } catch (error) {
      this.#o.onHookError?.(error, event);
    }
  }

  #drain(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#buffer.length === 0) return this.#writing;
    const batch = this.#buffer;
    this.#buffer = [];
    // Chained so batches reach the store in emission order even when flushes overlap.
    this.#writing = this.#writing.then(async () => {
      if (this.#failure) return;
      for (let i = 0; i < batch.length; i += this.#o.batchSize) {
        try {
          const part = batch.slice(i, i + this.#o.batchSize);
          await this.#appendWithRetry(part);
          this.#unwritten -= part.length;
        } catch (error) {
          this.#failure = error;
          return;
        }
      }
    });
    return this.#writing;
  }

  /** A dropped store connection is retried a few times before the job gives up on it. */
  async #appendWithRetry(events: KetterEvent[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#o.store.append(events);
      } catch (error) {
        if (attempt >= STORE_ATTEMPTS || !isTransient(error)) throw error;
        await sleep(backoffDelay(attempt, STORE_RETRY));
      }
    }
  }

  #storeError(cause: unknown): KetterError {
    if (cause instanceof KetterError) return cause;
    return new KetterError(ErrorCode.STORE_ERROR, `audit store write failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
