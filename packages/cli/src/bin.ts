#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import type { CommandThreadData, SignalMessage, StreamInfo, UnhandledSignalMessage } from './thread-protocol.js';

/*
 * The launcher. The command runs on a worker thread (`command-thread.ts`); this thread only
 * starts it and relays signals, its exit code and its output (which Node relays itself).
 *
 * Why a thread: a transfer makes short-lived objects per file at a high rate, and V8 then
 * grows the young generation to its default maximum, 32 MiB on this thread, whatever
 * little of it stays alive. A process cannot cap that for its own main thread once it
 * runs (only `--max-semi-space-size` on Node's command line can), but it can for a worker
 * (`resourceLimits`). For 20,000 files × 16 KiB the peak RSS fell from ~150 to ~131 MiB
 * — the worker's own start-up (~7 MiB) included — at no measurable cost in time.
 */

/**
 * The command thread's young generation. Measured on 20,000 files: 4 MiB saved ~2 MiB more,
 * 16 MiB cost ~10 MiB more, and 8 MiB was the fastest of the three.
 */
const YOUNG_GENERATION_MB = 8;

// A transfer's live heap is small and steady (the manifest is kept off it). V8's default
// lets the old generation grow to several times its live size between full collections;
// capping the growth at half of it took a 200,000-file copy from ~225 to ~195 MiB peak RSS
// at no measurable cost in time. The flag is process-wide: it reaches the command thread.
// Whoever passes their own setting keeps it.
if (!`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.includes('heap-growing-percent')) {
  setFlagsFromString('--heap-growing-percent=50');
}

// A reader that goes away (`ketter jobs list | head`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
}

const info = (stream: NodeJS.WriteStream): StreamInfo =>
  stream.isTTY ? { isTTY: true, columns: stream.columns } : { isTTY: false };

const data: CommandThreadData = { stdout: info(process.stdout), stderr: info(process.stderr) };
const thread = new Worker(new URL('./command-thread.js', import.meta.url), {
  argv: process.argv.slice(2),
  workerData: data,
  resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
});

// Signals reach this thread only. The command decides what one means (a transfer cancels
// cleanly); where it set nothing up, the default action applies, as for any process.
const relay = (signal: 'SIGINT' | 'SIGTERM'): void => {
  thread.postMessage({ signal } satisfies SignalMessage);
};
const signals = ['SIGINT', 'SIGTERM'] as const;
for (const signal of signals) process.on(signal, relay);
const release = (): void => {
  for (const signal of signals) process.off(signal, relay);
};
thread.on('message', (message: UnhandledSignalMessage) => {
  release();
  process.kill(process.pid, message.unhandled);
});
// The thread reports its own failures as one line; only a thread that could not run at all
// (out of memory, a broken installation) ends up here.
thread.on('error', (error: Error) => {
  process.stderr.write(`ketter: [IO_ERROR] ${error.message.split('\n')[0] ?? ''}\n`);
  process.exitCode = 1;
});
thread.on('exit', (code) => {
  release();
  process.exitCode ??= code;
});
