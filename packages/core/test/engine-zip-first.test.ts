import { execFileSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { extractArchive, KetterError, plan, runZipFirst, scan, transfer, type KetterEvent, type Mode } from '@ketter/core';
import { FaultyAdapter } from '@ketter/core/testing';
import { exists, expectValidEvents, hashTree, leftovers, makeEnv, snapshot, writeTree, type TestEnv } from './support/env.js';
import { ZipWriter } from '../src/zip/zip-writer.js';

let env: TestEnv;
beforeEach(async () => {
  env = await makeEnv();
});
afterEach(async () => {
  await env.cleanup();
});

/** 2,000 files of ~1 KiB, like a Pro Tools session's clips. */
function smallFiles(prefix: string, n = 2000): Record<string, Buffer> {
  return Object.fromEntries(
    Array.from({ length: n }, (_, i) => [`${prefix}/clip ${String(i).padStart(4, '0')}.wav`, Buffer.alloc(1000 + (i % 48), i % 251)]),
  );
}

async function run(mode: Mode, source: string, strategy: 'auto' | 'direct' | 'zip' = 'auto', dest = '') {
  const events: KetterEvent[] = [];
  const result = await transfer(
    { mode, source: { portal: env.src, path: source }, destination: { portal: env.dst, path: dest } },
    { store: env.store, strategy, onEvent: (e) => void events.push(e) },
  );
  return { result, events };
}

describe('ZIP_FIRST: the studio lab cases', () => {
  for (const mode of ['copy', 'move'] as const) {
    test(`${mode}: 2,000 × ~1 KiB goes through ZIP_FIRST and lands verified`, async () => {
      await writeTree(env.srcDir, smallFiles('Session A/Audio Files'));
      const expected = await hashTree(join(env.srcDir, 'Session A'));
      const { result, events } = await run(mode, 'Session A');
      expect(result).toMatchObject({ strategy: 'ZIP_FIRST', filesCopied: 2000, status: 'succeeded' });
      expect(await hashTree(join(env.dstDir, 'Session A'))).toEqual(expected);
      expect(await leftovers(env.dstDir)).toEqual([]);
      expect(await exists(join(env.srcDir, 'Session A'))).toBe(mode === 'copy');
      const packed = events.find((e) => e.type === 'archive.packed');
      const extracted = events.find((e) => e.type === 'archive.extracted');
      expect(packed).toMatchObject({ files: 2000, algorithm: 'sha256' });
      expect(extracted).toMatchObject({ files: 2000, method: 'adapter' });
      expect(events.filter((e) => e.type === 'file.verified')).toHaveLength(2000);
      const stored = await env.store.getJob(result.jobId);
      expectValidEvents(stored?.events ?? []);
      expect(stored?.strategy).toBe('ZIP_FIRST');
    });

    test(`${mode}: one large file goes DIRECT`, async () => {
      await writeTree(env.srcDir, { 'dailies/A001.mov': Buffer.alloc(24 * 1024 * 1024, 7) });
      const { result, events } = await run(mode, 'dailies/A001.mov');
      expect(result.strategy).toBe('DIRECT');
      expect(events.find((e) => e.type === 'plan.decided')).toMatchObject({ reason: 'source is a single file' });
      expect((await readFile(join(env.dstDir, 'A001.mov'))).length).toBe(24 * 1024 * 1024);
      expect(await exists(join(env.srcDir, 'dailies/A001.mov'))).toBe(mode === 'copy');
    });

    test(`${mode}: one large file plus 2,000 small ones under audio/ goes ZIP_FIRST`, async () => {
      await writeTree(env.srcDir, { ...smallFiles('Mix/audio'), 'Mix/picture.mov': Buffer.alloc(16 * 1024 * 1024, 3) });
      const expected = await hashTree(join(env.srcDir, 'Mix'));
      const { result } = await run(mode, 'Mix');
      expect(result.strategy).toBe('ZIP_FIRST');
      expect(await hashTree(join(env.dstDir, 'Mix'))).toEqual(expected);
      expect(await exists(join(env.srcDir, 'Mix'))).toBe(mode === 'copy');
    });
  }

  test('the same tree forced through both strategies gives byte-identical, identically laid out results', async () => {
    await writeTree(env.srcDir, { ...smallFiles('Tree/a b/ç', 300), 'Tree/big.bin': Buffer.alloc(3 * 1024 * 1024, 9), 'Tree/.hidden': 'h' });
    await run('copy', 'Tree', 'direct', 'by-direct');
    await run('copy', 'Tree', 'zip', 'by-zip');
    const direct = await snapshot(join(env.dstDir, 'by-direct'));
    const zip = await snapshot(join(env.dstDir, 'by-zip'));
    // Layout, sizes and file mtimes match; directory mtimes too.
    expect(zip).toEqual(direct);
    expect(await hashTree(join(env.dstDir, 'by-zip'))).toEqual(await hashTree(join(env.dstDir, 'by-direct')));
  });

  test('an archive corrupted after packing ends in CHECKSUM_MISMATCH, rolled back, source intact', async () => {
    await writeTree(env.srcDir, smallFiles('S', 50));
    const before = await hashTree(join(env.srcDir, 'S'));
    const faulty = new FaultyAdapter(env.dst.adapter, [{ op: 'openWrite', path: /\.archive\.zip$/, kind: 'corrupt' }]);
    let error: unknown;
    try {
      await transfer(
        { mode: 'move', source: { portal: env.src, path: 'S' }, destination: { portal: env.portalOver(faulty), path: 'in' } },
        { store: env.store, strategy: 'zip' },
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KetterError);
    expect((error as KetterError).code).toBe('CHECKSUM_MISMATCH');
    expect(await exists(join(env.dstDir, 'in'))).toBe(false);
    expect(await hashTree(join(env.srcDir, 'S'))).toEqual(before);
  });

  test('the archive Ketter writes passes Info-ZIP unzip -t', async () => {
    await writeTree(env.srcDir, { ...smallFiles('Z', 40), 'Z/sub/ñ é.wav': 'accents' });
    const kept = join(env.root, 'kept.zip');
    await transfer(
      { mode: 'copy', source: { portal: env.src, path: 'Z' }, destination: { portal: env.dst, path: '' } },
      {
        store: env.store,
        strategy: 'zip',
        onEvent: (e) => {
          // Hooks run synchronously: the archive is still in place when it is announced.
          if (e.type === 'archive.packed') copyFileSync(join(env.dstDir, e.archive), kept);
        },
      },
    );
    const out = execFileSync('unzip', ['-t', kept], { encoding: 'utf8' });
    expect(out).toMatch(/No errors detected/);
    expect(out).toMatch(/testing: sub\/ñ é\.wav/);
  });

  test('runZipFirst executes a ZIP_FIRST plan', async () => {
    await writeTree(env.srcDir, smallFiles('P', 20));
    const manifest = await scan(env.src, 'P');
    const result = await runZipFirst(plan(manifest, { strategy: 'zip' }), {
      request: { mode: 'copy', source: { portal: env.src, path: 'P' }, destination: { portal: env.dst, path: '' } },
      store: env.store,
    });
    expect(result).toMatchObject({ strategy: 'ZIP_FIRST', filesCopied: 20 });
  });
});

/** Build a zip whose entry names are rewritten byte for byte after packing (same length). */
async function craftedZip(names: Record<string, string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const zip = new ZipWriter((c) => void chunks.push(c));
  for (const placeholder of Object.keys(names)) await zip.addBytes(placeholder, Buffer.from('payload'), { mtimeMs: Date.now(), mode: 0o100644 });
  await zip.end();
  let buf = Buffer.concat(chunks);
  for (const [placeholder, evil] of Object.entries(names)) {
    expect(evil.length).toBe(placeholder.length);
    buf = Buffer.from(buf.toString('latin1').split(placeholder).join(evil), 'latin1');
  }
  return buf;
}

describe('extraction refuses unsafe archives', () => {
  const cases: Record<string, Record<string, string>> = {
    'a ../ entry': { 'ok.txt': 'ok.txt', 'aa/evil.txt': '../evil.txt' },
    'an absolute entry': { 'xtmp/evil.txt': '/tmp/evil.txt' },
    'a nested ../ entry': { 'd/aa/aa/x.txt': 'd/../../x.txt' },
  };
  for (const [label, names] of Object.entries(cases)) {
    test(`${label} → UNSAFE_ARCHIVE_ENTRY, nothing written outside staging`, async () => {
      await writeFile(join(env.dstDir, 'crafted.zip'), await craftedZip(names));
      await env.dst.adapter.mkdir('staging');
      const before = await snapshot(env.root);
      const size = (await readFile(join(env.dstDir, 'crafted.zip'))).length;
      await expect(extractArchive(env.dst.adapter, 'crafted.zip', size, 'staging')).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE_ENTRY' });
      const after = await snapshot(env.root);
      expect(Object.keys(after).filter((k) => !k.startsWith('store'))).toEqual(Object.keys(before).filter((k) => !k.startsWith('store')));
      expect(await exists('/tmp/evil.txt')).toBe(false);
    });
  }

  test('entries not packed from the source are refused when the expected set is given', async () => {
    await writeFile(join(env.dstDir, 'extra.zip'), await craftedZip({ 'a.txt': 'a.txt', 'b.txt': 'b.txt' }));
    await env.dst.adapter.mkdir('st');
    const size = (await readFile(join(env.dstDir, 'extra.zip'))).length;
    await expect(
      extractArchive(env.dst.adapter, 'extra.zip', size, 'st', { expected: new Map([['a.txt', 'file']]) }),
    ).rejects.toMatchObject({ code: 'UNSAFE_ARCHIVE_ENTRY' });
    expect(await leftovers(join(env.dstDir, 'st'))).toEqual([]);
  });
});
