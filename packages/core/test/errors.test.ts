import { describe, expect, test } from 'vitest';
import { ErrorCode, KetterError } from '@ketter/core';

describe('KetterError across copies of the package', () => {
  test('an error made by another copy of @ketter/core is still a KetterError', async () => {
    // A second, independent instance of the module: what a bundled CLI sees from a
    // separately installed adapter.
    const other = (await import('../src/errors.js?another-copy')) as typeof import('../src/errors.js');
    expect(other.KetterError).not.toBe(KetterError);
    const foreign = new other.KetterError(ErrorCode.PERMISSION_DENIED, 'denied', { path: 'a/b' });
    expect(foreign instanceof KetterError).toBe(true);
    expect(new KetterError(ErrorCode.IO_ERROR, 'x') instanceof other.KetterError).toBe(true);
  });

  test('plain errors and look-alikes are not', () => {
    expect(new Error('x') instanceof KetterError).toBe(false);
    expect({ name: 'KetterError', code: ErrorCode.IO_ERROR, message: 'x' } instanceof KetterError).toBe(false);
    expect(null instanceof KetterError).toBe(false);
  });

  test('subclasses keep the ordinary prototype check', () => {
    class Narrower extends KetterError {}
    expect(new Narrower(ErrorCode.IO_ERROR, 'x') instanceof KetterError).toBe(true);
    expect(new Narrower(ErrorCode.IO_ERROR, 'x') instanceof Narrower).toBe(true);
    expect(new KetterError(ErrorCode.IO_ERROR, 'x') instanceof Narrower).toBe(false);
  });
});
