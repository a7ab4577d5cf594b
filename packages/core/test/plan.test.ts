import { describe, expect, test } from 'vitest';
import { DEFAULT_THRESHOLDS, ManifestEntries, plan, type Manifest } from '@ketter/core';

function manifest(nFiles: number, avg: number, rootKind: 'file' | 'directory' = 'directory'): Manifest {
  return {
    source: { portal: 'p', path: 'x' },
    rootKind,
    name: 'x',
    root: { mtimeMs: 0, mode: 0o755 },
    entries: ManifestEntries.from([]),
    nFiles,
    totalBytes: nFiles * avg,
    skippedSymlinks: [],
  };
}

describe('plan() — strategy policy v1', () => {
  test('a file source is DIRECT', () => {
    expect(plan(manifest(1, 10, 'file')).strategy).toBe('DIRECT');
  });
  test('many small files are ZIP_FIRST', () => {
    const p = plan(manifest(2000, 1024));
    expect(p).toMatchObject({ strategy: 'ZIP_FIRST', forced: false, nFiles: 2000, avgSizeBytes: 1024 });
    expect(p.thresholds).toEqual(DEFAULT_THRESHOLDS);
  });
  test('exactly at the file threshold stays DIRECT (strictly greater is required)', () => {
    expect(plan(manifest(1000, 1024)).strategy).toBe('DIRECT');
    expect(plan(manifest(1001, 1024)).strategy).toBe('ZIP_FIRST');
  });
  test('large average size stays DIRECT', () => {
    expect(plan(manifest(2000, 4 * 1024 * 1024)).strategy).toBe('DIRECT');
  });
  test('thresholds and forcing are honoured and reported', () => {
    expect(plan(manifest(20, 10), { thresholds: { files: 10 } }).strategy).toBe('ZIP_FIRST');
    expect(plan(manifest(2000, 10), { strategy: 'direct' })).toMatchObject({ strategy: 'DIRECT', forced: true });
    expect(plan(manifest(2, 10), { strategy: 'zip' })).toMatchObject({ strategy: 'ZIP_FIRST', forced: true });
    expect(() => plan(manifest(1, 10, 'file'), { strategy: 'zip' })).toThrow(/directory/);
    expect(() => plan(manifest(1, 10), { thresholds: { files: -1 } })).toThrow(/thresholds/);
  });
  test('pure: same input, same output', () => {
    const m = manifest(1500, 100);
    expect(plan(m)).toEqual(plan(m));
  });
});
