import { chown, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, removeDir, runCli, tempDir } from './helpers.js';

// Root ignores file modes, so the CLI runs as `nobody` to meet a real EACCES.
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('ketter transfer as an unprivileged user', () => {
  let root: string;

  beforeAll(async () => {
    root = await tempDir();
  });
  afterAll(async () => removeDir(root));

  it('fails with PERMISSION_DENIED (exit 1) on an unwritable destination and creates nothing', async () => {
    const home = join(root, 'home');
    await mkdir(home);
    await chown(home, 65534, 65534);
    const source = join(root, 'Reel 1');
    await mkdir(join(source, 'audio'), { recursive: true });
    await writeFile(join(source, 'audio', 'dialog.wav'), Buffer.alloc(4096, 1), { mode: 0o644 });
    await writeFile(join(source, 'notes.txt'), 'take 3', { mode: 0o644 });
    const dest = join(root, 'locked-dest'); // root-owned 0755: nobody may not write here
    await mkdir(dest, { mode: 0o755 });

    const run = await runCli(['transfer', '--from', source, '--to', dest, '--json'], { wrap: AS_NOBODY, env: { KETTER_HOME: home }, cwd: root });
    expect(run.code).toBe(1);
    expect(parseJson<{ error: { code: string } }>(run.stdout).error.code).toBe('PERMISSION_DENIED');
    expect(run.stderr).toMatch(/^ketter: \[PERMISSION_DENIED\] [^\n]+\n$/);
    expect(await readdir(dest)).toEqual([]);
    expect((await readdir(source)).sort()).toEqual(['audio', 'notes.txt']);
  });
});
