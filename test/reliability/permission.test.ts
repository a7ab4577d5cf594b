import { chmod, chown, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { Mode } from '@ketter/core';
import { assertTransferInvariants, snapshotTree, type TreeSnapshot } from '@ketter/core/testing';
import { parseJson, runCli } from '../../packages/cli/test/helpers.js';
import { Dice, mulberry32, removeDir, tempRoot, writeTree } from './support.js';

// Root ignores file modes: the CLI runs as `nobody` to meet a real EACCES.
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)(`permission denied mid-tree, as an unprivileged user${isRoot ? '' : ' (skipped: needs root to switch to nobody)'}`, () => {
  let root: string;
  let home: string;
  let dest: string;
  let source: string;

  beforeEach(async () => {
    root = await tempRoot('perm');
    home = join(root, 'home');
    dest = join(root, 'out');
    await mkdir(home);
    await mkdir(dest);
    await chown(home, 65534, 65534);
    await chown(dest, 65534, 65534);
    source = join(root, 'Session 12');
    const dice = new Dice(mulberry32(12));
    // A big readable file first (DIRECT copies large files first), so staging holds data when the denial comes.
    await writeTree(source, {
      'audio/dialog.wav': dice.bytes(2 * 1024 * 1024),
      'audio/fx.wav': dice.bytes(70_000),
      'notes.txt': 'mix notes',
      'private/contract.pdf': dice.bytes(5_000),
      'audio/locked.wav': dice.bytes(1_000),
    });
  });
  afterEach(async () => removeDir(root));

  const transfer = (mode: Mode, strategy: 'direct' | 'zip') =>
    runCli(['transfer', '--from', source, '--to', dest, '--mode', mode, '--strategy', strategy, '--json'], {
      wrap: AS_NOBODY,
      env: { KETTER_HOME: home },
      cwd: root,
    });

  describe.each<[Mode, 'direct' | 'zip']>([
    ['copy', 'direct'],
    ['move', 'direct'],
    ['copy', 'zip'],
    ['move', 'zip'],
  ])('%s, %s', (mode, strategy) => {
    test('an unreadable file: PERMISSION_DENIED while copying, rolled back, nothing lost', async () => {
      await chmod(join(source, 'audio/locked.wav'), 0o600); // root's own, unreadable to nobody
      const before = (await snapshotTree(source)) as TreeSnapshot;
      const run = await transfer(mode, strategy);
      expect(run.code).toBe(1);
      const json = parseJson<{ status: string; error: { code: string } }>(run.stdout);
      expect(json).toMatchObject({ status: 'failed', error: { code: 'PERMISSION_DENIED' } });
      expect(run.stderr).toMatch(/\[PERMISSION_DENIED\]/);
      expect(await readdir(dest)).toEqual([]);
      await assertTransferInvariants({ before, sourceDir: source, destinationDir: dest, mode, outcome: 'failed' });
    });

    test('an unreadable subfolder: PERMISSION_DENIED, nothing written, nothing lost', async () => {
      await chmod(join(source, 'private'), 0o700);
      const before = (await snapshotTree(source)) as TreeSnapshot;
      const run = await transfer(mode, strategy);
      expect(run.code).toBe(1);
      expect(parseJson<{ error: { code: string } }>(run.stdout).error.code).toBe('PERMISSION_DENIED');
      expect(await readdir(dest)).toEqual([]);
      await assertTransferInvariants({ before, sourceDir: source, destinationDir: dest, mode, outcome: 'failed' });
    });
  });
});
