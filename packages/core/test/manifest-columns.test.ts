import { describe, expect, test } from 'vitest';
import { ManifestEntries, type ManifestRow } from '@ketter/core';
import { HashedFiles } from '../src/engine/hashed-files.js';

const file = (path: string, size = 1, mtimeMs = 1_700_000_000_123.456, mode = 0o100644): ManifestRow => ({ path, kind: 'file', size, mtimeMs, mode });
const dir = (path: string): ManifestRow => ({ path, kind: 'directory', size: 0, mtimeMs: 1_600_000_000_000, mode: 0o40755 });

describe('ManifestEntries', () => {
  test('rows in any order come back in path order, every column intact, each entry with its index', () => {
    const rows = [file('b/z.wav', 5_000_000_000, 1.5, 0o100600), dir('b'), file('a.wav', 0), dir('b/sub'), file('b/sub/c.wav', 7)];
    const entries = ManifestEntries.from(rows);
    expect(entries.length).toBe(5);
    expect([...entries]).toEqual([
      { index: 0, path: 'a.wav', kind: 'file', size: 0, mtimeMs: 1_700_000_000_123.456, mode: 0o100644 },
      { index: 1, path: 'b', kind: 'directory', size: 0, mtimeMs: 1_600_000_000_000, mode: 0o40755 },
      { index: 2, path: 'b/sub', kind: 'directory', size: 0, mtimeMs: 1_600_000_000_000, mode: 0o40755 },
      { index: 3, path: 'b/sub/c.wav', kind: 'file', size: 7, mtimeMs: 1_700_000_000_123.456, mode: 0o100644 },
      // Sizes past 4 GiB and fractional mtimes survive the columns.
      { index: 4, path: 'b/z.wav', kind: 'file', size: 5_000_000_000, mtimeMs: 1.5, mode: 0o100600 },
    ]);
    expect(Array.from(entries.indexesOf('file'))).toEqual([0, 3, 4]);
    expect(Array.from(entries.indexesOf('directory'))).toEqual([1, 2]);
    expect(Array.from(entries.select([4, 0]), (e) => e.path)).toEqual(['b/z.wav', 'a.wav']);
    // Files only: a directory's size never answers.
    expect(entries.someFileSized((size) => size > 4_000_000_000)).toBe(true);
    expect(entries.someFileSized((size) => size === 7)).toBe(true);
    expect(entries.someFileSized((size) => size > 0 && size < 7)).toBe(false);
    expect(ManifestEntries.from([dir('x')]).someFileSized(() => true)).toBe(false);
  });

  test('paths outside ASCII keep their characters, their order and their lookups', () => {
    // JavaScript string order, as every manifest had: U+FF5E sorts after U+1F3B5 (a surrogate pair).
    const names = ['Prise 2 – Café', 'テイク', 'voix🎵', 'voix～', 'Zoë/take.wav', 'Zoë'];
    const entries = ManifestEntries.from(names.map((p) => (p === 'Zoë' ? dir(p) : file(p))));
    const expected = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(Array.from(entries, (e) => e.path)).toEqual(expected);
    for (const [i, p] of expected.entries()) expect(entries.indexOf(p)).toBe(i);
    expect(entries.indexOf('Zoe')).toBe(-1);
    expect(entries.indexOf('Zoë/take.wa')).toBe(-1);
    expect(entries.indexOf('')).toBe(-1);
  });

  test('a lookup finds every one of many paths and none that is absent', () => {
    const rows: ManifestRow[] = [];
    for (let i = 0; i < 5000; i++) rows.push(file(`folder ${i % 7}/clip_${String(i).padStart(5, '0')}.wav`));
    const entries = ManifestEntries.from(rows);
    for (let i = 0; i < entries.length; i++) expect(entries.indexOf(entries.path(i))).toBe(i);
    expect(entries.indexOf('folder 0/clip_99999.wav')).toBe(-1);
  });

  test('a file source is one entry at the empty path', () => {
    const entries = ManifestEntries.from([file('', 42)]);
    expect(entries.at(0)).toMatchObject({ index: 0, path: '', size: 42 });
    expect(entries.indexOf('')).toBe(0);
  });

  test('a listing that names one path twice is refused', () => {
    expect(() => ManifestEntries.from([file('a'), file('b'), file('a')])).toThrow(expect.objectContaining({ code: 'IO_ERROR', message: expect.stringContaining('twice: a') }));
  });

  test('an index outside the entries is an error, not an empty path', () => {
    const entries = ManifestEntries.from([file('a')]);
    expect(() => entries.path(1)).toThrow(RangeError);
    expect(() => entries.at(-1)).toThrow(RangeError);
  });
});

describe('HashedFiles', () => {
  const entries = ManifestEntries.from([dir('d'), file('d/a', 3), file('d/b', 4), file('d/c', 5)]);
  const sha = (c: string) => c.repeat(64);

  test('keeps each hash and size by manifest index and gives files back in path order', () => {
    const files = new HashedFiles(entries);
    files.push({ entry: entries.at(3), hash: sha('c'), size: 5 });
    files.push({ entry: entries.at(1), hash: sha('a'), size: 3 });
    expect(files.length).toBe(2);
    expect(files.bytes).toBe(8);
    expect(files.has(2)).toBe(false);
    expect(files.hash(2)).toBeUndefined();
    expect(files.size(2)).toBe(-1);
    expect([...files].map((f) => [f.entry.path, f.hash, f.size])).toEqual([
      ['d/a', sha('a'), 3],
      ['d/c', sha('c'), 5],
    ]);
    expect(Array.from(files.indexes())).toEqual([1, 3]);
  });

  test('recording a file again replaces it without counting it twice', () => {
    const files = new HashedFiles(entries);
    files.set(2, sha('1'), 4);
    files.set(2, sha('2'), 40);
    expect(files.length).toBe(1);
    expect(files.bytes).toBe(40);
    expect(files.hash(2)).toBe(sha('2'));
  });

  test('a hash that would not read back from bytes is kept as given', () => {
    const files = new HashedFiles(entries);
    files.set(1, sha('a'), 3);
    files.set(2, 'ABCDEF'.padEnd(64, '0'), 4); // upper case
    files.set(3, 'not hex at all', 5); // another length, not hex
    expect(files.hash(1)).toBe(sha('a'));
    expect(files.hash(2)).toBe('ABCDEF'.padEnd(64, '0'));
    expect(files.hash(3)).toBe('not hex at all');
  });

  test('files found in place elsewhere are reported under that path', () => {
    const files = new HashedFiles(entries, 'out/Session');
    files.set(1, sha('a'), 3);
    expect([...files][0]).toMatchObject({ at: 'out/Session/d/a' });
    const single = new HashedFiles(ManifestEntries.from([file('', 1)]), 'out/take.wav');
    single.set(0, sha('f'), 1);
    expect(single.get(0).at).toBe('out/take.wav');
  });
});
