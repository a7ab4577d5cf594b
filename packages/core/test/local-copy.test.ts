import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { ErrorCode, JsonlStore, Portal, transfer, type KetterEvent, type ReadOptions } from '@ketter/core';
import { copyFromLocal, copyVerifyLocal, type LocalCopyEnds, type LocalFile } from '../src/engine/local-copy.js';
import { FaultyAdapter } from '../src/testing/faulty-adapter.js';
import { failure } from './support/env.js';

const MiB = 1024 * 1024;
/** The fixed-buffer path moves 4 MiB slots: sizes on and around their edges. */
const SIZES = [0, 1, 4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 8 * MiB + 3, 13 * MiB + 7];

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ketter-local-copy-'));
  await mkdir(join(root, 'src'));
  await mkdir(join(root, 'dst'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function ends(name: string, mode?: number): LocalCopyEnds {
  return {
    source: { abs: join(root, 'src', name), path: `in/${name}`, portal: 'src' },
    destination: { abs: join(root, 'dst', name), path: `out/${name}`, portal: 'dst', ...(mode === undefined ? {} : { mode }) },
  };
}

const openFds = () => readdirSync('/proc/self/fd').length;

/** Copy a 40 MiB `src/f.bin`, aborting once 8 MiB have passed: CANCELLED, stopped early, every file closed. */
async function expectCancelledMidCopy(copy: (onBytes: (n: number) => void, signal: AbortSignal) => Promise<unknown>): Promise<void> {
  writeFileSync(join(root, 'src', 'f.bin'), randomBytes(40 * MiB));
  const before = openFds();
  const controller = new AbortController();
  let seen = 0;
  const onBytes = (n: number) => {
    seen += n;
    if (seen >= 8 * MiB) controller.abort(new Error('operator stop'));
  };
  const error = await failure(copy(onBytes, controller.signal));
  expect(error.code).toBe(ErrorCode.CANCELLED);
  expect(seen).toBeLessThan(40 * MiB);
  expect(openFds()).toBe(before);
}

describe('copyVerifyLocal', () => {
  test.each(SIZES)('copies %i bytes and proves both sides with their real hashes', async (size) => {
    const data = randomBytes(size);
    writeFileSync(join(root, 'src', 'f.bin'), data);
    let reported = 0;
    const result = await copyVerifyLocal(ends('f.bin', 0o640), 'sha256', (n) => (reported += n));
    const copy = readFileSync(join(root, 'dst', 'f.bin'));
    expect(copy.equals(data)).toBe(true);
    expect(result.source).toEqual({ hash: sha256(data), size });
    expect(result.destination).toEqual({ hash: sha256(data), size });
    expect(reported).toBe(size);
    expect(statSync(join(root, 'dst', 'f.bin')).mode & 0o777).toBe(0o640);
  });

  test('md5 as well', async () => {
    const data = randomBytes(5 * MiB);
    writeFileSync(join(root, 'src', 'f.bin'), data);
    const result = await copyVerifyLocal(ends('f.bin'), 'md5', () => undefined);
    const md5 = createHash('md5').update(data).digest('hex');
    expect(result.source.hash).toBe(md5);
    expect(result.destination.hash).toBe(md5);
  });

  test('never replaces an existing destination file', async () => {
    writeFileSync(join(root, 'src', 'f.bin'), randomBytes(MiB));
    writeFileSync(join(root, 'dst', 'f.bin'), 'theirs');
    const before = openFds();
    const error = await failure(copyVerifyLocal(ends('f.bin'), 'sha256', () => undefined));
    expect(error.code).toBe(ErrorCode.DESTINATION_EXISTS);
    expect(readFileSync(join(root, 'dst', 'f.bin'), 'utf8')).toBe('theirs');
    expect(openFds()).toBe(before);
  });

  test('a missing source creates nothing, and errors name portal paths only', async () => {
    const error = await failure(copyVerifyLocal(ends('nope.bin'), 'sha256', () => undefined));
    expect(error.code).toBe(ErrorCode.SOURCE_NOT_FOUND);
    expect(error.portal).toBe('src');
    expect(error.path).toBe('in/nope.bin');
    expect(error.message).not.toContain(root);
    expect(existsSync(join(root, 'dst', 'nope.bin'))).toBe(false);
  });

  test('a source replaced by a link since the scan is refused, not followed', async () => {
    writeFileSync(join(root, 'outside.bin'), 'not yours');
    symlinkSync(join(root, 'outside.bin'), join(root, 'src', 'f.bin'));
    const error = await failure(copyVerifyLocal(ends('f.bin'), 'sha256', () => undefined));
    expect(error.code).toBe(ErrorCode.SYMLINK_NOT_ALLOWED);
    expect(error.path).toBe('in/f.bin');
    expect(existsSync(join(root, 'dst', 'f.bin'))).toBe(false);
  });

  test('a missing destination folder is reported on the destination side', async () => {
    writeFileSync(join(root, 'src', 'f.bin'), randomBytes(10));
    const e = ends('f.bin');
    const error = await failure(
      copyVerifyLocal({ ...e, destination: { ...e.destination, abs: join(root, 'dst', 'gone', 'f.bin'), path: 'out/gone/f.bin' } }, 'sha256', () => undefined),
    );
    expect(error.portal).toBe('dst');
    expect(error.path).toBe('out/gone/f.bin');
    expect(error.message).not.toContain(root);
  });

  test('an abort mid-copy stops it as CANCELLED and closes every file', async () => {
    await expectCancelledMidCopy((onBytes, signal) => copyVerifyLocal(ends('f.bin'), 'sha256', onBytes, signal));
  });

  const asRoot = process.getuid?.() === 0;
  test.skipIf(!asRoot)('a full destination volume fails as INSUFFICIENT_SPACE with every file closed', async () => {
    const mount = join(root, 'volume');
    await mkdir(mount);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mount], { stdio: 'pipe' });
    } catch {
      return; // mounting is not permitted in this container: the reliability suite says so
    }
    try {
      writeFileSync(join(root, 'src', 'f.bin'), randomBytes(12 * MiB));
      const e = ends('f.bin');
      const before = openFds();
      const error = await failure(
        copyVerifyLocal({ ...e, destination: { ...e.destination, abs: join(mount, 'f.bin') } }, 'sha256', () => undefined),
      );
      expect(error.code).toBe(ErrorCode.INSUFFICIENT_SPACE);
      expect(error.portal).toBe('dst');
      expect(error.message).not.toContain(root);
      expect(openFds()).toBe(before);
    } finally {
      execFileSync('umount', [mount]);
    }
  });
});

describe('copyFromLocal (a large local file to any destination stream)', () => {
  const source = (name: string): LocalFile => ({ abs: join(root, 'src', name), path: `in/${name}`, portal: 'src' });
  async function destination(): Promise<FsAdapter> {
    const adapter = new FsAdapter({ root: join(root, 'dst') });
    await adapter.connect();
    return adapter;
  }

  test.each([0, 1, 4 * MiB - 1, 4 * MiB, 16 * MiB + 5, 19 * MiB + 1])('sends %i bytes with their real hash, acknowledging only bytes already written', async (size) => {
    const data = randomBytes(size);
    writeFileSync(join(root, 'src', 'f.bin'), data);
    let reported = 0;
    let acknowledged = 0;
    const early: number[] = [];
    const result = await copyFromLocal(
      source('f.bin'),
      { adapter: await destination(), path: 'f.bin', portal: 'dst', mode: 0o640 },
      'sha256',
      (n) => (reported += n),
      undefined,
      (n) => {
        acknowledged += n;
        // The verifier reads up to here: it must already be in the destination file.
        if (statSync(join(root, 'dst', 'f.bin')).size < acknowledged) early.push(acknowledged);
      },
    );
    expect(result).toEqual({ hash: sha256(data), size });
    expect(readFileSync(join(root, 'dst', 'f.bin')).equals(data)).toBe(true);
    expect(reported).toBe(size);
    expect(acknowledged).toBe(size);
    expect(early).toEqual([]);
    expect(statSync(join(root, 'dst', 'f.bin')).mode & 0o777).toBe(0o640);
  });

  test('a destination failing mid-file fails the copy with its error, every file closed', async () => {
    writeFileSync(join(root, 'src', 'f.bin'), randomBytes(24 * MiB));
    const faulty = new FaultyAdapter(await destination(), [{ op: 'openWrite', kind: 'fail', afterBytes: 9 * MiB }]);
    const before = openFds();
    const error = await failure(copyFromLocal(source('f.bin'), { adapter: faulty, path: 'f.bin', portal: 'dst' }, 'sha256', () => undefined));
    expect(error.code).toBe(ErrorCode.IO_ERROR);
    expect(faulty.fired).toHaveLength(1);
    expect(openFds()).toBe(before);
    expect(statSync(join(root, 'dst', 'f.bin')).size).toBeLessThan(24 * MiB);
  });

  test('a missing source or one replaced by a link opens nothing at the destination', async () => {
    const missing = await failure(copyFromLocal(source('nope.bin'), { adapter: await destination(), path: 'nope.bin', portal: 'dst' }, 'sha256', () => undefined));
    expect(missing).toMatchObject({ code: ErrorCode.SOURCE_NOT_FOUND, portal: 'src', path: 'in/nope.bin' });
    expect(missing.message).not.toContain(root);
    writeFileSync(join(root, 'outside.bin'), 'not yours');
    symlinkSync(join(root, 'outside.bin'), join(root, 'src', 'link.bin'));
    const link = await failure(copyFromLocal(source('link.bin'), { adapter: await destination(), path: 'link.bin', portal: 'dst' }, 'sha256', () => undefined));
    expect(link.code).toBe(ErrorCode.SYMLINK_NOT_ALLOWED);
    expect(readdirSync(join(root, 'dst'))).toEqual([]);
  });

  test('an abort mid-copy stops it as CANCELLED and closes every file', async () => {
    const adapter = await destination();
    await expectCancelledMidCopy((onBytes, signal) => copyFromLocal(source('f.bin'), { adapter, path: 'f.bin', portal: 'dst' }, 'sha256', onBytes, signal));
  });
});

/**
 * An FsAdapter that counts read streams: the adapter path reads the source and re-reads the
 * destination through them; the fixed-buffer path does neither.
 */
class CountingFsAdapter extends FsAdapter {
  streams = 0;
  override openRead(path: string, options?: ReadOptions) {
    this.streams += 1;
    return super.openRead(path, options);
  }
}

describe('a large file between local portals', () => {
  test('is copied on the fixed-buffer path, verified by re-read and committed intact', async () => {
    const data = randomBytes(70 * MiB);
    writeFileSync(join(root, 'src', 'take 1.mov'), data);
    const src = new CountingFsAdapter({ root: join(root, 'src') });
    const dst = new CountingFsAdapter({ root: join(root, 'dst') });
    await src.connect();
    await dst.connect();
    const store = new JsonlStore({ dir: join(root, 'store') });
    await store.open();
    const events: KetterEvent[] = [];
    const result = await transfer(
      { mode: 'move', source: { portal: new Portal('src', src), path: 'take 1.mov' }, destination: { portal: new Portal('dst', dst), path: '' } },
      { store, strategy: 'direct', onEvent: (e) => void events.push(e) },
    );
    await store.close();
    expect(result).toMatchObject({ status: 'succeeded', strategy: 'DIRECT', filesCopied: 1 });
    expect(src.streams + dst.streams).toBe(0);
    const verified = events.find((e) => e.type === 'file.verified');
    expect(verified).toMatchObject({ method: 'reread', sourceHash: sha256(data), destinationHash: sha256(data) });
    expect(readFileSync(join(root, 'dst', 'take 1.mov')).equals(data)).toBe(true);
    expect(existsSync(join(root, 'src', 'take 1.mov'))).toBe(false);
  });
});
