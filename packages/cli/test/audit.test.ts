import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, removeDir, runCli, tempDir } from './helpers.js';

describe('ketter audit verify', () => {
  let root: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    root = await tempDir();
    env = { KETTER_HOME: join(root, 'home') };
    await mkdir(join(root, 'src'), { recursive: true });
    await writeFile(join(root, 'src', 'a.wav'), 'a');
    await writeFile(join(root, 'src', 'b.wav'), 'bb');
    const run = await runCli(['transfer', '--from', join(root, 'src'), '--to', join(root, 'dest')], { env });
    expect(run.code).toBe(0);
  });
  afterAll(async () => removeDir(root));

  it('passes on a fresh trail', async () => {
    const run = await runCli(['audit', 'verify'], { env });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/intact/);
    const json = await runCli(['audit', 'verify', '--json'], { env });
    expect(parseJson(json.stdout)).toMatchObject({ ok: true });
  });

  it('exits 1 naming the record after one byte of it is altered', async () => {
    const auditDir = join(env.KETTER_HOME as string, 'audit');
    const name = (await readdir(auditDir)).filter((n) => n.endsWith('.jsonl')).sort()[0] as string;
    const path = join(auditDir, name);
    const lines = (await readFile(path, 'utf8')).split('\n');
    const target = 2; // the second record
    const line = lines[target - 1] as string;
    const { event } = JSON.parse(line) as { event: { id: string; seq: number } };
    // Alter one byte of the event payload (the seq digit), keeping the line well-formed.
    const at = line.indexOf('"seq":') + '"seq":'.length;
    lines[target - 1] = `${line.slice(0, at)}${line[at] === '7' ? '8' : '7'}${line.slice(at + 1)}`;
    await writeFile(path, lines.join('\n'));

    const run = await runCli(['audit', 'verify'], { env });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^ketter: \[AUDIT_TAMPERED\] [^\n]+\n$/);
    expect(run.stderr).toContain(`${name}:${target}`);
    expect(run.stderr).toContain(event.id);

    const json = await runCli(['audit', 'verify', '--json'], { env });
    expect(json.code).toBe(1);
    expect(parseJson(json.stdout)).toMatchObject({ ok: false, firstBad: { location: `${name}:${target}`, eventId: event.id } });
  });

  it('says a JSONL store needs no migration', async () => {
    const run = await runCli(['migrate'], { env });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/nothing to migrate/);
  });
});
