import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * A few fixed buffers a large local file is read through into the archive. A buffer the
 * writer copied (a short last piece) is free as soon as the writer asks for the next one;
 * one it handed to the destination's stream is free once the stream has written it. A
 * stream of the file instead allocates a buffer per chunk, and the main thread allocates
 * too little else for the garbage collector to free them soon: packing a 512 MiB file left
 * ~50 MiB of them waiting.
 */
export class ReadSlots {
  readonly #free: Buffer[];
  readonly #waiting: Array<(slot: Buffer) => void> = [];
  /**
   * Slots handed to the sink since they were last taken, by their memory: such a slot comes
   * back through the write's callback only (which may run before the writer asks for more).
   */
  readonly #handed = new Set<ArrayBufferLike>();
  /** Every slot, by its memory. */
  readonly #slots = new Map<ArrayBufferLike, Buffer>();

  constructor(count: number, bytes: number) {
    this.#free = Array.from({ length: count }, () => Buffer.allocUnsafeSlow(bytes));
    for (const slot of this.#free) this.#slots.set(slot.buffer, slot);
  }

  /**
   * Called by the sink with each chunk it is about to write: for a chunk in one of these
   * slots, the callback that frees the slot once the chunk is written; otherwise undefined.
   */
  handedToSink(chunk: Uint8Array): (() => void) | undefined {
    const slot = this.#slots.get(chunk.buffer);
    if (slot === undefined) return undefined;
    this.#handed.add(slot.buffer);
    return () => this.#give(slot);
  }

  /**
   * The bytes of a local file, read into the slots in order, each piece yielded as a view
   * of its slot. A link is not followed (the scan listed a file). Errors are the system's.
   */
  async *read(abs: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const file = await open(abs, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    try {
      let position = 0;
      for (;;) {
        signal?.throwIfAborted();
        const slot = await this.#take();
        let n: number;
        try {
          ({ bytesRead: n } = await file.read(slot, 0, slot.length, position));
        } catch (error) {
          this.#give(slot);
          throw error;
        }
        if (n === 0) {
          this.#give(slot);
          return;
        }
        position += n;
        yield slot.subarray(0, n);
        // The writer asked for more: it has copied this piece (the slot is free now) or
        // handed it to the sink (the write's callback frees it, perhaps already has).
        if (!this.#handed.has(slot.buffer)) this.#give(slot);
      }
    } finally {
      await file.close();
    }
  }

  async #take(): Promise<Buffer> {
    const slot = this.#free.pop() ?? (await new Promise<Buffer>((resolve) => this.#waiting.push(resolve)));
    this.#handed.delete(slot.buffer);
    return slot;
  }

  #give(slot: Buffer): void {
    const waiter = this.#waiting.shift();
    if (waiter) waiter(slot);
    else this.#free.push(slot);
  }
}
