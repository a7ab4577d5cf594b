import { ErrorCode, KetterError, cancelledError } from '@ketter/core';
// ssh2 is CommonJS: its named exports are not visible to Node's ESM loader.
import ssh2, { type Client, type ConnectConfig, type SFTPWrapper } from 'ssh2';

const { Client: SshClient } = ssh2;
import type { ResolvedAuth } from './credentials.js';
import type { HostKeyPolicy } from './host-key.js';
import { abandonChannel, serverExtensions } from './sftp-calls.js';

/** Everything needed to open one SSH connection; secrets are already resolved and live only here. */
export interface ConnectParams {
  host: string;
  port: number;
  username: string;
  endpoint: string;
  hostKey: HostKeyPolicy;
  auth: ResolvedAuth;
  channels: number;
  readyTimeoutMs: number;
  keepaliveIntervalMs: number;
}

/** Output of one remote command. */
export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: string;
}

/** Remote stderr kept for messages; more is noise. */
const MAX_STDERR = 16 * 1024;

/**
 * One SSH connection with a pool of SFTP sessions on it. Requests are pipelined within a
 * session; several sessions let large files stream side by side without queueing behind
 * each other's window. The connection is single-use: once lost, the adapter opens a new one.
 */
export class SshConnection {
  #alive = true;
  readonly #inflight: Map<SFTPWrapper, number>;
  readonly #lostListeners: Array<() => void> = [];

  private constructor(
    readonly client: Client,
    readonly channels: readonly SFTPWrapper[],
    readonly extensions: Readonly<Record<string, string>>,
  ) {
    this.#inflight = new Map(channels.map((c) => [c, 0]));
    const lost = (): void => this.#markLost();
    client.on('close', lost);
    client.on('end', lost);
    // After 'ready', errors only ever precede a close; listening keeps them from crashing the process.
    client.on('error', lost);
    for (const channel of channels) {
      channel.on('close', lost);
      channel.on('error', lost);
    }
  }

  get alive(): boolean {
    return this.#alive;
  }

  onLost(listener: () => void): void {
    this.#lostListeners.push(listener);
  }

  #markLost(): void {
    if (!this.#alive) return;
    this.#alive = false;
    for (const channel of this.channels) abandonChannel(channel);
    for (const listener of this.#lostListeners) listener();
    this.client.end();
  }

  /** The least busy SFTP session; `release` must be called when done with it. */
  acquire(): { sftp: SFTPWrapper; release: () => void } {
    let best = this.channels[0] as SFTPWrapper;
    let bestCount = this.#inflight.get(best) ?? 0;
    for (const channel of this.channels) {
      const count = this.#inflight.get(channel) ?? 0;
      if (count < bestCount) {
        best = channel;
        bestCount = count;
      }
    }
    this.#inflight.set(best, bestCount + 1);
    let released = false;
    return {
      sftp: best,
      release: () => {
        if (released) return;
        released = true;
        this.#inflight.set(best, (this.#inflight.get(best) ?? 1) - 1);
      },
    };
  }

  /** Run one command on the server and collect its output. */
  exec(command: string, signal?: AbortSignal): Promise<ExecResult> {
    if (!this.#alive) return Promise.reject(new Error('Not connected'));
    if (signal?.aborted) return Promise.reject(cancelledError(signal));
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) {
          reject(err);
          return;
        }
        const stdout: Buffer[] = [];
        let stderr = '';
        let aborted = false;
        const onAbort = (): void => {
          aborted = true;
          // Ask the server to stop the command, then drop the channel either way.
          try {
            stream.signal('TERM');
          } catch {
            /* servers may refuse signals */
          }
          stream.close();
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        stream.on('data', (chunk: Buffer) => stdout.push(chunk));
        stream.stderr.on('data', (chunk: Buffer) => {
          if (stderr.length < MAX_STDERR) stderr += chunk.toString('utf8');
        });
        stream.on('close', (code: number | null | undefined, sig: string | null | undefined) => {
          signal?.removeEventListener('abort', onAbort);
          if (aborted) reject(cancelledError(signal));
          else if (!this.#alive && code == null) reject(new Error('connection lost while a remote command ran'));
          else resolve({ code: code ?? null, signal: sig ?? null, stdout: Buffer.concat(stdout), stderr });
        });
      });
    });
  }

  close(): void {
    this.#markLost();
  }

  /**
   * Connect, verify the host key during key exchange (before any authentication), authenticate
   * and open `channels` SFTP sessions. Failures are KetterErrors: HOST_KEY_REJECTED,
   * AUTHENTICATION_FAILED or CONNECTION_ERROR.
   */
  static open(params: ConnectParams): Promise<SshConnection> {
    const client = new SshClient();
    let hostKeyRejection: string | undefined;
    const config: ConnectConfig = {
      host: params.host,
      port: params.port,
      username: params.username,
      readyTimeout: params.readyTimeoutMs,
      keepaliveInterval: params.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer): boolean => {
        const verdict = params.hostKey.verify(key);
        if (!verdict.ok) hostKeyRejection = verdict.reason;
        return verdict.ok;
      },
      authHandler: params.auth.methods,
      ...(params.hostKey.algorithms ? { algorithms: { serverHostKey: params.hostKey.algorithms as never } } : {}),
    };

    const ready = new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (error: KetterError): void => {
        if (settled) return;
        settled = true;
        client.end();
        reject(error);
      };
      client.once('ready', () => {
        settled = true;
        resolve();
      });
      client.on('error', (error: Error & { level?: string }) => {
        if (hostKeyRejection !== undefined) {
          fail(new KetterError(ErrorCode.HOST_KEY_REJECTED, `[sftp] ${hostKeyRejection}`, { transient: false }));
        } else if (error.level === 'client-authentication') {
          fail(
            new KetterError(
              ErrorCode.AUTHENTICATION_FAILED,
              `[sftp] authentication to ${params.endpoint} as '${params.username}' failed (tried: ${params.auth.described.join(', ')})`,
              { transient: false },
            ),
          );
        } else {
          const permanent = error.level === 'handshake' || error.level === 'protocol';
          fail(
            new KetterError(ErrorCode.CONNECTION_ERROR, `[sftp] cannot connect to ${params.endpoint}: ${error.message}`, {
              cause: error,
              transient: !permanent,
            }),
          );
        }
      });
      client.once('close', () =>
        fail(
          hostKeyRejection !== undefined
            ? new KetterError(ErrorCode.HOST_KEY_REJECTED, `[sftp] ${hostKeyRejection}`, { transient: false })
            : new KetterError(ErrorCode.CONNECTION_ERROR, `[sftp] connection to ${params.endpoint} closed during setup`),
        ),
      );
    });

    try {
      client.connect(config);
      // SSH sends many small packets that each wait on an answer (channel open, exec
      // request, SFTP requests). With Nagle's algorithm on, each such packet sent while
      // another is unacknowledged waits for the peer's delayed ACK: ~40 ms per remote
      // command. OpenSSH's client turns it off for the same reason.
      client.setNoDelay(true);
    } catch (error) {
      // Synchronous config errors (e.g. an algorithm list ssh2 refuses) carry no secrets.
      return Promise.reject(
        new KetterError(ErrorCode.INVALID_REQUEST, `[sftp] cannot connect to ${params.endpoint}: ${(error as Error).message}`, {
          cause: error,
        }),
      );
    }

    return ready.then(async () => {
      try {
        const channels = await openChannels(client, params.channels);
        return new SshConnection(client, channels, serverExtensions(channels[0] as SFTPWrapper));
      } catch (error) {
        client.end();
        throw new KetterError(ErrorCode.CONNECTION_ERROR, `[sftp] cannot open an SFTP session on ${params.endpoint}: ${(error as Error).message}`, {
          cause: error,
        });
      }
    });
  }
}

function openChannel(client: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => client.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))));
}

/**
 * Open up to `count` SFTP sessions. A server whose MaxSessions is lower refuses the extra
 * ones; fewer sessions only limit concurrency, so the pool keeps what it got (at least one).
 */
async function openChannels(client: Client, count: number): Promise<SFTPWrapper[]> {
  const first = await openChannel(client);
  const rest = await Promise.allSettled(Array.from({ length: count - 1 }, () => openChannel(client)));
  return [first, ...rest.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))];
}
