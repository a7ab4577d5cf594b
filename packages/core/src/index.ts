/**
 * Ketter core: verified, audited file transfers over pluggable adapters and stores.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './events.js';
export type * from './adapter.js';
export { SMALL_FILE_BYTES } from './adapter.js';
export * from './hash/algorithms.js';
export { createHasher, hashStream, type Hasher } from './hash/hasher.js';
export { Portal } from './portal.js';
export { normalizeRelative, joinPath, baseName, parentPath, pathsOverlap } from './paths.js';
export { ManifestEntries, type Manifest, type ManifestEntry, type ManifestRow } from './manifest.js';
export { scan, type ScanOptions, type SymlinkPolicy } from './scan.js';
export { plan, summarizePlan, DEFAULT_THRESHOLDS, type PlanSummary, type PlanOptions, type Thresholds, type TransferPlan, type StrategyChoice } from './plan.js';
export type * from './store.js';
export { reduceJob, applyEvent, filterJobs } from './store/job-state.js';
export { JsonlStore, type JsonlStoreOptions } from './store/jsonl/jsonl-store.js';
export type * from './engine/types.js';
export { runTransfer } from './engine/run-transfer.js';
export { transfer, previewTransfer } from './transfer.js';
export { runZipFirst } from './zip/run-zip-first.js';
export { extractArchive, type ExtractOptions, type ExtractedEntry } from './zip/extract.js';
export { recover, type RecoverOptions, type RecoveryReport, type RecoveredJob } from './recovery.js';
