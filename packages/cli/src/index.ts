/**
 * The `ketter` command as a function, for embedding and tests.
 *
 * @packageDocumentation
 */
import { CommanderError } from 'commander';
import { ErrorCode } from '@ketter/core';
import { describeError, errorLine, ExitCode, exitCodeFor } from './exit.js';
import { defaultIO, type CliIO } from './io.js';
import { buildProgram } from './program.js';
import { redact } from './redact.js';

export type { CliIO, OutputStream } from './io.js';
export { ExitCode } from './exit.js';
export { redact } from './redact.js';

/**
 * Run `ketter` with `argv` (the arguments after the program name) and return the exit
 * status: 0 success, 1 the job failed, 2 invalid usage or input, 130 cancelled. Never
 * throws and never exits the process; errors are printed as one line on `io.stderr`.
 */
export async function main(argv: readonly string[], io: Partial<CliIO> = {}): Promise<number> {
  const streams: CliIO = { ...defaultIO(), ...io };
  const result = { code: ExitCode.OK as number };
  const json = argv.includes('--json');
  try {
    await buildProgram(streams, result).parseAsync([...argv], { from: 'user' });
    return result.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end parsing with exit code 0; everything else is misuse.
      if (error.exitCode === 0) return ExitCode.OK;
      if (error.code === 'commander.help' || error.code === 'commander.helpDisplayed') return ExitCode.USAGE;
      const info = { code: ErrorCode.INVALID_REQUEST, message: error.message.replace(/^error:\s*/, '') };
      if (json) streams.stdout.write(redact(`${JSON.stringify({ jobId: null, status: 'rejected', error: info }, null, 2)}\n`));
      streams.stderr.write(errorLine(info, ' (see ketter --help)'));
      return ExitCode.USAGE;
    }
    const info = describeError(error);
    if (json) streams.stdout.write(redact(`${JSON.stringify({ jobId: null, status: 'rejected', error: info }, null, 2)}\n`));
    streams.stderr.write(errorLine(info));
    return exitCodeFor(error);
  }
}
