/**
 * What the `ketter` launcher and the thread running the command tell each other (see
 * `bin.ts`). Kept free of imports: the launcher must not load the command's code.
 */

/** What the command thread cannot see for itself: its output is relayed, not a terminal. */
export interface StreamInfo {
  isTTY: boolean;
  columns?: number;
}

/** `workerData` of the command thread. */
export interface CommandThreadData {
  stdout: StreamInfo;
  stderr: StreamInfo;
}

/** Launcher → command thread: a signal the process received. */
export interface SignalMessage {
  signal: 'SIGINT' | 'SIGTERM';
}

/** Command thread → launcher: nothing was listening for a signal; take the default action. */
export interface UnhandledSignalMessage {
  unhandled: 'SIGINT' | 'SIGTERM';
}
