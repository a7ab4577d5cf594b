import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, removeDir, runCli, tempDir } from './helpers.js';

const PACKAGES = fileURLToPath(new URL('../../', import.meta.url));
const database = `ketter_cli_${process.pid}_${Date.now().toString(36)}`;

function psql(sql: string): void {
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { stdio: 'pipe' });
}

function postgresAvailable(): boolean {
  try {
    psql('SELECT 1');
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!postgresAvailable())('ketter with a postgres:// store', () => {
  let root: string;
  // A password is given (trust auth ignores it) to prove it never reaches any output.
  const url = `postgres://postgres:NotForEyes42@127.0.0.1:5432/${database}`;

  beforeAll(async () => {
    psql(`CREATE DATABASE ${database}`);
    root = await tempDir();
    // A project-local install of the optional store package, as `npm install @ketter/store-postgres` makes.
    await mkdir(join(root, 'node_modules', '@ketter'), { recursive: true });
    await symlink(join(PACKAGES, 'store-postgres'), join(root, 'node_modules', '@ketter', 'store-postgres'));
    await mkdir(join(root, 'src'));
    await writeFile(join(root, 'src', 'a.wav'), 'abc');
  });
  afterAll(async () => {
    await removeDir(root);
    psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  it('migrates, records a transfer, lists it and verifies the trail, never printing the password', async () => {
    const outputs: string[] = [];
    const run = async (args: string[]) => {
      const result = await runCli(['--store', url, ...args], { cwd: root, env: { KETTER_HOME: join(root, 'home') } });
      outputs.push(result.stdout, result.stderr);
      return result;
    };
    const migrate = await run(['migrate', '--json']);
    expect(migrate.code, migrate.stderr).toBe(0);
    expect(parseJson<{ applied: string[] }>(migrate.stdout).applied.length).toBeGreaterThan(0);
    expect((await run(['migrate'])).stdout).toMatch(/up to date/);

    const transfer = await run(['transfer', '--from', 'src', '--to', 'out', '--json']);
    expect(transfer.code, transfer.stderr).toBe(0);
    const { jobId } = parseJson<{ jobId: string }>(transfer.stdout);

    const list = parseJson<{ jobs: { id: string; status: string }[] }>((await run(['jobs', 'list', '--json'])).stdout);
    expect(list.jobs.map((j) => [j.id, j.status])).toEqual([[jobId, 'succeeded']]);
    const verify = await run(['audit', 'verify']);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toContain('postgres://postgres:***@127.0.0.1');
    for (const text of outputs) expect(text).not.toContain('NotForEyes42');
  });
});
