import { open } from 'node:fs/promises';

/** A console line and when the host saw it, in ms since the VM's start (its startedAt). */
export interface StampedLine {
  text: string;
  atMs: number;
}

/**
 * Watches a console file as the VM writes it and stamps each new line with
 * the host's time. A guest's own clock (printk's timestamps) starts with its
 * kernel; these stamps tie it to the VMM's start. The file is read every
 * `everyMs` (2 ms): a line is stamped at most that late.
 */
export function recordConsole(path: string, origin: number, everyMs = 2): { stop(): Promise<StampedLine[]> } {
  const lines: StampedLine[] = [];
  let partial = '';
  let offset = 0;
  let stopped = false;
  const decoder = new TextDecoder();
  const buffer = Buffer.alloc(64 * 1024);
  const take = (chunk: string, at: number): void => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) lines.push({ text: text.replace(/\r$/, ''), atMs: at });
  };
  const loop = (async () => {
    let file: Awaited<ReturnType<typeof open>> | undefined;
    try {
      for (;;) {
        const done = stopped;
        file ??= await open(path, 'r').catch(() => undefined);
        if (file) {
          for (;;) {
            const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
            if (bytesRead === 0) break;
            offset += bytesRead;
            take(decoder.decode(buffer.subarray(0, bytesRead), { stream: true }), performance.now() - origin);
          }
        }
        if (done) break;
        await new Promise((resolve) => setTimeout(resolve, everyMs));
      }
    } finally {
      await file?.close();
    }
    if (partial) lines.push({ text: partial, atMs: performance.now() - origin });
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return lines;
    },
  };
}
