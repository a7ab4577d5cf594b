import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { describeAdapterConformance } from '@ketter/core/testing';
import { FsAdapter } from '@ketter/adapter-fs';

describeAdapterConformance(
  { describe, test, expect, beforeEach, afterEach },
  async () => {
    const base = await mkdtemp(join(tmpdir(), 'ketter-fs-conformance-'));
    await mkdir(join(base, 'root'));
    await mkdir(join(base, 'outside'));
    await writeFile(join(base, 'outside', 'secret.txt'), 'not for ketter');
    const adapter = new FsAdapter({ root: join(base, 'root') });
    await adapter.connect();
    return {
      adapter,
      outside: await realpath(join(base, 'outside')),
      symlink: (target, path) => symlink(target, join(adapter.root, path)),
      cleanup: async () => {
        await adapter.close();
        await rm(base, { recursive: true, force: true });
      },
    };
  },
  { name: 'fs' },
);
