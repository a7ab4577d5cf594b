#!/usr/bin/env node
// A loopback TCP relay that delays every chunk by N ms in each direction (order preserved),
// so a connection through it gets a round trip N × 2 ms longer. The kernel here has no netem;
// this stands in for a WAN link in front of a test sshd.
//
//   node scripts/latency-relay.mjs --listen 0 --to 127.0.0.1:2222 --delay-ms 2
//
// prints the port it listens on (one line on stdout), then relays until SIGINT/SIGTERM.
// Importable: startRelay() runs one in this process, spawnRelay() in a child process (for a
// caller that blocks its own event loop, e.g. with spawnSync).
import { spawn } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** Stop reading a side while this much is waiting in its delay queue. */
const QUEUE_HIGH_BYTES = 32 * 1024 * 1024;

/** Forward `from` to `to`, each chunk leaving `delayMs` after it arrived, in arrival order. */
function delayedPipe(from, to, delayMs) {
  if (delayMs <= 0) {
    from.pipe(to);
    return;
  }
  const queue = [];
  let head = 0;
  let queuedBytes = 0;
  let timer = null;
  let waitingForDrain = false;
  let ended = false;

  const flush = () => {
    timer = null;
    if (to.destroyed) return;
    const now = performance.now();
    while (head < queue.length && !waitingForDrain) {
      const item = queue[head];
      if (item.due > now) break;
      queue[head++] = undefined;
      queuedBytes -= item.chunk.length;
      if (!to.write(item.chunk)) {
        // Keep order: nothing more goes out until the socket drains.
        waitingForDrain = true;
        to.once('drain', () => {
          waitingForDrain = false;
          flush();
        });
      }
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    if (from.isPaused() && queuedBytes < QUEUE_HIGH_BYTES / 2 && !from.destroyed) from.resume();
    if (head < queue.length) {
      if (!waitingForDrain) timer = setTimeout(flush, Math.max(0, queue[head].due - performance.now()));
    } else if (ended && !waitingForDrain) {
      to.end();
    }
  };

  from.on('data', (chunk) => {
    queue.push({ due: performance.now() + delayMs, chunk });
    queuedBytes += chunk.length;
    if (queuedBytes >= QUEUE_HIGH_BYTES) from.pause();
    if (timer === null && !waitingForDrain && head === queue.length - 1) {
      timer = setTimeout(flush, delayMs);
    }
  });
  from.on('end', () => {
    ended = true;
    if (timer === null && !waitingForDrain && head >= queue.length) to.end();
  });
  from.on('close', () => {
    if (timer !== null && !ended) clearTimeout(timer);
  });
}

/**
 * Start a relay in this process.
 * @param {{ listenHost?: string, listenPort?: number, toHost: string, toPort: number, delayMs: number }} options
 * @returns {Promise<{ port: number, close(): Promise<void> }>}
 */
export async function startRelay({ listenHost = '127.0.0.1', listenPort = 0, toHost, toPort, delayMs }) {
  const sockets = new Set();
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const upstream = connect({ host: toHost, port: toPort, noDelay: true, allowHalfOpen: true });
    client.setNoDelay(true);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const teardown = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', teardown);
    upstream.on('error', teardown);
    // Half-closes travel through the delay queues (allowHalfOpen); a side closed by an error
    // takes the other with it.
    client.on('close', (hadError) => hadError && upstream.destroy());
    upstream.on('close', (hadError) => hadError && client.destroy());
    delayedPipe(client, upstream, delayMs);
    delayedPipe(upstream, client, delayMs);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, listenHost, resolve);
  });
  return {
    port: server.address().port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Start a relay in a child process (this file run as a command).
 * @returns {Promise<{ port: number, pid: number, stop(): Promise<void> }>}
 */
export function spawnRelay({ toHost, toPort, delayMs, listenPort = 0 }) {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [self, '--listen', String(listenPort), '--to', `${toHost}:${toPort}`, '--delay-ms', String(delayMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`latency relay exited (${code}) before listening`)));
    child.stdout.on('data', (chunk) => {
      out += chunk.toString('utf8');
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        child.removeAllListeners('exit');
        const exited = new Promise((r) => child.once('exit', r));
        resolve({
          port: Number(line),
          pid: child.pid,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) {
              child.kill('SIGTERM');
              await exited;
            }
          },
        });
      }
    });
  });
}

async function main() {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string', default: '0' },
      'listen-host': { type: 'string', default: '127.0.0.1' },
      to: { type: 'string' },
      'delay-ms': { type: 'string', default: '0' },
    },
  });
  const match = /^(.*):(\d+)$/.exec(values.to ?? '');
  const delayMs = Number(values['delay-ms']);
  if (!match || !Number.isFinite(delayMs) || delayMs < 0) {
    process.stderr.write('usage: latency-relay.mjs --listen PORT --to HOST:PORT --delay-ms N\n');
    process.exit(2);
  }
  const relay = await startRelay({ listenHost: values['listen-host'], listenPort: Number(values.listen), toHost: match[1], toPort: Number(match[2]), delayMs });
  process.stdout.write(`${relay.port}\n`);
  process.stderr.write(`latency-relay: ${values['listen-host']}:${relay.port} -> ${values.to}, +${delayMs} ms each way\n`);
  const stop = () => relay.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
