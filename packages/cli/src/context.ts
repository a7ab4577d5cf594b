import type { LoadedConfig } from './config.js';
import { loadConfig } from './config.js';
import type { CliIO } from './io.js';
import { redact } from './redact.js';
import { resolveStoreTarget, type StoreTarget } from './store.js';

/** Options every command accepts (declared on the program). */
export interface GlobalOptions {
  config?: string;
  store?: string;
}

/** What a command runs with: its streams, the loaded config and where the store is. */
export interface CommandContext {
  io: CliIO;
  out: Output;
  loaded: LoadedConfig;
  store: StoreTarget;
}

export function createContext(io: CliIO, globals: GlobalOptions): CommandContext {
  const loaded = loadConfig(globals.config, io.cwd);
  return { io, out: new Output(io), loaded, store: resolveStoreTarget(globals.store, loaded, io.env, io.cwd) };
}

/** All CLI output passes through here, so no line can carry a credential. */
export class Output {
  constructor(private readonly io: CliIO) {}

  /** Human text on stdout. */
  text(text: string): void {
    this.io.stdout.write(redact(text));
  }

  /** The single JSON document of a `--json` run. */
  json(value: unknown): void {
    this.io.stdout.write(`${redact(JSON.stringify(value, null, 2))}\n`);
  }

  /** Diagnostics on stderr. */
  error(text: string): void {
    this.io.stderr.write(redact(text));
  }
}
