import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Why the integration tier cannot run on this host, or undefined when it can. */
export function missingCapability(tools: string[] = ['debootstrap', 'objdump', 'cpio', 'chroot']): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (debootstrap, chroot and OverlayFS mounts need root)';
  if (!/\boverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'))) {
    try {
      execFileSync('modprobe', ['overlay'], { stdio: 'ignore' });
    } catch {
      return 'no OverlayFS in this kernel';
    }
  }
  for (const tool of tools) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore', env: { PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}` } });
    } catch {
      return `${tool} is not installed (tinyx doctor --fix)`;
    }
  }
  return undefined;
}
