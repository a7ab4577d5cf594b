import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FsAdapter } from '@ketter/adapter-fs';
import { SftpAdapter } from '@ketter/adapter-sftp';
import { isKetterError, JsonlStore, Portal, recover, transfer, type KetterEvent, type Mode } from '@ketter/core';
import { assertTransferInvariants, snapshotTree, type TreeSnapshot } from '@ketter/core/testing';
import { Sshd } from '../../packages/adapter-sftp/test/sshd.js';
import { makeRoots, sshdOptions } from '../../packages/adapter-sftp/test/support.js';

// The SFTP server dies in the middle of a transfer. Whether the job then fails (and rolls
// back) or retries its way through once the server is back, nothing may be lost: no partial
// file under the final name, never a deleted source that did not land verified.
let sshd: Sshd;
beforeAll(async () => {
  sshd = await Sshd.start();
});
afterAll(async () => {
  await sshd?.stop();
});

async function scenario(mode: Mode, strategy: 'direct' | 'zip', restartAfterMs: number | null) {
  const roots = await makeRoots();
  const localRoot = join(roots.base, 'local');
  const sourceDir = join(localRoot, `Session ${mode} ${strategy}`);
  await mkdir(join(sourceDir, 'Audio Files'), { recursive: true });
  for (let i = 0; i < 60; i++) await writeFile(join(sourceDir, 'Audio Files', `take ${i}.wav`), randomBytes(2000 + i * 31));
  await writeFile(join(sourceDir, 'picture.mov'), randomBytes(24 * 1024 * 1024));
  const before = (await snapshotTree(sourceDir)) as TreeSnapshot;
  const store = new JsonlStore({ dir: join(roots.base, 'store') });
  await store.open();
  const fs = new FsAdapter({ root: localRoot });
  await fs.connect();
  const sftp = new SftpAdapter(sshdOptions(sshd, roots.root));
  await sftp.connect();
  const local = new Portal('local', fs);
  const remote = new Portal('remote', sftp);
  let killed = false;
  let outage: Promise<void> = Promise.resolve();
  let outcome: 'succeeded' | 'failed' = 'failed';
  let code: string | null = null;
  try {
    await transfer(
      { mode, source: { portal: local, path: `Session ${mode} ${strategy}` }, destination: { portal: remote, path: 'in' } },
      {
        store,
        strategy,
        retry: { attempts: 6, baseDelayMs: 200, maxDelayMs: 1500 },
        onEvent: (e: KetterEvent) => {
          if (killed || !(e.type === 'file.copied' || (e.type === 'job.progress' && e.bytesDone > 4 * 1024 * 1024))) return;
          killed = true;
          outage = sshd.kill().then(async () => {
            if (restartAfterMs !== null) {
              await new Promise((r) => setTimeout(r, restartAfterMs));
              await sshd.restart();
            }
          });
        },
      },
    );
    outcome = 'succeeded';
  } catch (error) {
    if (!isKetterError(error)) throw error;
    code = error.code;
  }
  expect(killed).toBe(true);
  // The outage runs beside the job: let it finish before touching the server again.
  await outage;
  if (!sshd.running) await sshd.restart();
  // Whatever happened, recovery leaves nothing behind; then the invariant must hold.
  const reconnected = new SftpAdapter(sshdOptions(sshd, roots.root));
  await reconnected.connect();
  await recover({ store, portals: { remote: new Portal('remote', reconnected) } });
  await reconnected.close();
  await assertTransferInvariants({ before, sourceDir, destinationDir: join(roots.root, 'in'), mode, outcome: outcome === 'succeeded' ? 'succeeded' : 'recovered' });
  expect(await store.listJobs({ status: 'running' })).toEqual([]);
  await sftp.close().catch(() => undefined);
  await store.close();
  await rm(roots.base, { recursive: true, force: true });
  return { outcome, code };
}

describe('sshd killed mid-transfer', () => {
  for (const mode of ['copy', 'move'] as const) {
    for (const strategy of ['direct', 'zip'] as const) {
      test(`${mode} ${strategy}, server back after 300 ms: retried through, or rolled back — nothing lost`, async () => {
        const { outcome, code } = await scenario(mode, strategy, 300);
        console.log(`sshd kill (${mode}, ${strategy}, restarted): ${outcome}${code ? ` (${code})` : ''}`);
      }, 120_000);
      test(`${mode} ${strategy}, server gone for good: clean failure, nothing lost`, async () => {
        const { outcome, code } = await scenario(mode, strategy, null);
        expect(outcome).toBe('failed');
        expect(code).toBe('CONNECTION_ERROR');
      }, 120_000);
    }
  }
});
