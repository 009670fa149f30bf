import { readFile, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { TinyxError } from './errors.js';
import { run } from '@tinyx/image';

/** Mount points at or below `dir`, deepest first (the order to unmount them in). */
export async function mountsBelow(dir: string): Promise<string[]> {
  const root = resolve(dir);
  const table = await readFile('/proc/mounts', 'utf8');
  const points = table
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((p): p is string => p !== undefined)
    // /proc/mounts escapes space, tab, newline and backslash as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => p === root || p.startsWith(`${root}/`));
  // Later mounts can stack on earlier ones: unmount in reverse table order, deepest first.
  return [...new Set(points.reverse())].sort((a, b) => b.split('/').length - a.split('/').length);
}

export async function mount(args: readonly string[], signal?: AbortSignal): Promise<void> {
  await run('mount', args, { signal });
}

/**
 * Unmounts everything at or below `dir`. Runs in cleanup paths, so it takes no
 * signal: it must finish even after Ctrl-C. A busy mount (a process still
 * inside) is retried, then detached lazily so that it goes once the last user does.
 */
export async function unmountBelow(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const points = await mountsBelow(dir);
    if (points.length === 0) return;
    for (const point of points) {
      const lazy = attempt >= 3;
      await run('umount', lazy ? ['-l', point] : [point], { allowFailure: true });
    }
    if (attempt >= 1) await new Promise((r) => setTimeout(r, 200 * attempt));
  }
  const left = await mountsBelow(dir);
  if (left.length > 0) throw new TinyxError('E_UNMOUNT', `could not unmount ${left.join(', ')}`, { hint: `find what holds it with: fuser -vm ${left[0]}` });
}

/**
 * Removes a temporary tree. Everything mounted below it is unmounted first and
 * the removal refuses to start while a mount remains: a bind-mounted /dev or
 * /proc inside a chroot must never be walked by rm.
 */
export async function removeTree(dir: string): Promise<void> {
  await unmountBelow(dir);
  if ((await mountsBelow(dir)).length > 0) throw new TinyxError('E_UNMOUNT', `refusing to remove ${dir}: something is still mounted below it`);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}
