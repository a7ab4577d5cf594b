import type { Adapter } from './adapter.js';
import { ErrorCode, KetterError } from './errors.js';
import { joinPath, normalizeRelative, resolveInside } from './paths.js';

/** Symlink hops allowed while resolving one path, as in POSIX's SYMLOOP_MAX. */
const MAX_SYMLINK_HOPS = 40;

/**
 * A named storage endpoint: an adapter plus its root. The portal is the one place where
 * paths are confined: every path a job names goes through {@link Portal.resolve} before an
 * adapter sees it.
 */
export class Portal {
  constructor(
    /** The name operators use (`nexis`, `delivery`); appears in events and errors. */
    readonly name: string,
    readonly adapter: Adapter,
  ) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
      throw new KetterError(ErrorCode.INVALID_REQUEST, `invalid portal name '${name}' (letters, digits, '.', '_', '-')`);
    }
  }

  /**
   * Confine `input` to the portal root and resolve symlinks in its parent directories.
   * Refuses `..`, absolute paths and any symlink whose target leaves the root
   * (`PATH_NOT_ALLOWED`); a symlink as the last segment is refused with
   * `SYMLINK_NOT_ALLOWED` because Ketter never copies through links. Missing trailing
   * segments are allowed (a destination may not exist yet).
   */
  async resolve(input: string): Promise<string> {
    const adapter = this.adapter;
    let pending = normalizeRelative(input, this.name).split('/').filter(Boolean);
    let resolved: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const segment = pending.shift() as string;
      const candidate = [...resolved, segment];
      const stat = await adapter.stat(candidate.join('/'));
      if (stat === null) {
        // Nothing below a missing segment can be a link: the rest is taken as written.
        resolved = [...candidate, ...pending];
        break;
      }
      if (stat.kind !== 'symlink') {
        resolved = candidate;
        continue;
      }
      if (++hops > MAX_SYMLINK_HOPS) throw this.#notAllowed(input, 'too many symbolic links');
      const target = await adapter.readlink(candidate.join('/'));
      const next = this.#linkTarget(resolved, target);
      if (next === null) throw this.#notAllowed(input, 'symbolic link leads outside the portal root');
      if (pending.length === 0) {
        throw new KetterError(ErrorCode.SYMLINK_NOT_ALLOWED, `[${this.name}] '${input}' is a symbolic link; Ketter does not follow links`, {
          portal: this.name,
          path: input,
        });
      }
      pending = [...next, ...pending];
      resolved = [];
    }
    return joinPath(...resolved);
  }

  /** Lock namespace key of a resolved path: overlapping keys mean overlapping storage. */
  lockKey(resolvedPath: string): string {
    const root = this.adapter.root.replace(/\/+$/, '');
    return `${this.adapter.id}:${root}${resolvedPath === '' ? '' : `/${resolvedPath}`}`;
  }

  /** The path as operators write it, for messages and events. */
  describe(resolvedPath: string): string {
    return `${this.name}:${resolvedPath === '' ? '/' : resolvedPath}`;
  }

  #linkTarget(parent: readonly string[], target: string): string[] | null {
    if (target.startsWith('/')) {
      const root = this.adapter.root.replace(/\/+$/, '');
      if (target !== root && !target.startsWith(`${root}/`)) return null;
      return resolveInside([], target.slice(root.length));
    }
    return resolveInside(parent, target);
  }

  #notAllowed(input: string, why: string): KetterError {
    return new KetterError(ErrorCode.PATH_NOT_ALLOWED, `[${this.name}] path not allowed (${why}): '${input}'`, {
      portal: this.name,
      path: input,
    });
  }
}
