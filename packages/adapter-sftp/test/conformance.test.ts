import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { describeAdapterConformance } from '@ketter/core/testing';
import { Sshd } from './sshd.js';
import { sftpFixture } from './support.js';

let sshd: Sshd;
beforeAll(async () => {
  sshd = await Sshd.start();
});
afterAll(async () => {
  await sshd?.stop();
});

const api = { describe, test, expect, beforeEach, afterEach };

// SFTP only: no remote commands, so no server-side hash or extract is declared.
describeAdapterConformance(api, () => sftpFixture(sshd, { allowExec: false }), { name: 'sftp' });

// With exec: sha256sum/md5sum and unzip on the server are declared and checked against behaviour.
describeAdapterConformance(api, () => sftpFixture(sshd, { allowExec: true }), { name: 'sftp with exec' });

describe('capabilities against this OpenSSH server', () => {
  test('without exec: statfs and fsync from the extensions, nothing server-side', async () => {
    const fx = await sftpFixture(sshd, { allowExec: false });
    try {
      expect(fx.adapter.capabilities).toMatchObject({ statfs: true, fsync: true, serverSideHash: [], serverSideExtract: false, mtimePrecisionMs: 1000 });
      expect(fx.adapter.hash).toBeUndefined();
      expect(fx.adapter.extract).toBeUndefined();
    } finally {
      await fx.cleanup();
    }
  });

  test('with exec: the hash tools this machine has (sha256sum, md5sum) and unzip', async () => {
    const fx = await sftpFixture(sshd, { allowExec: true });
    try {
      expect(fx.adapter.capabilities.serverSideHash).toEqual(expect.arrayContaining(['sha256', 'md5']));
      expect(fx.adapter.capabilities.serverSideExtract).toBe(true);
      expect(Object.isFrozen(fx.adapter.capabilities)).toBe(true);
    } finally {
      await fx.cleanup();
    }
  });
});
