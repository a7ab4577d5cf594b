/**
 * Ketter adapter for local disks and mounted volumes.
 *
 * @packageDocumentation
 */
export { FsAdapter, type FsAdapterOptions } from './fs-adapter.js';
