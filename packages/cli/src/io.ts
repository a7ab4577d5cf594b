/** Where the CLI writes and what it reads from its surroundings; injectable for embedding and tests. */
export interface CliIO {
  stdout: OutputStream;
  stderr: OutputStream;
  env: Record<string, string | undefined>;
  cwd: string;
}

/** The part of a writable stream the CLI uses; `isTTY`/`columns` decide whether to draw progress. */
export interface OutputStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function defaultIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}
