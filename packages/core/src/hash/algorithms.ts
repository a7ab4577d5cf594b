/** Hash algorithms Ketter records. `sha256` is the compliance default. */
export const HASH_ALGORITHMS = ['sha256', 'md5', 'xxh128', 'blake3'] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];
export const DEFAULT_HASH: HashAlgorithm = 'sha256';
