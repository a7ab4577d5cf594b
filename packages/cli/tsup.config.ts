import { defineConfig } from 'tsup';

export default defineConfig([
  // The library entry: dependencies stay dependencies, for embedders.
  {
    entry: { index: 'src/index.ts' },
    format: ['esm'],
    target: 'node20',
    dts: true,
    sourcemap: true,
    clean: true,
  },
  // The command: one self-contained module. Resolving and compiling the few hundred
  // modules of its dependencies cost ~0.15 s warm (and more on a cold cache) on every run;
  // one file costs a third of that. The optional SFTP and PostgreSQL packages stay outside,
  // loaded only by the commands that need them.
  {
    entry: { bin: 'src/bin.ts', 'command-thread': 'src/command-thread.ts' },
    format: ['esm'],
    target: 'node20',
    sourcemap: true,
    clean: false,
    noExternal: [/.*/],
    external: ['@ketter/adapter-sftp', '@ketter/store-postgres'],
    // Bundled CommonJS dependencies call require() for node builtins.
    banner: { js: "import { createRequire as __ketterRequire } from 'node:module';\nconst require = __ketterRequire(import.meta.url);" },
  },
]);
