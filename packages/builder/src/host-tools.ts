import { access, constants, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingToolError, TinyxError } from './errors.js';

/** A program the pipeline runs on the host, and the Debian package that provides it. */
export interface HostTool {
  command: string;
  debianPackage: string;
  /** What the pipeline uses it for, shown by `tinyx doctor`. */
  purpose: string;
  /** Needed only for an option (doctor reports it without failing). */
  optional?: boolean;
}

/** Every host program the build pipeline runs. `tinyx doctor` checks exactly this list. */
export const HOST_TOOLS: readonly HostTool[] = [
  { command: 'debootstrap', debianPackage: 'debootstrap', purpose: 'creates the Debian base root' },
  { command: 'gpgv', debianPackage: 'gpgv', purpose: 'debootstrap checks the archive signature with it' },
  { command: 'objdump', debianPackage: 'binutils', purpose: 'reads the ELF dynamic section (NEEDED, RUNPATH)' },
  { command: 'mount', debianPackage: 'mount', purpose: 'mounts the OverlayFS and /proc, /sys, /dev' },
  { command: 'umount', debianPackage: 'mount', purpose: 'undoes those mounts' },
  { command: 'chroot', debianPackage: 'coreutils', purpose: 'runs apt-get inside the image root' },
  { command: 'dpkg', debianPackage: 'dpkg', purpose: 'tells the host architecture' },
  { command: 'make', debianPackage: 'make', purpose: 'builds the kernel' },
  { command: 'gcc', debianPackage: 'gcc', purpose: 'compiles the kernel' },
  { command: 'bc', debianPackage: 'bc', purpose: "the kernel build's timeconst generator" },
  { command: 'bison', debianPackage: 'bison', purpose: "the kernel's Kconfig parser" },
  { command: 'flex', debianPackage: 'flex', purpose: "the kernel's Kconfig lexer" },
  { command: 'xz', debianPackage: 'xz-utils', purpose: 'unpacks linux-source; compresses the initramfs with --compression xz' },
  { command: 'zstd', debianPackage: 'zstd', purpose: 'compresses the initramfs with --compression zstd', optional: true },
];

/** Files the pipeline reads on the host, and the package that provides them. */
export const HOST_FILES: readonly { path: string; debianPackage: string; purpose: string }[] = [
  {
    path: '/usr/share/keyrings/debian-archive-keyring.gpg',
    debianPackage: 'debian-archive-keyring',
    purpose: "verifies the mirror's signatures",
  },
  // objtool, which the x86 kernel build runs, reads ELF files through libelf.
  { path: '/usr/include/libelf.h', debianPackage: 'libelf-dev', purpose: "the kernel's objtool is built against it" },
  // A glob: the package is versioned (linux-source-6.1); any version will do.
  { path: '/usr/src/linux-source-*.tar.xz', debianPackage: 'linux-source', purpose: "Debian's kernel source, for the kernel step" },
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
