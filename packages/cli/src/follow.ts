import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

/** Copies what is appended to a file as it grows (the console log), like tail -f. */
export function followFile(path: string, write: (chunk: Buffer) => void, signal: AbortSignal): { stop(): Promise<void> } {
  let offset = 0;
  let stopped = false;
  const pump = async (): Promise<void> => {
    const size = (await stat(path).catch(() => ({ size: 0 }))).size;
    if (size > offset) {
      for await (const chunk of createReadStream(path, { start: offset, end: size - 1 })) write(chunk as Buffer);
      offset = size;
    }
  };
  const loop = (async () => {
    while (!stopped && !signal.aborted) {
      await pump();
      await new Promise((r) => setTimeout(r, 100));
    }
    await pump();
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}
