import { spawnSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, parseJson, removeDir, runCli, spawnCli, tempDir } from './helpers.js';

/*
 * `ketter` runs its command on a worker thread; the process's main thread only launches it
 * (see src/bin.ts). What users rely on must survive that: output whole and in order, exit
 * codes, signals, and a progress bar when the output is a terminal.
 */
describe('the ketter launcher', () => {
  let root: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    root = await tempDir();
    env = { KETTER_HOME: join(root, 'home') };
  });
  afterAll(async () => removeDir(root));

  it('relays output far larger than a pipe buffer whole, then the exit code', async () => {
    const source = join(root, 'links');
    await mkdir(source);
    await writeFile(join(source, 'take.wav'), 'take');
    for (let i = 0; i < 5000; i++) await symlink('take.wav', join(source, `link to take number ${i}.wav`));
    const run = await runCli(['plan', '--from', source, '--symlinks', 'skip', '--json'], { env });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.length).toBeGreaterThan(128 * 1024);
    const plan = parseJson<{ nFiles: number; skippedSymlinks: string[] }>(run.stdout);
    expect(plan.nFiles).toBe(1);
    expect(plan.skippedSymlinks).toHaveLength(5000);

    const usage = await runCli(['transfer', '--from', source], { env });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^ketter: \[INVALID_REQUEST\] .*--to/);
  });

  it('draws progress when stderr is a terminal, fitted to its width', async () => {
    const source = join(root, 'session');
    await mkdir(source);
    for (let i = 0; i < 20; i++) await writeFile(join(source, `take ${i}.wav`), `take ${i}`);
    const command = [process.execPath, BIN, 'transfer', '--from', source, '--to', join(root, 'out-tty')].map((a) => `'${a}'`).join(' ');
    // util-linux `script` gives the command a pseudo-terminal of 60 columns.
    const run = spawnSync('script', ['-qec', `stty cols 60; ${command}`, '/dev/null'], { env: { ...process.env, ...env }, encoding: 'utf8' });
    expect(run.status, run.stdout).toBe(0);
    const frames = run.stdout.split('\r').filter((f) => f.endsWith('\x1b[K') && f.length > 3);
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.some((f) => f.includes('20/20 files'))).toBe(true);
    for (const frame of frames) expect(frame.replace('\x1b[K', '').length).toBeLessThanOrEqual(59);
  });

  describe('a signal the command set nothing up for', () => {
    let server: Server;
    const sockets: Socket[] = [];
    let connected: Promise<void>;
    beforeAll(async () => {
      // An SSH server that accepts and never speaks: the command waits in its connect.
      let arrived!: () => void;
      connected = new Promise((resolve) => (arrived = resolve));
      server = createServer((socket) => {
        sockets.push(socket);
        arrived();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    });

    it('ends the process by that signal, as it would any process', async () => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      const config = join(root, 'silent.yaml');
      await writeFile(
        config,
        [
          'portals:',
          '  silent:',
          '    type: sftp',
          '    host: 127.0.0.1',
          `    port: ${address.port}`,
          '    username: nobody',
          '    root: /in',
          `    hostKey: { fingerprint: "SHA256:${'A'.repeat(43)}" }`,
          '    auth: { passwordEnv: KETTER_TEST_SILENT_PASSWORD }',
          '',
        ].join('\n'),
      );
      const child = spawnCli(['--config', config, 'plan', '--from', 'silent:reel'], { env: { ...env, KETTER_TEST_SILENT_PASSWORD: 'x' } });
      await connected;
      child.kill('SIGTERM');
      const run = await child.result;
      expect(run.signal).toBe('SIGTERM');
      expect(run.code).toBeNull();
    });
  });
});
