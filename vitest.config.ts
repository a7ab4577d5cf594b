import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (p: string) => fileURLToPath(new URL(`./packages/${p}`, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources; spawned CLI processes use the built dist.
    alias: [
      { find: /^@ketter\/core\/testing$/, replacement: src('core/src/testing/index.ts') },
      { find: /^@ketter\/core$/, replacement: src('core/src/index.ts') },
      { find: /^@ketter\/adapter-fs$/, replacement: src('adapter-fs/src/index.ts') },
      { find: /^@ketter\/adapter-sftp$/, replacement: src('adapter-sftp/src/index.ts') },
      { find: /^@ketter\/store-postgres$/, replacement: src('store-postgres/src/index.ts') },
      { find: /^@ketter\/cli$/, replacement: src('cli/src/index.ts') },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
