import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createXXHash128, createBLAKE3 } from 'hash-wasm';
import { describe, expect, test } from 'vitest';
import { createHasher, hashStream, HASH_ALGORITHMS } from '@ketter/core';

const data = Buffer.from('Ketter proves what arrived equals what left. '.repeat(1000));

describe('hashing', () => {
  test('sha256 and md5 match node:crypto, chunked or not', async () => {
    for (const algo of ['sha256', 'md5'] as const) {
      const expected = createHash(algo).update(data).digest('hex');
      const h = await createHasher(algo);
      h.update(data.subarray(0, 7));
      h.update(data.subarray(7));
      expect(h.digest()).toBe(expected);
    }
  });
  test('xxh128 and blake3 match their reference implementations', async () => {
    const x = await createXXHash128();
    x.init();
    x.update(data);
    const b = await createBLAKE3();
    b.init();
    b.update(data);
    expect((await hashStream(Readable.from([data.subarray(0, 100), data.subarray(100)]), 'xxh128')).hash).toBe(x.digest('hex'));
    expect((await hashStream(Readable.from([data]), 'blake3')).hash).toBe(b.digest('hex'));
  });
  test('every declared algorithm works', async () => {
    for (const algo of HASH_ALGORITHMS) expect((await hashStream(Readable.from([data]), algo)).size).toBe(data.length);
  });
});
