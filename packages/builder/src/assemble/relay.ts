import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundledDataDir } from '../bundled-data.js';
import { requireTools } from '@tinyx/image';
import { run } from '@tinyx/image';

/**
 * A port the app listens on at a loopback address only, and that address:
 * the image's /init has tinyx-relay forward the VM's own address to it.
 */
export interface LoopbackRelay {
  port: number;
  /** 127.0.0.1 (or another 127/8 address) or ::1. */
  address: string;
}

/** Where the relay is in the image. */
export const RELAY_PATH = '/usr/sbin/tinyx-relay';

/** The C source of the image's helpers (helpers/ of the checkout, or the installed package's copy). */
export const BUNDLED_HELPERS_DIR = bundledDataDir('helpers');

const SOURCE = join(BUNDLED_HELPERS_DIR, 'tinyx-relay.c');

/**
 * Freestanding, static, stripped, no build id: the same source and gcc give
 * the same bytes wherever the image is built.
 */
export const RELAY_CFLAGS = [
  '-Os',
  '-static',
  '-nostdlib',
  '-ffreestanding',
  '-fno-stack-protector',
  '-fno-pie',
  '-no-pie',
  '-fno-asynchronous-unwind-tables',
  '-fno-ident',
  '-Wl,--build-id=none',
  '-Wl,-z,noexecstack',
  '-s',
];

/** tinyx-relay (helpers/tinyx-relay.c) compiled with the host's gcc into `dir`: its bytes. */
export async function compileRelay(dir: string, signal?: AbortSignal): Promise<Buffer> {
  await requireTools(['gcc']);
  const out = join(dir, 'tinyx-relay');
  await run('gcc', [...RELAY_CFLAGS, '-o', out, SOURCE], { signal });
  return readFile(out);
}

/** The relay's arguments for /init: LISTEN_ADDR PORT TARGET_ADDR per port, the VM's address given as a shell word. */
export function relayArguments(relays: readonly LoopbackRelay[], listenWord: string): string {
  return relays.map((r) => `${listenWord} ${r.port} ${r.address}`).join(' ');
}
