/**
 * Conformance suites and test helpers for adapter and store authors.
 *
 * @packageDocumentation
 */
export {
  describeAdapterConformance,
  type AdapterSuiteOptions,
  type AdapterSuiteSkips,
  type AdapterFixture,
  type TestApi,
} from './adapter-suite.js';
export { describeStoreConformance, type StoreSuiteOptions, type StoreFixture } from './store-suite.js';
export { FaultyAdapter, type Fault, type FaultOperation, type FaultKind, type FiredFault } from './faulty-adapter.js';
export { jobEvents, jobStart, JobEventFactory, type JobStartOptions } from './event-factory.js';
export {
  snapshotTree,
  checkTransferInvariants,
  assertTransferInvariants,
  TransferInvariantError,
  type TreeSnapshot,
  type FileDigest,
  type TransferOutcome,
  type TransferInvariantInput,
  type InvariantRule,
  type InvariantViolation,
} from './invariants.js';
