#!/usr/bin/env node
import { describeError, errorLine } from './exit.js';
import { main } from './index.js';

// A reader that goes away (`ketter jobs list | head`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
}
// Users see one line, never a stack, even for a fault nobody anticipated.
process.on('uncaughtException', (error) => {
  process.stderr.write(errorLine(describeError(error)));
  process.exit(1);
});

const code = await main(process.argv.slice(2));
process.exitCode = code;
// Let buffered output reach a pipe before exiting; adapters and pools may hold handles open.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
