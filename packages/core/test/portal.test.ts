import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { joinPath, normalizeRelative, pathsOverlap, resolveInside } from '../src/paths.js';
import { Portal } from '../src/portal.js';

describe('normalizeRelative', () => {
  test.each([
    ['', ''],
    ['.', ''],
    ['./', ''],
    ['a', 'a'],
    ['a/', 'a'],
    ['./a/./b/', 'a/b'],
    ['a//b///c', 'a/b/c'],
    ['...', '...'],
    ['a/.../b', 'a/.../b'],
    ['..a/b..', '..a/b..'],
    ['.hidden/.ketter-job.partial', '.hidden/.ketter-job.partial'],
    ['Mézcla final/voz 01 ñ.wav', 'Mézcla final/voz 01 ñ.wav'],
    ['%2e%2e/x', '%2e%2e/x'],
    ['．．/x', '．．/x'],
    ['take:2', 'take:2'],
    ['with space /trailing. ', 'with space /trailing. '],
  ])('%j → %j', (input, expected) => {
    expect(normalizeRelative(input)).toBe(expected);
  });

  test.each([
    ['..', "'..' segment"],
    ['../a', "'..' segment"],
    ['a/..', "'..' segment"],
    ['a/../b', "'..' segment"],
    ['./..', "'..' segment"],
    ['a//..//b', "'..' segment"],
    ['/', 'absolute path'],
    ['/etc/passwd', 'absolute path'],
    ['//server/share', 'absolute path'],
    ['\\\\server\\share', 'absolute path'],
    ['\\x', 'absolute path'],
    ['C:', 'absolute path'],
    ['c:relative', 'absolute path'],
    ['Z:\\x', 'absolute path'],
    ['D:/x', 'absolute path'],
    ['a:b', 'absolute path'],
    ['a\\b', 'backslash'],
    ['a\\..\\..\\etc', 'backslash'],
    ['a\0', 'NUL byte'],
    ['\0/a', 'NUL byte'],
  ])('refuses %j (%s) with PATH_NOT_ALLOWED, naming portal and path', (input, why) => {
    let thrown: unknown;
    try {
      normalizeRelative(input, 'nexis');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ name: 'KetterError', code: 'PATH_NOT_ALLOWED', portal: 'nexis', path: input });
    expect((thrown as Error).message).toContain(why);
    expect((thrown as Error).message.startsWith('[ketter] [nexis]')).toBe(true);
  });

  test('refuses a non-string', () => {
    expect(() => normalizeRelative(42 as unknown as string)).toThrow(expect.objectContaining({ code: 'PATH_NOT_ALLOWED' }));
  });
});

describe('path helpers', () => {
  test('pathsOverlap is segment-wise', () => {
    expect(pathsOverlap('a', 'a')).toBe(true);
    expect(pathsOverlap('a', 'a/b')).toBe(true);
    expect(pathsOverlap('a/b/c', 'a')).toBe(true);
    expect(pathsOverlap('', 'anything')).toBe(true);
    expect(pathsOverlap('a', 'ab')).toBe(false);
    expect(pathsOverlap('a/b', 'a/bc')).toBe(false);
    expect(pathsOverlap('a/b', 'a/c')).toBe(false);
  });

  test('resolveInside climbs with .. but never above the base', () => {
    expect(resolveInside(['a', 'b'], '../c')).toEqual(['a', 'c']);
    expect(resolveInside(['a'], '../../c')).toBeNull();
    expect(resolveInside([], '..')).toBeNull();
    expect(resolveInside([], 'x/../y/./z')).toEqual(['y', 'z']);
  });

  test('joinPath skips empty and dot parts', () => {
    expect(joinPath('', 'a', '.', 'b/c', '')).toBe('a/b/c');
    expect(joinPath()).toBe('');
  });
});

describe('Portal', () => {
  let base: string;
  let root: string;
  let portal: Portal;

  beforeEach(async () => {
    base = await realpath(await mkdtemp(join(tmpdir(), 'ketter-portal-')));
    root = join(base, 'root');
    await mkdir(root);
    const adapter = new FsAdapter({ root });
    await adapter.connect();
    portal = new Portal('nexis', adapter);
  });

  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  test.each(['', 'has space', 'slash/name', '-leading', '.dot', 'ünï', 'a:b'])('refuses the portal name %j', (name) => {
    expect(() => new Portal(name, portal.adapter)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });

  test('accepts names made of letters, digits, dot, dash and underscore', () => {
    expect(new Portal('NEXIS_ingest-2.0', portal.adapter).name).toBe('NEXIS_ingest-2.0');
  });

  test('an absolute symlink target that only shares a prefix with the root is outside', async () => {
    // `<base>/root-evil` starts with the string `<base>/root`, but is not inside it.
    await mkdir(join(base, 'root-evil'));
    await writeFile(join(base, 'root-evil', 'secret.txt'), 'secret');
    await symlink(join(base, 'root-evil'), join(root, 'evil'));
    await expect(portal.resolve('evil/secret.txt')).rejects.toMatchObject({ code: 'PATH_NOT_ALLOWED', portal: 'nexis' });
  });

  test('a symlink to the root itself, absolute or relative, resolves inside', async () => {
    await mkdir(join(root, 'sub'));
    await writeFile(join(root, 'sub', 'f.wav'), 'x');
    await symlink(root, join(root, 'self-abs'));
    await symlink('.', join(root, 'self-rel'));
    await symlink('..', join(root, 'sub', 'up'));
    expect(await portal.resolve('self-abs/sub/f.wav')).toBe('sub/f.wav');
    expect(await portal.resolve('self-rel/sub/f.wav')).toBe('sub/f.wav');
    expect(await portal.resolve('sub/up/sub/f.wav')).toBe('sub/f.wav');
  });

  test('a relative target with .. that stays inside resolves', async () => {
    await mkdir(join(root, 'a/b'), { recursive: true });
    await mkdir(join(root, 'c'));
    await symlink('../../c', join(root, 'a/b/to-c'));
    expect(await portal.resolve('a/b/to-c/new.wav')).toBe('c/new.wav');
  });

  test('a final-segment symlink pointing outside is refused as outside first', async () => {
    await symlink('/etc/passwd', join(root, 'passwd'));
    await expect(portal.resolve('passwd')).rejects.toMatchObject({ code: 'PATH_NOT_ALLOWED' });
  });

  test('more than 40 symlink hops is refused', async () => {
    await mkdir(join(root, 'end'));
    for (let i = 0; i < 41; i++) await symlink(i === 40 ? 'end' : `l${i + 1}`, join(root, `l${i}`));
    await expect(portal.resolve('l0/x')).rejects.toMatchObject({ code: 'PATH_NOT_ALLOWED', message: expect.stringContaining('too many') });
    // 40 hops are fine.
    expect(await portal.resolve('l1/x')).toBe('end/x');
  });

  test('a symlink below a missing segment is never consulted', async () => {
    expect(await portal.resolve('missing/deeper/file.wav')).toBe('missing/deeper/file.wav');
  });

  test('a file used as a directory resolves lexically (nothing can exist below it)', async () => {
    await writeFile(join(root, 'file'), 'x');
    expect(await portal.resolve('file/child')).toBe('file/child');
  });

  test('lockKey and describe', async () => {
    expect(portal.lockKey('a/b')).toBe(`fs:${root}/a/b`);
    expect(portal.lockKey('')).toBe(`fs:${root}`);
    expect(portal.describe('')).toBe('nexis:/');
    expect(portal.describe('a/b')).toBe('nexis:a/b');
  });
});
