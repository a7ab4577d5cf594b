import { Worker } from 'node:worker_threads';
import type { HashAlgorithm } from './algorithms.js';

/**
 * One worker thread that hashes chunks handed to it, so a second hash (the destination's,
 * while the source's runs on the main thread) uses the second core. Inline source keeps it
 * working from both the bundled package and the TypeScript sources; only `node:crypto`
 * algorithms run here.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'init') hashes.set(m.id, createHash(m.algorithm));
  else if (m.op === 'update') hashes.get(m.id)?.update(new Uint8Array(m.buffer, m.offset, m.length));
  else if (m.op === 'digest') {
    const h = hashes.get(m.id);
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, digest: h ? h.digest('hex') : null });
  } else if (m.op === 'drop') hashes.delete(m.id);
});
`;

/** Algorithms the worker computes (OpenSSL through node:crypto). */
export const OFF_THREAD_ALGORITHMS: ReadonlySet<HashAlgorithm> = new Set(['sha256', 'md5']);

let worker: Worker | null = null;
let users = 0;
let nextId = 1;
const waiting = new Map<number, { resolve: (digest: string) => void; reject: (error: Error) => void }>();

function acquire(): Worker {
  if (!worker) {
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.on('message', (m: { id: number; digest: string | null }) => {
      const entry = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.digest === null) entry?.reject(new Error('hash worker lost the hash state'));
      else entry?.resolve(m.digest);
    });
    const fail = (error: Error) => {
      for (const entry of waiting.values()) entry.reject(error);
      waiting.clear();
      if (worker === w) worker = null;
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`hash worker exited (${code})`)));
    worker = w;
  }
  users += 1;
  worker.ref();
  return worker;
}

function release(): void {
  users -= 1;
  // Kept for the next file, but never what keeps the process alive.
  if (users === 0) worker?.unref();
}

/** An incremental hash computed on the worker thread. Chunks are moved there, not copied, when they own their memory. */
export class OffThreadHasher {
  readonly #id = nextId++;
  readonly #worker: Worker;
  #done = false;

  constructor(readonly algorithm: HashAlgorithm) {
    if (!OFF_THREAD_ALGORITHMS.has(algorithm)) throw new Error(`${algorithm} is not hashed off-thread`);
    this.#worker = acquire();
    this.#worker.postMessage({ op: 'init', id: this.#id, algorithm });
  }

  /** Hand a chunk to the worker. The chunk must not be used afterwards: its memory may move. */
  update(chunk: Uint8Array): void {
    const owns = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && chunk.buffer instanceof ArrayBuffer;
    const buffer = owns ? (chunk.buffer as ArrayBuffer) : chunk.slice().buffer;
    this.#worker.postMessage({ op: 'update', id: this.#id, buffer, offset: 0, length: chunk.byteLength }, [buffer]);
  }

  digest(): Promise<string> {
    this.#done = true;
    const promise = new Promise<string>((resolve, reject) => waiting.set(this.#id, { resolve, reject }));
    this.#worker.postMessage({ op: 'digest', id: this.#id });
    return promise.finally(release);
  }

  /** Abandon the hash (on failure). */
  dispose(): void {
    if (this.#done) return;
    this.#done = true;
    this.#worker.postMessage({ op: 'drop', id: this.#id });
    release();
  }
}
