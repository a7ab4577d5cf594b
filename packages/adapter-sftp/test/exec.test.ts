import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { SftpAdapter } from '../src/index.js';
import { probeTools, shellQuote } from '../src/remote-exec.js';
import { Sshd } from './sshd.js';
import { makeRoots, sshdOptions } from './support.js';

const run = promisify(execFile);
let sshd: Sshd;
let roots: Awaited<ReturnType<typeof makeRoots>>;
let adapter: SftpAdapter;

beforeAll(async () => {
  sshd = await Sshd.start();
});
afterAll(async () => {
  await sshd?.stop();
});
beforeEach(async () => {
  roots = await makeRoots();
  adapter = new SftpAdapter(sshdOptions(sshd, roots.root, { allowExec: true }));
  await adapter.connect();
});
afterEach(async () => {
  await adapter.close();
  await rm(roots.base, { recursive: true, force: true });
});

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

describe('server-side hash', () => {
  test('hostile file names: quotes, $(...), newlines, backslashes, leading dashes', async () => {
    const names = ["it's.wav", 'a"b.wav', '$(touch pwned).wav', '`id`.wav', 'new\nline.wav', 'back\\slash.wav', '-n', '--', ' lead space', '*', 'ñandú ☂.wav'];
    for (const [i, name] of names.entries()) await writeFile(join(roots.root, name), `content ${i}`);
    const digests = await adapter.hash!(names, 'sha256');
    expect(digests).toEqual(names.map((_, i) => sha256(`content ${i}`)));
    await expect(readFile(join(roots.root, 'pwned'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('thousands of files with long names are batched and come back in order', async () => {
    await mkdir(join(roots.root, 'many'));
    const names: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const name = `many/${String(i).padStart(5, '0')}-${'x'.repeat(60)}.wav`;
      names.push(name);
      await writeFile(join(roots.root, name), `file ${i}`);
    }
    // 1500 × ~80 bytes is well over one 64 KiB command: several batches.
    const digests = await adapter.hash!(names, 'sha256');
    expect(digests).toHaveLength(names.length);
    digests.forEach((d, i) => expect(d).toBe(sha256(`file ${i}`)));
    const md5 = await adapter.hash!(names.slice(0, 3), 'md5');
    expect(md5).toEqual([0, 1, 2].map((i) => createHash('md5').update(`file ${i}`).digest('hex')));
  });

  test('a missing file fails the whole call with SOURCE_NOT_FOUND, never a skipped entry', async () => {
    await writeFile(join(roots.root, 'here.wav'), 'x');
    const error = await adapter.hash!(['here.wav', 'gone.wav'], 'sha256').catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'KetterError', code: 'SOURCE_NOT_FOUND' });
    expect((error as Error).message).toContain('gone.wav');
    expect((error as Error).message).not.toContain(roots.root);
  });

  test('a directory among the paths fails the call', async () => {
    await mkdir(join(roots.root, 'dir'));
    await expect(adapter.hash!(['dir'], 'sha256')).rejects.toMatchObject({ name: 'KetterError' });
  });

  test('an algorithm without a server tool is NOT_SUPPORTED, not a local fallback', async () => {
    expect(adapter.capabilities.serverSideHash).not.toContain('blake3');
    await expect(adapter.hash!(['x'], 'blake3')).rejects.toMatchObject({ code: 'NOT_SUPPORTED' });
    expect(await adapter.hash!([], 'sha256')).toEqual([]);
  });

  test('the probe reads only what follows its marker (a chatty login shell is ignored)', async () => {
    const tools = await probeTools(async (command) => {
      const marker = / (ketter-[0-9a-f]+) /.exec(command)?.[1] as string;
      return { code: 0, signal: null, stderr: '', stdout: Buffer.from(`Welcome!\nsha256sum\n${marker}\nsha256sum\nunzip\n`) };
    });
    expect([...tools].sort()).toEqual(['sha256sum', 'unzip']);
    expect(shellQuote("a'b")).toBe(`'a'\\''b'`);
  });
});

describe('server-side extract', () => {
  async function makeZip(name: string, entries: Record<string, string>, links: Record<string, string> = {}): Promise<void> {
    // Python's zipfile lets the test write entry names a well-behaved packer never would.
    const script = [
      'import sys, zipfile, json',
      'entries, links = json.loads(sys.argv[2]), json.loads(sys.argv[3])',
      'with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as z:',
      '    for n, d in entries.items(): z.writestr(n, d)',
      '    for n, t in links.items():',
      '        zi = zipfile.ZipInfo(n); zi.create_system = 3; zi.external_attr = 0o120777 << 16; z.writestr(zi, t)',
    ].join('\n');
    await run('python3', ['-c', script, join(roots.root, name), JSON.stringify(entries), JSON.stringify(links)]);
  }

  test('unpacks names with spaces and UTF-8', async () => {
    await makeZip('ok.zip', { 'a b/ñ.wav': 'one', 'top.txt': 'two' });
    await adapter.mkdir('out');
    await adapter.extract!('ok.zip', 'out');
    expect(await readFile(join(roots.root, 'out/a b/ñ.wav'), 'utf8')).toBe('one');
    expect(await readFile(join(roots.root, 'out/top.txt'), 'utf8')).toBe('two');
  });

  test.each([
    ['a parent-directory entry', { '../escape.txt': 'x' }, {}],
    ['an absolute entry', { '/tmp/ketter-absolute-escape.txt': 'x' }, {}],
    ['a symlink entry', { 'fine.txt': 'x' }, { 'link': '/etc' }],
  ])('refuses %s with UNSAFE_ARCHIVE_ENTRY and extracts nothing', async (_label, entries, links) => {
    await makeZip('bad.zip', entries, links);
    await adapter.mkdir('out');
    await expect(adapter.extract!('bad.zip', 'out')).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE_ENTRY' });
    const listed: string[] = [];
    for await (const e of adapter.list('out')) listed.push(e.path);
    expect(listed).toEqual([]);
    expect(await adapter.stat('escape.txt')).toBeNull();
  });

  test('a corrupt or missing archive fails loudly', async () => {
    await writeFile(join(roots.root, 'corrupt.zip'), 'PK\u0003\u0004 this is not a zip');
    await adapter.mkdir('out');
    await expect(adapter.extract!('corrupt.zip', 'out')).rejects.toMatchObject({ name: 'KetterError' });
    await expect(adapter.extract!('missing.zip', 'out')).rejects.toMatchObject({ name: 'KetterError' });
  });

  test('a symlinked directory inside the root is not a way out for hashing (lstat semantics stay with SFTP)', async () => {
    await symlink(roots.outside, join(roots.root, 'out-link'));
    expect((await adapter.stat('out-link'))?.kind).toBe('symlink');
  });
});

describe('server-side sync', () => {
  test('many paths are made durable with one remote sync; a missing folder fails it', async () => {
    await mkdir(join(roots.root, 'staged/sub'), { recursive: true });
    const paths: string[] = [];
    for (let i = 0; i < 40; i++) {
      const name = `staged/${i % 2 ? 'sub/' : ''}f ${i}.wav`;
      await writeFile(join(roots.root, name), `x${i}`);
      paths.push(name);
    }
    await expect(adapter.sync!([...paths, 'staged/sub', 'staged'])).resolves.toBeUndefined();
    const missing = Array.from({ length: 20 }, (_, i) => `gone/f${i}`);
    await expect(adapter.sync!(missing)).rejects.toMatchObject({ code: 'IO_ERROR' });
  });
});
