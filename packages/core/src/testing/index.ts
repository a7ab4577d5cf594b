/**
 * Conformance suites and test helpers for adapter and store authors.
 *
 * @packageDocumentation
 */
export { describeAdapterConformance, type AdapterSuiteOptions, type AdapterFixture } from './adapter-suite.js';
export { describeStoreConformance, type StoreSuiteOptions } from './store-suite.js';
export { FaultyAdapter, type Fault, type FaultOperation } from './faulty-adapter.js';
export { jobEvents, JobEventFactory } from './event-factory.js';
