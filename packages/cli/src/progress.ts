import type { EventMap } from '@ketter/core';
import { formatBytes, formatRate } from './format.js';
import type { OutputStream } from './io.js';

type Progress = EventMap['job.progress'];

/**
 * A one-line progress bar for a terminal: phase, files, bytes, rate and percentage.
 * Redrawn only when the engine emits `job.progress` (which it throttles), so it adds
 * no timers of its own. Draw only on a TTY: logs and pipes get the final summary alone.
 */
export class ProgressBar {
  readonly #out: OutputStream;
  readonly #started = Date.now();
  #drawn = false;

  constructor(out: OutputStream) {
    this.#out = out;
  }

  update(event: Progress): void {
    const columns = this.#out.columns && this.#out.columns > 0 ? this.#out.columns : 80;
    const width = Math.max(20, columns - 1);
    const ratio = event.bytesTotal > 0 ? event.bytesDone / event.bytesTotal : event.filesTotal > 0 ? event.filesDone / event.filesTotal : 0;
    const clamped = Math.min(1, Math.max(0, ratio));
    // Most useful first: a narrow terminal cuts the bar, not the numbers.
    const stats = [
      event.phase.padEnd(13),
      `${(clamped * 100).toFixed(0).padStart(3)}%`,
      `${event.filesDone}/${event.filesTotal} files`,
      `${formatBytes(event.bytesDone)}/${formatBytes(event.bytesTotal)}`,
      formatRate(event.bytesDone, Date.now() - this.#started),
    ].join('  ');
    const room = width - stats.length - 4;
    const barWidth = Math.min(30, room);
    const bar = barWidth >= 10 ? `  [${'#'.repeat(Math.round(clamped * barWidth)).padEnd(barWidth, '-')}]` : '';
    this.#out.write(`\r${(stats + bar).slice(0, width)}\x1b[K`);
    this.#drawn = true;
  }

  /** Erase the bar so the next message starts on a clean line. */
  clear(): void {
    if (this.#drawn) this.#out.write('\r\x1b[K');
    this.#drawn = false;
  }
}
