import { DEFAULT_HASH, HASH_ALGORITHMS, type HashAlgorithm, type Thresholds } from '@ketter/core';
import type { Config } from './config.js';
import { UsageError } from './exit.js';

/** Environment variables that override the configured ZIP_FIRST thresholds. */
export const THRESHOLD_ENV = {
  files: 'KETTER_ZIP_THRESHOLD_FILES',
  avgSizeBytes: 'KETTER_ZIP_THRESHOLD_AVG_SIZE_BYTES',
} as const;

/** Threshold values given on the command line, still as text. */
export interface ThresholdFlags {
  zipThresholdFiles?: string;
  zipThresholdAvgSize?: string;
}

/**
 * Thresholds for `plan()`: command-line flags, then the environment, then the config
 * file; anything left unset falls back to the core defaults. The CLI is the only layer
 * that reads the environment.
 */
export function resolveThresholds(flags: ThresholdFlags, env: Record<string, string | undefined>, config: Config): Partial<Thresholds> {
  const pick = (key: keyof Thresholds, flag: string | undefined, flagName: string, min: number): number | undefined => {
    if (flag !== undefined) return parseCount(flag, flagName, min);
    const fromEnv = env[THRESHOLD_ENV[key]];
    if (fromEnv !== undefined && fromEnv !== '') return parseCount(fromEnv, `environment variable ${THRESHOLD_ENV[key]}`, min);
    return config.thresholds?.[key];
  };
  const out: Partial<Thresholds> = {};
  const files = pick('files', flags.zipThresholdFiles, '--zip-threshold-files', 0);
  const avgSizeBytes = pick('avgSizeBytes', flags.zipThresholdAvgSize, '--zip-threshold-avg-size', 1);
  if (files !== undefined) out.files = files;
  if (avgSizeBytes !== undefined) out.avgSizeBytes = avgSizeBytes;
  return out;
}

/** A whole number ≥ `min`, written in plain digits. */
export function parseCount(text: string, what: string, min = 0): number {
  const trimmed = text.trim();
  const value = /^\d+$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`${what}: expected a whole number >= ${min}, got '${text}'`);
  }
  return value;
}

export function resolveHash(flag: string | undefined, config: Config): HashAlgorithm {
  const value = flag ?? config.hash ?? DEFAULT_HASH;
  if (!(HASH_ALGORITHMS as readonly string[]).includes(value)) {
    throw new UsageError(`--hash: unknown algorithm '${value}' (one of ${HASH_ALGORITHMS.join(', ')})`);
  }
  return value as HashAlgorithm;
}

export function resolveConcurrency(flag: string | undefined, config: Config): number | undefined {
  if (flag !== undefined) return parseCount(flag, '--concurrency', 1);
  return config.concurrency;
}
