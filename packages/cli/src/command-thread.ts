import { parentPort, workerData } from 'node:worker_threads';
import { describeError, errorLine } from './exit.js';
import { main } from './index.js';
import type { CommandThreadData, SignalMessage, StreamInfo, UnhandledSignalMessage } from './thread-protocol.js';

/*
 * The command, on the thread the launcher (`bin.ts`) starts. Its process.stdout and
 * process.stderr are relayed by Node to the launcher's, in order, before the thread's exit
 * is reported; whether they are terminals comes from the launcher.
 */

const { stdout, stderr } = workerData as CommandThreadData;
const relayed = (stream: NodeJS.WritableStream, info: StreamInfo) => ({
  write: (chunk: string) => stream.write(chunk),
  isTTY: info.isTTY,
  ...(info.columns === undefined ? {} : { columns: info.columns }),
});

// A signal relayed by the launcher goes to whatever the command set up for it (a transfer
// cancels); with nothing listening, the launcher applies the default action.
const port = parentPort;
if (port === null) throw new Error('the ketter command runs on the thread its launcher starts (bin.js)');
port.on('message', ({ signal }: SignalMessage) => {
  if (process.listenerCount(signal) > 0) process.emit(signal, signal);
  else port.postMessage({ unhandled: signal } satisfies UnhandledSignalMessage);
});
port.unref();

// Users see one line, never a stack, even for a fault nobody anticipated.
process.on('uncaughtException', (error) => {
  process.stderr.write(errorLine(describeError(error)));
  process.exit(1);
});

const code = await main(process.argv.slice(2), {
  stdout: relayed(process.stdout, stdout),
  stderr: relayed(process.stderr, stderr),
});
// Let buffered output reach the launcher before the thread ends; adapters and pools may hold
// handles open.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
