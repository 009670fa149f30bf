import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '@tinyx/builder/internals';

/** The environment an image's app gets from /init: its own PATH, nothing of the test's. */
export const IMAGE_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' };

/** Unpacks an initrd (gz, xz, zst or plain) with GNU cpio (an independent reader) into a fresh directory; removed at teardown. */
export async function unpackInitrd(t: { teardown(fn: () => Promise<void>): void }, initrd: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-root-'));
  t.teardown(() => removeTree(dir));
  // The root directory as the image has it: mkdtemp's 0700 would stop an app that dropped root at "/".
  await chmod(dir, 0o755);
  const decompress = initrd.endsWith('.xz') ? 'xz -dc' : initrd.endsWith('.zst') ? 'zstd -dcq' : initrd.endsWith('.gz') ? 'gzip -dc' : 'cat';
  execFileSync('sh', ['-c', `${decompress} "$1" | cpio -idm --quiet`, 'sh', initrd], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return dir;
}

/** Runs argv inside the unpacked root with chroot, as the image would (an empty environment, its own PATH). */
export function runInRoot(root: string, argv: string[]): { code: number; output: string } {
  const result = spawnSync('chroot', [root, ...argv], {
    env: IMAGE_ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  return { code: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** The host's processes whose root is the unpacked root or a directory in it (a daemon's chroot), with their uid. */
export async function processesInRoot(root: string): Promise<{ pid: number; comm: string; uid: number; root: string }[]> {
  const found: { pid: number; comm: string; uid: number; root: string }[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const processRoot = await readlink(`/proc/${name}/root`);
      if (processRoot !== root && !processRoot.startsWith(`${root}/`)) continue;
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      found.push({ pid: Number(name), comm: status.match(/^Name:\s*(.*)$/m)?.[1] ?? '', uid: Number(status.match(/^Uid:\s*(\d+)/m)?.[1]), root: processRoot });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

/** Waits until `ready()` holds, checking every 100 ms; false when `timeoutMs` passes first or `gaveUp()` holds. */
export async function waitFor(ready: () => Promise<boolean> | boolean, timeoutMs: number, gaveUp: () => boolean = () => false): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await ready()) return true;
    if (gaveUp()) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}
