import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exists, parseJson, removeDir, runCli, sha256File, spawnCli, tempDir, waitForGrowingStaging, writeLargeFile } from './helpers.js';

const SIZE = 1024 * 1024 * 1024;

describe('interrupting ketter transfer mid-copy', () => {
  let root: string;
  let source: string;
  let sourceHash: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    root = await tempDir();
    env = { KETTER_HOME: join(root, 'home') };
    await mkdir(join(root, 'in'));
    source = join(root, 'in', 'master reel.mov');
    await writeLargeFile(source, SIZE);
    sourceHash = await sha256File(source);
  }, 120_000);
  afterAll(async () => removeDir(root));

  it('SIGKILL leaves no final path and an intact source; the same transfer then succeeds', async () => {
    const dest = join(root, 'out-kill');
    const args = ['transfer', '--from', source, '--to', dest, '--json'];
    const child = spawnCli(args, { env });
    try {
      await waitForGrowingStaging(dest);
    } finally {
      child.kill('SIGKILL');
    }
    const killed = await child.result;
    expect(killed.signal).toBe('SIGKILL');
    expect(await exists(join(dest, 'master reel.mov'))).toBe(false);
    expect(await sha256File(source)).toBe(sourceHash);

    const again = await runCli(args, { env });
    expect(again.stderr).not.toMatch(/ketter: \[/);
    expect(again.code).toBe(0);
    expect(parseJson(again.stdout)).toMatchObject({ status: 'succeeded', filesCopied: 1, bytesCopied: SIZE });
    expect(await sha256File(join(dest, 'master reel.mov'))).toBe(sourceHash);
  }, 120_000);

  it.each(['SIGINT', 'SIGTERM'] as const)('%s cancels: exit 130, staging rolled back, job.cancelled recorded', async (signal) => {
    const dest = join(root, `out-${signal}`);
    const child = spawnCli(['transfer', '--from', source, '--to', dest, '--json'], { env });
    try {
      await waitForGrowingStaging(dest);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
    child.kill(signal);
    const run = await child.result;
    expect(run.code).toBe(130);
    expect(run.stderr).toMatch(/\[CANCELLED\]/);
    const json = parseJson<{ jobId: string; status: string; error: { code: string } }>(run.stdout);
    expect(json).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
    expect(await exists(join(dest, 'master reel.mov'))).toBe(false);
    expect((await readdir(dest).catch(() => [])).filter((n) => n.includes('ketter'))).toEqual([]);
    expect(await sha256File(source)).toBe(sourceHash);

    const show = await runCli(['jobs', 'show', json.jobId, '--json'], { env });
    const job = parseJson<{ status: string; events: { type: string }[] }>(show.stdout);
    expect(job.status).toBe('cancelled');
    expect(job.events.map((e) => e.type)).toContain('job.cancelled');
  }, 120_000);
});
