import { cp, mkdir, readdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exists, parseJson, removeDir, spawnCli, tempDir, treeHashes, writeLargeFile } from './helpers.js';

describe('two ketter transfer --mode move on the same source', () => {
  let root: string;

  beforeAll(async () => {
    root = await tempDir();
  });
  afterAll(async () => removeDir(root));

  it('lets exactly one run; the other fails with SOURCE_LOCKED and nothing is lost', async () => {
    const env = { KETTER_HOME: join(root, 'home') };
    const source = join(root, 'in', 'Dailies 0412');
    await mkdir(join(source, 'clips'), { recursive: true });
    for (let i = 0; i < 300; i += 1) await writeFile(join(source, 'clips', `clip_${String(i).padStart(3, '0')}.wav`), randomBytes(2048));
    // One big file keeps the winner busy long enough for the runs to overlap.
    await writeLargeFile(join(source, 'reel.mov'), 160 * 1024 * 1024);
    const reference = join(root, 'reference');
    await cp(source, reference, { recursive: true });
    const expected = await treeHashes(reference);

    const a = spawnCli(['transfer', '--mode', 'move', '--from', source, '--to', join(root, 'out-a'), '--json'], { env });
    const b = spawnCli(['transfer', '--mode', 'move', '--from', source, '--to', join(root, 'out-b'), '--json'], { env });
    const results = await Promise.all([a.result, b.result]);

    const codes = results.map((r) => r.code).sort();
    expect(codes, results.map((r) => r.stderr).join('\n')).toEqual([0, 1]);
    const winner = results[0]?.code === 0 ? 'out-a' : 'out-b';
    const loser = winner === 'out-a' ? 'out-b' : 'out-a';
    const failed = results.find((r) => r.code === 1);
    expect(parseJson<{ error: { code: string } }>(failed?.stdout ?? '{}').error.code).toBe('SOURCE_LOCKED');
    expect(failed?.stderr).toMatch(/^ketter: \[SOURCE_LOCKED\] /);

    expect(await treeHashes(join(root, winner, 'Dailies 0412'))).toEqual(expected);
    expect(await readdir(join(root, winner))).toEqual(['Dailies 0412']);
    expect(await exists(join(root, loser, 'Dailies 0412'))).toBe(false);
    expect(await exists(source)).toBe(false); // moved, and only once
  });
});
