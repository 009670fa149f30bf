import { access, constants, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingToolError, TinyxError } from './errors.js';
import { run } from './run.js';

/** A program the pipeline runs on the host, and the Debian package that provides it. */
export interface HostTool {
  command: string;
  debianPackage: string;
  /** What the pipeline uses it for, shown by `tinyx doctor`. */
  purpose: string;
  /**
   * When the pipeline needs it: for every build, for the kernel step, only
   * for an option, or never (`ccache` speeds kernel builds up when present).
   * Doctor reports the last two without failing.
   */
  neededFor: 'build' | 'kernel' | 'zstd' | 'ccache';
}

/** What a build needs of the host, from its options. */
export interface HostNeeds {
  kernel: boolean;
  /** A user-given kernel tree or tarball: Debian's linux-source is then not needed. */
  kernelSource?: string | undefined;
  compression?: string | undefined;
}

/** Every host program the build pipeline runs. `tinyx doctor` checks exactly this list. */
export const HOST_TOOLS: readonly HostTool[] = [
  { command: 'debootstrap', debianPackage: 'debootstrap', purpose: 'creates the Debian base root', neededFor: 'build' },
  { command: 'gpgv', debianPackage: 'gpgv', purpose: 'debootstrap checks the archive signature with it', neededFor: 'build' },
  { command: 'objdump', debianPackage: 'binutils', purpose: 'reads the ELF dynamic section (NEEDED, RUNPATH)', neededFor: 'build' },
  { command: 'mount', debianPackage: 'mount', purpose: 'mounts the OverlayFS and /proc, /sys, /dev', neededFor: 'build' },
  { command: 'umount', debianPackage: 'mount', purpose: 'undoes those mounts', neededFor: 'build' },
  { command: 'chroot', debianPackage: 'coreutils', purpose: 'runs apt-get inside the image root', neededFor: 'build' },
  { command: 'dpkg', debianPackage: 'dpkg', purpose: 'tells the host architecture', neededFor: 'build' },
  { command: 'make', debianPackage: 'make', purpose: 'builds the kernel', neededFor: 'kernel' },
  { command: 'gcc', debianPackage: 'gcc', purpose: 'compiles the kernel', neededFor: 'kernel' },
  { command: 'bc', debianPackage: 'bc', purpose: "the kernel build's timeconst generator", neededFor: 'kernel' },
  { command: 'bison', debianPackage: 'bison', purpose: "the kernel's Kconfig parser", neededFor: 'kernel' },
  { command: 'flex', debianPackage: 'flex', purpose: "the kernel's Kconfig lexer", neededFor: 'kernel' },
  { command: 'xz', debianPackage: 'xz-utils', purpose: 'unpacks linux-source; compresses the initramfs with --compression xz', neededFor: 'kernel' },
  { command: 'zstd', debianPackage: 'zstd', purpose: 'compresses the initramfs with --compression zstd', neededFor: 'zstd' },
  {
    command: 'ccache',
    debianPackage: 'ccache',
    purpose: 'optional: a kernel build reuses the objects an earlier configuration compiled the same',
    neededFor: 'ccache',
  },
];

/** Files the pipeline reads on the host, and the package that provides them. */
export const HOST_FILES: readonly { path: string; debianPackage: string; purpose: string; neededFor: 'build' | 'kernel' }[] = [
  {
    path: '/usr/share/keyrings/debian-archive-keyring.gpg',
    debianPackage: 'debian-archive-keyring',
    purpose: "verifies the mirror's signatures",
    neededFor: 'build',
  },
  // objtool, which the x86 kernel build runs, reads ELF files through libelf.
  { path: '/usr/include/libelf.h', debianPackage: 'libelf-dev', purpose: "the kernel's objtool is built against it", neededFor: 'kernel' },
  // A glob: the package is versioned (linux-source-6.1); any version will do.
  { path: '/usr/src/linux-source-*.tar.xz', debianPackage: 'linux-source', purpose: "Debian's kernel source, for the kernel step", neededFor: 'kernel' },
];

export function debianPackageFor(command: string): string | undefined {
  const name = command.includes('/') ? command.slice(command.lastIndexOf('/') + 1) : command;
  return HOST_TOOLS.find((tool) => tool.command === name)?.debianPackage;
}

/** The absolute path of a command on PATH, or undefined. */
export async function findOnPath(command: string, path = process.env.PATH ?? ''): Promise<string | undefined> {
  const dirs = new Set([...path.split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Throws MissingToolError for the first of `commands` that is not installed. */
export async function requireTools(commands: readonly string[]): Promise<void> {
  for (const command of commands) {
    if (!(await findOnPath(command))) {
      throw new MissingToolError(command, debianPackageFor(command) ?? command);
    }
  }
}

/** The host files (HOST_FILES, globs allowed in the last component) that are missing. */
export async function missingHostFiles(): Promise<(typeof HOST_FILES)[number][]> {
  const missing: (typeof HOST_FILES)[number][] = [];
  for (const file of HOST_FILES) {
    const dir = file.path.slice(0, file.path.lastIndexOf('/'));
    const base = file.path.slice(file.path.lastIndexOf('/') + 1);
    const re = new RegExp(`^${base.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    const names = await readdir(dir).catch(() => [] as string[]);
    if (!names.some((name) => re.test(name))) missing.push(file);
  }
  return missing;
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

export function isRoot(): boolean {
  return process.getuid?.() === 0;
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
