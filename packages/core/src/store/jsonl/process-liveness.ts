import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** Who holds something: enough to tell later whether that process still runs. */
export interface ProcessIdentity {
  pid: number;
  host: string;
  /**
   * The process's start time in clock ticks since boot (Linux `/proc/<pid>/stat`), so a
   * recycled pid — common in containers, where a restarted worker gets the same small
   * pid — is not mistaken for the original holder. Absent where `/proc` is not available.
   */
  startTicks?: string;
}

/** State and start time of a process from `/proc`, or undefined when they cannot be read. */
function procStat(pid: number): { state: string; startTicks: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [state, startTicks] = [fields[0], fields[19]]; // fields 3 and 22 overall
    return state && startTicks ? { state, startTicks } : undefined;
  } catch {
    return undefined;
  }
}

let self: ProcessIdentity | undefined;

/** This process's identity. */
export function currentProcess(): ProcessIdentity {
  if (!self) {
    const startTicks = procStat(process.pid)?.startTicks;
    self = { pid: process.pid, host: hostname(), ...(startTicks === undefined ? {} : { startTicks }) };
  }
  return self;
}

/**
 * Whether the process is (as far as this machine can tell) still running. Holders on other
 * hosts are presumed alive: this store cannot see them, and guessing "dead" would let two
 * jobs write the same path.
 */
export function isAlive(holder: ProcessIdentity): boolean {
  const me = currentProcess();
  if (holder.host !== me.host) return true;
  if (holder.pid === me.pid) return holder.startTicks === undefined || holder.startTicks === me.startTicks;
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else — alive.
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const stat = procStat(holder.pid);
  if (stat === undefined) return true;
  // A killed child its parent has not reaped yet still answers signal 0.
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return holder.startTicks === undefined || stat.startTicks === holder.startTicks;
}
