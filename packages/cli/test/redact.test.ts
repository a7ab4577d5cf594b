import { describe, expect, it } from 'vitest';
import { redact } from '../src/redact.js';
import { removeDir, runCli, tempDir } from './helpers.js';

describe('redact', () => {
  it('masks URL passwords and password= pairs, and nothing else', () => {
    expect(redact('postgres://jane:s3cr%40t@db.internal:5432/ketter')).toBe('postgres://jane:***@db.internal:5432/ketter');
    expect(redact('failed: postgresql://u:p@h/db?sslmode=require and sftp://op:pw@host:2222/in')).toBe(
      'failed: postgresql://u:***@h/db?sslmode=require and sftp://op:***@host:2222/in',
    );
    expect(redact('host=db password=hunter2 user=x')).toBe('host=db password=*** user=x');
    expect(redact('postgres://jane@db/ketter and sftp://host:22/path')).toBe('postgres://jane@db/ketter and sftp://host:22/path');
  });

  it('never prints a store URL password', async () => {
    const root = await tempDir();
    try {
      for (const args of [
        ['--store', 'postgres://ketter:TopSecret99@127.0.0.1:1/ketter', 'jobs', 'list'],
        ['--store', 'postgres://ketter:TopSecret99@127.0.0.1:1/ketter', 'jobs', 'list', '--json'],
        ['--store', 'mysql://ketter:TopSecret99@127.0.0.1/ketter', 'jobs', 'list'],
      ]) {
        const run = await runCli(args, { env: { KETTER_HOME: root, PGCONNECT_TIMEOUT: '2' } });
        expect(run.code).not.toBe(0);
        expect(run.stdout + run.stderr).not.toContain('TopSecret99');
        expect(run.stderr).toMatch(/^ketter: \[[A-Z_]+\] [^\n]+\n$/);
      }
    } finally {
      await removeDir(root);
    }
  });
});
