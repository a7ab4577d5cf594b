import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exists, parseJson, removeDir, runCli, spawnCli, tempDir, treeHashes, writeLargeFile } from './helpers.js';

/** Files staged so far under the hidden staging directory of `dest` (0 while there is none). */
async function stagedCount(dest: string): Promise<number> {
  const staging = (await readdir(dest).catch(() => [] as string[])).find((n) => n.startsWith('.ketter-') && n.endsWith('.partial'));
  if (!staging) return 0;
  return (await readdir(join(dest, staging, 'clips')).catch(() => [] as string[])).length;
}

describe('resume', () => {
  let root: string;
  let source: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    root = await tempDir();
    source = join(root, 'Reel 2');
    await mkdir(join(source, 'clips'), { recursive: true });
    for (let i = 0; i < 300; i++) await writeFile(join(source, 'clips', `clip ${i}.wav`), Buffer.alloc(2048, i % 256));
    // The big file keeps the job busy while the small ones get staged and verified.
    await writeLargeFile(join(source, 'picture.mov'), 768 * 1024 * 1024);
    env = { KETTER_HOME: join(root, 'home') };
  }, 120_000);
  afterAll(async () => removeDir(root));

  it('a killed DIRECT job is resumed by the same request: verified files are kept, the rest copied', async () => {
    const dest = join(root, 'out');
    const args = ['transfer', '--from', source, '--to', dest, '--strategy', 'direct', '--json'];
    const child = spawnCli(args, { env });
    const deadline = Date.now() + 60_000;
    while ((await stagedCount(dest)) < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Give the last small files time to be verified and recorded, while the big one still copies.
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGKILL');
    const killed = await child.result;
    expect(killed.signal).toBe('SIGKILL');
    expect(await exists(join(dest, 'Reel 2'))).toBe(false);

    const again = await runCli(args, { env });
    expect(again.stderr).not.toMatch(/ketter: \[/);
    expect(again.code).toBe(0);
    const result = parseJson<{ jobId: string; filesCopied: number }>(again.stdout);
    expect(result.filesCopied).toBe(301);
    expect(await treeHashes(join(dest, 'Reel 2'))).toEqual(await treeHashes(source));
    expect((await readdir(dest)).filter((n) => n.includes('.ketter-'))).toEqual([]);

    const show = parseJson<{ events: { type: string; method?: string; filesVerified?: number }[] }>(
      (await runCli(['jobs', 'show', result.jobId, '--json'], { env })).stdout,
    );
    const resumed = show.events.find((e) => e.type === 'job.resumed');
    expect(resumed?.filesVerified).toBeGreaterThan(0);
    const methods = show.events.filter((e) => e.type === 'file.verified').map((e) => e.method);
    expect(methods.filter((m) => m === 'resumed').length).toBeGreaterThan(0);
    expect(methods).toHaveLength(301);
  }, 180_000);
});
