import type { Writable } from 'node:stream';

/**
 * The archive writers' side of the caller's output stream: waits for 'drain'
 * so a multi-MB image never piles up in memory, counts the bytes, and turns
 * an error or early close of the stream into a rejection of the next write
 * instead of an uncaught 'error' event or a wait that never ends.
 *
 * It never ends the stream: the caller owns it, and may pipe it further.
 */
export class OutputSink {
  /** Bytes accepted so far. */
  bytes = 0;
  readonly #out: Writable;
  #error: Error | undefined;
  readonly #onError = (error: Error): void => {
    this.#error ??= error;
  };

  constructor(out: Writable) {
    this.#out = out;
    out.on('error', this.#onError);
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#check();
    this.bytes += chunk.byteLength;
    if (this.#out.write(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): void => {
        this.#out.off('drain', onDrain);
        this.#out.off('error', onError);
        this.#out.off('close', onClose);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = (): void => settle();
      const onError = (error: Error): void => settle(error);
      const onClose = (): void => settle(this.#error ?? closedError());
      this.#out.on('drain', onDrain);
      this.#out.on('error', onError);
      this.#out.on('close', onClose);
    });
  }

  /** Stops watching the stream's errors: from here on they are the caller's, e.g. its pipeline's. */
  release(): void {
    this.#out.off('error', this.#onError);
  }

  #check(): void {
    if (this.#error) throw this.#error;
    if (this.#out.destroyed || this.#out.writableEnded) throw closedError();
  }
}

function closedError(): Error {
  return new Error('the output stream closed before the archive was complete');
}
