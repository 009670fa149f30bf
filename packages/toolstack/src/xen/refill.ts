import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { XenBackendOptions } from './backend.js';

/** What the refill process is given: the backend's options, the image and the shape to refill. */
export interface RefillRequest {
  backend: XenBackendOptions;
  imageDir: string;
  shape: { type: 'pvh' | 'pv'; memoryMiB: number; vcpus: number };
}

/**
 * The pool refills itself after a run takes a domain: a detached process of
 * its own (refill-main.js) fills it back to the size `pool fill` last asked
 * for, so that the run returns now. The fill's lock (pool.ts) keeps two
 * refills from overfilling.
 */
export function refillInBackground(backend: XenBackendOptions, imageDir: string, shape: RefillRequest['shape']): void {
  const request: RefillRequest = { backend, imageDir, shape };
  const main = fileURLToPath(new URL('./refill-main.js', import.meta.url));
  spawn(process.execPath, [main, JSON.stringify(request)], { detached: true, stdio: 'ignore' }).unref();
}
