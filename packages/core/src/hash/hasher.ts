import { createHash } from 'node:crypto';
import type { HashAlgorithm } from './algorithms.js';

/** An incremental hash: feed chunks, read a lowercase hex digest once. */
export interface Hasher {
  readonly algorithm: HashAlgorithm;
  update(chunk: Uint8Array): void;
  digest(): string;
}

/**
 * Create a hasher. SHA-256 and MD5 run through OpenSSL (node:crypto), which is the fastest
 * path for them here; xxh128 and BLAKE3 come from hash-wasm, which streams both.
 */
export async function createHasher(algorithm: HashAlgorithm): Promise<Hasher> {
  switch (algorithm) {
    case 'sha256':
    case 'md5': {
      const h = createHash(algorithm);
      return { algorithm, update: (c) => void h.update(c), digest: () => h.digest('hex') };
    }
    case 'xxh128':
    case 'blake3': {
      // Loaded on first use: most jobs hash with sha256 and never need the WebAssembly hashes.
      const wasm = await import('hash-wasm');
      const h = algorithm === 'xxh128' ? await wasm.createXXHash128() : await wasm.createBLAKE3();
      h.init();
      return { algorithm, update: (c) => void h.update(c), digest: () => h.digest('hex') };
    }
  }
}

/** Hash a whole byte stream (e.g. an adapter's read stream). */
export async function hashStream(stream: AsyncIterable<Uint8Array>, algorithm: HashAlgorithm): Promise<{ hash: string; size: number }> {
  const hasher = await createHasher(algorithm);
  let size = 0;
  for await (const chunk of stream) {
    hasher.update(chunk);
    size += chunk.byteLength;
  }
  return { hash: hasher.digest(), size };
}
