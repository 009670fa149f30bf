import { createServer } from 'node:net';

/** Whether 127.0.0.1:port can be bound now (QEMU's forward would fail on a port in use, with a message that names no option). */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Ports freePort gave out lately, with when: not given out again while a QEMU may still be about to bind them. */
const givenOut = new Map<number, number>();
const GIVEN_OUT_MS = 60_000;

/**
 * A free TCP port on the loopback, for a forward the user did not name. The
 * kernel picks it, and may pick it again for the next caller once it is
 * closed, before the QEMU it was for binds it: 100 VMs started at once drew
 * the same port twice. So a port given out in the last minute is not given
 * out again by this process (another process can still take it: the backend
 * starts QEMU again on another port then).
 */
export async function freePort(): Promise<number> {
  const now = Date.now();
  for (const [port, at] of givenOut) if (now - at > GIVEN_OUT_MS) givenOut.delete(port);
  for (;;) {
    const port = await kernelFreePort();
    if (givenOut.has(port)) continue;
    givenOut.set(port, now);
    return port;
  }
}

function kernelFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
