import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '@tinyx/builder/internals';

/** Unpacks an initrd (gz, xz, zst or plain) with GNU cpio (an independent reader) into a fresh directory; removed at teardown. */
export async function unpackInitrd(t: { teardown(fn: () => Promise<void>): void }, initrd: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-root-'));
  t.teardown(() => removeTree(dir));
  const decompress = initrd.endsWith('.xz') ? 'xz -dc' : initrd.endsWith('.zst') ? 'zstd -dcq' : initrd.endsWith('.gz') ? 'gzip -dc' : 'cat';
  execFileSync('sh', ['-c', `${decompress} "$1" | cpio -idm --quiet`, 'sh', initrd], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  return dir;
}

/** Runs argv inside the unpacked root with chroot, as the image would (an empty environment, its own PATH). */
export function runInRoot(root: string, argv: string[]): { code: number; output: string } {
  const result = spawnSync('chroot', [root, ...argv], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  return { code: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}
