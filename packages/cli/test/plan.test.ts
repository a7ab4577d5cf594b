import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, removeDir, runCli, tempDir } from './helpers.js';

interface PlanJson {
  source: { portal: string; path: string };
  strategy: string;
  forced: boolean;
  reason: string;
  rootKind: string;
  nFiles: number;
  totalBytes: number;
  avgSizeBytes: number;
  thresholds: { files: number; avgSizeBytes: number };
}

describe('ketter plan', () => {
  let root: string;
  let source: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    root = await tempDir();
    env = { KETTER_HOME: join(root, 'home') };
    source = join(root, 'stems');
    await mkdir(join(source, 'sub'), { recursive: true });
    for (let i = 0; i < 30; i += 1) await writeFile(join(source, i % 2 ? 'sub' : '', `stem ${i}.wav`), Buffer.alloc(100, i));
  });
  afterAll(async () => removeDir(root));

  it('reports strategy, reason and inputs with the default thresholds', async () => {
    const run = await runCli(['plan', '--from', source, '--json'], { env });
    expect(run.code).toBe(0);
    const json = parseJson<PlanJson>(run.stdout);
    expect(json).toMatchObject({
      strategy: 'DIRECT',
      forced: false,
      rootKind: 'directory',
      nFiles: 30,
      totalBytes: 3000,
      avgSizeBytes: 100,
      thresholds: { files: 1000, avgSizeBytes: 4 * 1024 * 1024 },
    });
    expect(json.reason).toMatch(/30 files <= 1000/);
    expect(json.source.portal).toBe('local');
  });

  it('honours the threshold environment variables', async () => {
    const run = await runCli(['plan', '--from', source, '--json'], {
      env: { ...env, KETTER_ZIP_THRESHOLD_FILES: '10', KETTER_ZIP_THRESHOLD_AVG_SIZE_BYTES: '1000' },
    });
    expect(run.code).toBe(0);
    const json = parseJson<PlanJson>(run.stdout);
    expect(json).toMatchObject({ strategy: 'ZIP_FIRST', forced: false, thresholds: { files: 10, avgSizeBytes: 1000 } });
    expect(json.reason).toMatch(/30 files > 10/);
  });

  it('ranks flags over the environment over the config file', async () => {
    const dir = join(root, 'cfg');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ketter.yaml'), 'thresholds: { files: 5, avgSizeBytes: 50 }\n');
    const fromConfig = parseJson<PlanJson>((await runCli(['plan', '--from', source, '--json'], { env, cwd: dir })).stdout);
    expect(fromConfig.thresholds).toEqual({ files: 5, avgSizeBytes: 50 });
    const fromEnv = parseJson<PlanJson>(
      (await runCli(['plan', '--from', source, '--json'], { env: { ...env, KETTER_ZIP_THRESHOLD_FILES: '7' }, cwd: dir })).stdout,
    );
    expect(fromEnv.thresholds).toEqual({ files: 7, avgSizeBytes: 50 });
    const fromFlag = parseJson<PlanJson>(
      (
        await runCli(['plan', '--from', source, '--json', '--zip-threshold-files', '9', '--zip-threshold-avg-size', '4096'], {
          env: { ...env, KETTER_ZIP_THRESHOLD_FILES: '7' },
          cwd: dir,
        })
      ).stdout,
    );
    expect(fromFlag).toMatchObject({ thresholds: { files: 9, avgSizeBytes: 4096 }, strategy: 'ZIP_FIRST' });
  });

  it('forces a strategy and says so', async () => {
    const json = parseJson<PlanJson>((await runCli(['plan', '--from', source, '--strategy', 'zip', '--json'], { env })).stdout);
    expect(json).toMatchObject({ strategy: 'ZIP_FIRST', forced: true });
    const text = await runCli(['plan', '--from', join(source, 'stem 0.wav')], { env });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/DIRECT/);
    expect(text.stdout).toMatch(/single file/);
  });

  it('exits 2 on an invalid threshold variable, naming it', async () => {
    const run = await runCli(['plan', '--from', source], { env: { ...env, KETTER_ZIP_THRESHOLD_AVG_SIZE_BYTES: '4MiB' } });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^ketter: \[INVALID_REQUEST\] .*KETTER_ZIP_THRESHOLD_AVG_SIZE_BYTES.*\n$/);
  });

  it('reads portals from ketter.yaml and exits 2 on a bad config key', async () => {
    const dir = join(root, 'portals');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ketter.yaml'), `portals:\n  ingest: { type: fs, root: ${JSON.stringify(root)} }\n`);
    const ok = await runCli(['plan', '--from', 'ingest:stems', '--json'], { env, cwd: dir });
    expect(ok.stderr).toBe('');
    expect(parseJson<PlanJson>(ok.stdout)).toMatchObject({ source: { portal: 'ingest', path: 'stems' }, nFiles: 30 });

    const escape = await runCli(['plan', '--from', 'ingest:../etc'], { env, cwd: dir });
    expect(escape.code).toBe(2);
    expect(escape.stderr).toMatch(/^ketter: \[PATH_NOT_ALLOWED\] /);

    await writeFile(join(dir, 'bad.yaml'), `hash: sha256\nportals:\n  ingest: { type: fs, rooot: /x }\n`);
    const bad = await runCli(['--config', 'bad.yaml', 'plan', '--from', source], { env, cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^ketter: \[INVALID_REQUEST\] config .*bad\.yaml.*portals\.ingest.*\n$/);

    await writeFile(join(dir, 'bad2.yaml'), `concurrency: lots\n`);
    const bad2 = await runCli(['--config', 'bad2.yaml', 'plan', '--from', source], { env, cwd: dir });
    expect(bad2.code).toBe(2);
    expect(bad2.stderr).toMatch(/'concurrency'/);

    const missing = await runCli(['--config', 'nope.yaml', 'plan', '--from', source], { env, cwd: dir });
    expect(missing.code).toBe(2);
  });
});
