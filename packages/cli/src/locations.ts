import { lstatSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { Portal, type Adapter, type Location } from '@ketter/core';
import { FsAdapter } from '@ketter/adapter-fs';
import { PORTAL_NAME, type LoadedConfig, type PortalConfig } from './config.js';
import { UsageError } from './exit.js';
import { importOptional } from './optional-import.js';
import { redact } from './redact.js';

/** The name of the ad-hoc portal local paths go through: the whole filesystem, rooted at `/`. */
export const LOCAL_PORTAL = 'local';

/** What the CLI uses of `@ketter/adapter-sftp`, loaded only when an SFTP location is named. */
interface SftpModule {
  SftpAdapter: {
    new (options: Record<string, unknown>): Adapter;
    fromUrl(url: string, options?: Record<string, unknown>): { adapter: Adapter; path: string };
  };
}

/** How a location argument was read, before any adapter exists. */
export type ParsedLocation =
  | { kind: 'local'; path: string }
  | { kind: 'portal'; portal: string; path: string }
  | { kind: 'sftp'; url: string; path: string };

/**
 * Read `A`/`B` of a transfer: `sftp://user@host[:port]/path`, `portal:path` from the
 * config, or a local path. A local path containing `:` still works when it exists or
 * starts with `/` or `.`.
 */
export function parseLocation(text: string, cwd: string, loaded: LoadedConfig): ParsedLocation {
  if (text === '') throw new UsageError('empty location');
  if (/^sftp:\/\//i.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new UsageError(`invalid SFTP URL '${redact(text)}' (sftp://user@host[:port]/path)`);
    }
    if (url.hostname === '') throw new UsageError(`invalid SFTP URL '${redact(text)}': no host`);
    if (url.password !== '') {
      throw new UsageError(`a password in an sftp:// URL is not allowed: configure an sftp portal with auth.passwordEnv, a key file or the agent`);
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      throw new UsageError(`invalid SFTP URL '${redact(text)}': malformed percent-encoding`);
    }
    return { kind: 'sftp', url: text, path: path.replace(/^\/+/, '') };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) throw new UsageError(`unsupported location '${redact(text)}' (a local path, portal:path or sftp://…)`);
  const local = (): ParsedLocation => ({ kind: 'local', path: isAbsolute(text) ? resolve(text) : resolve(cwd, text) });
  if (text.startsWith('/') || text.startsWith('.')) return local();
  const colon = text.indexOf(':');
  if (colon <= 0 || existsLocally(resolve(cwd, text))) return local();
  const name = text.slice(0, colon);
  if (!PORTAL_NAME.test(name)) return local();
  if (loaded.config.portals?.[name] === undefined) {
    const where = loaded.file === null ? 'no config file was found' : `not in ${loaded.file}`;
    throw new UsageError(`unknown portal '${name}' (${where}); for a local path containing ':' write ./${text}`);
  }
  // `nexis:/projects/x` and `nexis:projects/x` name the same place: paths are portal-relative.
  return { kind: 'portal', portal: name, path: text.slice(colon + 1).replace(/^\/+/, '') };
}

function existsLocally(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates and connects the adapters a command needs, one per portal, and closes them all
 * at the end. Source and destination on the same portal share one adapter.
 */
export class PortalRegistry {
  readonly #portals = new Map<string, Promise<Portal>>();
  readonly #opened: Adapter[] = [];

  constructor(
    private readonly loaded: LoadedConfig,
    private readonly cwd: string,
    private readonly env: Record<string, string | undefined>,
  ) {}

  /**
   * Parse and connect a location argument. With `background`, an SFTP portal is returned
   * while it still connects: its operations wait for the connection (and fail with its
   * error), so the command can open the store and scan the source meanwhile.
   */
  async locate(text: string, options: { background?: boolean } = {}): Promise<Location> {
    const background = options.background === true;
    const parsed = parseLocation(text, this.cwd, this.loaded);
    switch (parsed.kind) {
      case 'local':
        return { portal: await this.#portal('local:', () => new FsAdapter({ root: '/' }), LOCAL_PORTAL), path: parsed.path.replace(/^\/+/, '') };
      case 'portal': {
        const settings = this.loaded.config.portals?.[parsed.portal] as PortalConfig;
        return {
          portal: await this.#portal(`portal:${parsed.portal}`, () => this.#configured(parsed.portal, settings), parsed.portal, background && settings.type === 'sftp'),
          path: parsed.path,
        };
      }
      case 'sftp': {
        const url = new URL(parsed.url);
        // The URL without its path identifies the connection; the path is the job's.
        const key = `sftp://${url.username ? `${url.username}@` : ''}${url.host}`;
        const name = url.hostname.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'sftp';
        const portal = await this.#portal(key, async () => {
          const sftp = await importOptional<SftpModule>('@ketter/adapter-sftp', 'an sftp:// location', this.cwd);
          // The URL names the host and the path; host keys and identities come from ~/.ssh, as with ssh.
          return sftp.SftpAdapter.fromUrl(key, this.env.HOME ? { home: this.env.HOME } : {}).adapter;
        }, name, background);
        return { portal, path: parsed.path };
      }
    }
  }

  async #configured(name: string, settings: PortalConfig): Promise<Adapter> {
    if (settings.type === 'fs') return new FsAdapter({ root: resolve(this.loaded.baseDir, settings.root) });
    const { type: _type, ...options } = settings;
    const sftp = await importOptional<SftpModule>('@ketter/adapter-sftp', `portal '${name}' (sftp)`, this.cwd);
    return new sftp.SftpAdapter(options);
  }

  #portal(key: string, create: () => Adapter | Promise<Adapter>, name: string, background = false): Promise<Portal> {
    let pending = this.#portals.get(key);
    if (pending === undefined) {
      pending = (async () => {
        const adapter = await create();
        this.#opened.push(adapter);
        const connecting = adapter.connect();
        // Not awaited here: the first operation on the portal waits for it and reports its failure.
        if (background) connecting.catch(() => undefined);
        else await connecting;
        return new Portal(name, adapter);
      })();
      this.#portals.set(key, pending);
    }
    return pending;
  }

  /** Close every adapter opened, ignoring close errors (the command's own outcome matters more). */
  async closeAll(): Promise<void> {
    const adapters = this.#opened.splice(0);
    await Promise.allSettled(adapters.map((a) => a.close()));
  }
}
