/**
 * Ketter adapter for SFTP hosts: a portal on a server you do not mount, over ssh2, with
 * mandatory host key verification and credentials passed by reference only.
 *
 * @packageDocumentation
 */
export { SftpAdapter } from './adapter.js';
export { SftpAdapterOptionsSchema, type SftpAdapterOptions, type HostKeyOptions, type AuthMethod } from './options.js';
export type { FromUrlOptions } from './url.js';
export { fingerprintOf, parseKnownHosts, knownHostsName, type KnownHostEntry } from './host-key.js';
