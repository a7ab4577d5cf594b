import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

// Tests import TypeScript sources; users import the built ESM. This loads each built entry
// in plain Node, which catches what a bundler-aware runner hides (CommonJS named imports,
// missing files in `exports`).
describe('built packages load in plain Node', () => {
  const entries: Record<string, string[]> = {
    '@ketter/core': ['transfer', 'runTransfer', 'runZipFirst', 'plan', 'scan', 'JsonlStore', 'Portal', 'KetterError', 'recover'],
    '@ketter/core/testing': ['describeAdapterConformance', 'describeStoreConformance', 'FaultyAdapter'],
    '@ketter/adapter-fs': ['FsAdapter'],
    '@ketter/adapter-sftp': ['SftpAdapter'],
    '@ketter/store-postgres': ['PostgresStore', 'migrate'],
    '@ketter/cli': ['main'],
  };
  for (const [name, names] of Object.entries(entries)) {
    test(name, () => {
      const script = `const m = await import(${JSON.stringify(name)}); console.log(JSON.stringify(Object.keys(m)));`;
      const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: `${root}/packages/cli`, encoding: 'utf8' });
      expect(JSON.parse(out)).toEqual(expect.arrayContaining(names));
    });
  }

  test('the ketter binary starts and prints its version', () => {
    const out = execFileSync(process.execPath, [`${root}/packages/cli/dist/bin.js`, '--version'], { encoding: 'utf8' });
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
