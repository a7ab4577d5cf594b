import type { ErrorInfo, JobStatus, JobSummary, Mode, Strategy } from '@ketter/core';

/** Columns of the jobs table that make up a {@link JobSummary} and its chain head. */
export const JOB_COLUMNS =
  'id, status, mode, source_portal, source_path, destination_portal, destination_path, strategy, n_files, total_bytes, ' +
  'files_copied, bytes_copied, operator, host, created_ts, finished_ts, duration_ms, error, staging, last_seq, last_hash';

/** A jobs row as pg returns it (bigint columns arrive as strings). */
export interface JobRow {
  id: string;
  status: JobStatus;
  mode: Mode;
  source_portal: string;
  source_path: string;
  destination_portal: string;
  destination_path: string;
  strategy: Strategy | null;
  n_files: string;
  total_bytes: string;
  files_copied: string;
  bytes_copied: string;
  operator: string;
  host: string;
  created_ts: string;
  finished_ts: string | null;
  duration_ms: string | null;
  error: ErrorInfo | null;
  staging: string[];
  last_seq: number;
  last_hash: string;
}

export function rowToSummary(row: JobRow): JobSummary {
  return {
    id: row.id,
    status: row.status,
    mode: row.mode,
    source: { portal: row.source_portal, path: row.source_path },
    destination: { portal: row.destination_portal, path: row.destination_path },
    strategy: row.strategy,
    nFiles: Number(row.n_files),
    totalBytes: Number(row.total_bytes),
    filesCopied: Number(row.files_copied),
    bytesCopied: Number(row.bytes_copied),
    operator: row.operator,
    host: row.host,
    createdAt: row.created_ts,
    finishedAt: row.finished_ts,
    durationMs: row.duration_ms === null ? null : Number(row.duration_ms),
    error: row.error,
    staging: row.staging,
  };
}

/** The record `jsonb_to_recordset` reads when upserting jobs rows. */
export function summaryToRecord(job: JobSummary, lastSeq: number, lastHash: string): Record<string, unknown> {
  return {
    id: job.id,
    status: job.status,
    mode: job.mode,
    source_portal: job.source.portal,
    source_path: job.source.path,
    destination_portal: job.destination.portal,
    destination_path: job.destination.path,
    strategy: job.strategy,
    n_files: job.nFiles,
    total_bytes: job.totalBytes,
    files_copied: job.filesCopied,
    bytes_copied: job.bytesCopied,
    operator: job.operator,
    host: job.host,
    created_ts: job.createdAt,
    finished_ts: job.finishedAt,
    duration_ms: job.durationMs,
    error: job.error,
    staging: job.staging,
    last_seq: lastSeq,
    last_hash: lastHash,
  };
}

/** Column list of the record type matching {@link summaryToRecord}. */
export const JOB_RECORD_TYPE =
  'id text, status text, mode text, source_portal text, source_path text, destination_portal text, destination_path text, ' +
  'strategy text, n_files bigint, total_bytes bigint, files_copied bigint, bytes_copied bigint, operator text, host text, ' +
  'created_ts text, finished_ts text, duration_ms bigint, error jsonb, staging jsonb, last_seq integer, last_hash text';
