import { readFile } from 'node:fs/promises';
import { HOST_TOOLS, MissingToolError, TinyxError, isRoot, missingHostFiles, requireTools, run } from '@tinyx/image';

/** What a build needs of the host, from its options. */
export interface HostNeeds {
  kernel: boolean;
  /** A user-given kernel tree or tarball: Debian's linux-source is then not needed. */
  kernelSource?: string | undefined;
  compression?: string | undefined;
}

/**
 * Everything a build with these options needs of the host: root, OverlayFS,
 * the tools and files of HOST_TOOLS and HOST_FILES. Throws the first thing
 * missing, naming the Debian package that provides it.
 */
export async function checkBuildHost(needs: HostNeeds): Promise<void> {
  requireRoot('tinyx build');
  const wanted = (neededFor: string): boolean =>
    neededFor === 'build' || (neededFor === 'kernel' && needs.kernel) || neededFor === needs.compression;
  // The chosen compressor counts whatever it is tagged with: xz is a kernel tool, and --compression xz needs it too.
  await requireTools(HOST_TOOLS.filter((tool) => wanted(tool.neededFor) || tool.command === needs.compression).map((tool) => tool.command));
  const missing = (await missingHostFiles()).filter((f) => wanted(f.neededFor) && !(f.debianPackage === 'linux-source' && needs.kernelSource));
  if (missing[0]) throw new MissingToolError(missing[0].path, missing[0].debianPackage);
  if (!(await hasOverlayFs())) {
    await run('modprobe', ['overlay'], { allowFailure: true }).catch(() => undefined);
    if (!(await hasOverlayFs())) {
      throw new TinyxError('E_NO_OVERLAYFS', 'this kernel has no OverlayFS (no "overlay" in /proc/filesystems)', { kind: 'host', hint: 'load it with: modprobe overlay' });
    }
  }
}

export function requireRoot(what: string): void {
  if (!isRoot()) {
    throw new TinyxError('E_NOT_ROOT', `${what} needs root (debootstrap, chroot and OverlayFS mounts do)`, {
      kind: 'host',
      hint: 'run it as root, for example: sudo npx tinyx build nginx',
    });
  }
}

/** True when the running kernel knows the overlay filesystem (built in, or its module loaded). */
export async function hasOverlayFs(): Promise<boolean> {
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  return /\boverlay$/m.test(filesystems);
}
