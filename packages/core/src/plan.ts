import { z } from 'zod';
import { ErrorCode, KetterError } from './errors.js';
import type { Strategy } from './events.js';
import type { Manifest } from './manifest.js';

/** Strategy policy v1 defaults, from the studio labs. */
export const DEFAULT_THRESHOLDS = Object.freeze({ files: 1000, avgSizeBytes: 4 * 1024 * 1024 });

export interface Thresholds {
  /** ZIP_FIRST is considered above this many files. */
  files: number;
  /** …and only when the average file is smaller than this. */
  avgSizeBytes: number;
}

export type StrategyChoice = 'auto' | 'direct' | 'zip';

export interface PlanOptions {
  thresholds?: Partial<Thresholds>;
  /** Force a strategy; `auto` (default) applies the policy. */
  strategy?: StrategyChoice;
}

/** The strategy decision with its inputs and reason; also carries the manifest it was made from. */
export interface TransferPlan {
  readonly strategy: Strategy;
  readonly forced: boolean;
  readonly nFiles: number;
  readonly totalBytes: number;
  readonly avgSizeBytes: number;
  readonly reason: string;
  readonly thresholds: Thresholds;
  readonly manifest: Manifest;
}

/** A plan's decision and inputs without the manifest: what events, previews and `ketter plan` report. */
export interface PlanSummary {
  strategy: Strategy;
  forced: boolean;
  reason: string;
  rootKind: 'file' | 'directory';
  nFiles: number;
  totalBytes: number;
  avgSizeBytes: number;
  thresholds: Thresholds;
}

export function summarizePlan(decision: TransferPlan): PlanSummary {
  const { strategy, forced, reason, nFiles, totalBytes, avgSizeBytes, thresholds } = decision;
  return { strategy, forced, reason, rootKind: decision.manifest.rootKind, nFiles, totalBytes, avgSizeBytes, thresholds: { ...thresholds } };
}

const ThresholdsSchema = z.object({
  files: z.number().int().nonnegative(),
  avgSizeBytes: z.number().int().positive(),
});

/**
 * Decide DIRECT or ZIP_FIRST for a scanned source (strategy policy v1). Pure: no I/O,
 * no clock, no environment; callers read configuration and pass it in.
 */
export function plan(manifest: Manifest, options: PlanOptions = {}): TransferPlan {
  const parsed = ThresholdsSchema.safeParse({ ...DEFAULT_THRESHOLDS, ...stripUndefined(options.thresholds ?? {}) });
  if (!parsed.success) {
    throw new KetterError(ErrorCode.INVALID_REQUEST, `invalid thresholds: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  }
  const thresholds = parsed.data;
  const { nFiles, totalBytes } = manifest;
  const avgSizeBytes = nFiles === 0 ? 0 : totalBytes / nFiles;
  const base = { nFiles, totalBytes, avgSizeBytes, thresholds, manifest };
  const choice = options.strategy ?? 'auto';

  if (choice === 'direct') return { ...base, strategy: 'DIRECT', forced: true, reason: 'forced by caller (direct)' };
  if (choice === 'zip') {
    if (manifest.rootKind === 'file') {
      throw new KetterError(ErrorCode.INVALID_REQUEST, 'strategy zip needs a directory source; a single file is always copied directly');
    }
    return { ...base, strategy: 'ZIP_FIRST', forced: true, reason: 'forced by caller (zip)' };
  }
  if (manifest.rootKind === 'file') return { ...base, strategy: 'DIRECT', forced: false, reason: 'source is a single file' };
  const many = nFiles > thresholds.files;
  const small = avgSizeBytes < thresholds.avgSizeBytes;
  if (many && small) {
    return {
      ...base,
      strategy: 'ZIP_FIRST',
      forced: false,
      reason: `${nFiles} files > ${thresholds.files} and average ${Math.round(avgSizeBytes)} B < ${thresholds.avgSizeBytes} B`,
    };
  }
  return {
    ...base,
    strategy: 'DIRECT',
    forced: false,
    reason: many
      ? `average ${Math.round(avgSizeBytes)} B >= ${thresholds.avgSizeBytes} B`
      : `${nFiles} files <= ${thresholds.files}`,
  };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
