import { access, constants, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MissingToolError } from './errors.js';

/**
 * What a host program or file is needed for. `build`: every build; `kernel`:
 * the kernel step; `zstd`: `--compression zstd`; `ccache`: faster kernel
 * rebuilds; `overlay`: loading the overlay module; `https`: an https://
 * mirror; `run`: `tinyx run` (QEMU); `bridge`: `tinyx run --network bridge`;
 * `fix`: `tinyx doctor --fix` installs with it; `tests`: only `npm test`'s
 * tiers (tinyx itself never runs it).
 */
export type HostUse = 'build' | 'kernel' | 'zstd' | 'ccache' | 'overlay' | 'https' | 'run' | 'bridge' | 'fix' | 'tests';

/** The tiers of `npm test` (scripts/test.js). */
export type TestTier = 'unit' | 'integration' | 'xen';

interface HostNeed {
  debianPackage: string;
  /** What it is used for, shown by `tinyx doctor`. */
  purpose: string;
  neededFor: HostUse;
  /**
   * The test tiers that cannot start without it: `npm test` skips such a tier
   * (under CI, fails it) when it is missing. A test file that needs more than
   * its tier asks for it itself (test/helpers/capabilities.ts), by a name
   * that must be in this list.
   */
  tiers?: readonly TestTier[];
}

/** A program tinyx or its tests run on the host, and the Debian package that provides it. */
export interface HostTool extends HostNeed {
  command: string;
}

/** A file tinyx or its tests read on the host (a glob in the last component), and the package that provides it. */
export interface HostFile extends HostNeed {
  path: string;
}

const ALL_TIERS: readonly TestTier[] = ['unit', 'integration', 'xen'];
/** The integration and xen tiers build images, so they need what every build needs. */
const BUILDING_TIERS: readonly TestTier[] = ['integration', 'xen'];

/**
 * Every host program tinyx runs (the build pipeline, `tinyx run`) and every
 * one its tests run: the one list `tinyx doctor` checks and `tinyx doctor
 * --fix` installs (`--tests` adds those marked `tests`), `npm test` checks
 * before each tier, and a missing command's error names the package from.
 * Node.js and npm are not here: they are the README's prerequisites, and
 * Debian's npm package would bring Debian's own, older Node.js.
 */
export const HOST_TOOLS: readonly HostTool[] = [
  // run() starts every command through it; the unit tests run commands through run() too.
  { command: 'setpriv', debianPackage: 'util-linux', purpose: 'starts every command tinyx runs so that it dies with tinyx (--pdeathsig KILL)', neededFor: 'build', tiers: ALL_TIERS },
  { command: 'debootstrap', debianPackage: 'debootstrap', purpose: "creates the Debian base root (and the Xen tests' dom0)", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'gpgv', debianPackage: 'gpgv', purpose: 'debootstrap checks the archive signature with it', neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'objdump', debianPackage: 'binutils', purpose: 'reads the ELF dynamic section (NEEDED, RUNPATH)', neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'mount', debianPackage: 'mount', purpose: 'mounts the OverlayFS and /proc, /sys, /dev', neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'umount', debianPackage: 'mount', purpose: 'undoes those mounts', neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'chroot', debianPackage: 'coreutils', purpose: "runs apt-get inside the image root (the tests run the app's check in it)", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'dpkg', debianPackage: 'dpkg', purpose: 'tells the host architecture (a unit test compares versions with it)', neededFor: 'build', tiers: ALL_TIERS },
  { command: 'dpkg-query', debianPackage: 'dpkg', purpose: "reads the versions of debootstrap, linux-source and dom0's Xen tools", neededFor: 'build', tiers: BUILDING_TIERS },
  // The trace and verify steps run the app in its own namespaces (--no-trace --no-verify do without them).
  { command: 'unshare', debianPackage: 'util-linux', purpose: 'starts the app in its own namespaces for the trace and verify steps (the tests hide a tool with it)', neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'nsenter', debianPackage: 'util-linux', purpose: "probes the app's port inside its network namespace (trace, verify)", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'mkfs.erofs', debianPackage: 'erofs-utils', purpose: 'writes the root filesystem of --format erofs (a read-only disk the VMs share)', neededFor: 'build', tiers: ALL_TIERS },
  { command: 'mknod', debianPackage: 'coreutils', purpose: "makes /dev/console in an erofs root's tree", neededFor: 'build', tiers: ALL_TIERS },
  { command: 'strace', debianPackage: 'strace', purpose: 'records what the app opens, executes and calls (the trace step; verify names what was missing)', neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'ip', debianPackage: 'iproute2', purpose: "brings up lo in the trace's network namespace; makes the bridge and taps of tinyx run --network bridge", neededFor: 'build', tiers: BUILDING_TIERS },
  // Optional: OverlayFS may be built in, or loaded already.
  { command: 'modprobe', debianPackage: 'kmod', purpose: 'loads the overlay module when OverlayFS is a module not yet loaded', neededFor: 'overlay' },
  // The xen tier builds kernels before it starts; the integration tier's kernel and boot tests ask for these themselves.
  // Every image's BusyBox is built from Debian's source (assemble/busybox.ts), so every build compiles.
  { command: 'make', debianPackage: 'make', purpose: "builds the kernel and the image's BusyBox", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'gcc', debianPackage: 'gcc', purpose: "compiles the kernel and BusyBox's configuration tools (a unit test compiles an ELF program)", neededFor: 'build', tiers: ALL_TIERS },
  { command: 'musl-gcc', debianPackage: 'musl-tools', purpose: "compiles the image's BusyBox, static against musl (330 KB for /init's applets)", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'dpkg-source', debianPackage: 'dpkg-dev', purpose: "unpacks BusyBox's Debian source package, with Debian's patches", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'bzip2', debianPackage: 'bzip2', purpose: "unpacks BusyBox's source tarball (.orig.tar.bz2)", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'bc', debianPackage: 'bc', purpose: "the kernel build's timeconst generator", neededFor: 'kernel', tiers: ['xen'] },
  { command: 'patch', debianPackage: 'patch', purpose: "applies tinyx's kernel patches (kernel/patches) to the linux-source it unpacks (a unit test patches a tree with it)", neededFor: 'kernel', tiers: ['unit', 'xen'] },
  { command: 'bison', debianPackage: 'bison', purpose: "the kernel's Kconfig parser", neededFor: 'kernel', tiers: ['xen'] },
  { command: 'flex', debianPackage: 'flex', purpose: "the kernel's Kconfig lexer", neededFor: 'kernel', tiers: ['xen'] },
  { command: 'objcopy', debianPackage: 'binutils', purpose: 'strips the vmlinux that QEMU and Xen boot', neededFor: 'kernel', tiers: ['xen'] },
  { command: 'tar', debianPackage: 'tar', purpose: "unpacks linux-source (the tests read the tar writer's archives back with it)", neededFor: 'kernel', tiers: ALL_TIERS },
  { command: 'xz', debianPackage: 'xz-utils', purpose: 'unpacks linux-source; compresses the initramfs with --compression xz', neededFor: 'kernel', tiers: ALL_TIERS },
  { command: 'zstd', debianPackage: 'zstd', purpose: 'compresses the initramfs with --compression zstd', neededFor: 'zstd', tiers: ['unit'] },
  {
    command: 'ccache',
    debianPackage: 'ccache',
    purpose: 'optional: a kernel build reuses the objects an earlier configuration compiled the same',
    neededFor: 'ccache',
  },
  // The xen tier boots Xen inside QEMU; the integration tier's boot tests ask for QEMU themselves.
  { command: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86', purpose: 'boots images (tinyx run)', neededFor: 'run', tiers: ['xen'] },

  { command: 'apt-get', debianPackage: 'apt', purpose: "fetches BusyBox's source package (checked against the mirror's signed index); installs what is missing (tinyx doctor --fix); the Xen tests download the hypervisor and dom0's kernel with it", neededFor: 'build', tiers: BUILDING_TIERS },

  // Only the tests run these: independent readers of what tinyx writes, and the harnesses' own tools.
  { command: 'sh', debianPackage: 'dash', purpose: "the tests' shell lines (pipes into cpio, a mount namespace)", neededFor: 'tests', tiers: ALL_TIERS },
  { command: 'bash', debianPackage: 'bash', purpose: "runs the steps of the README's CI workflow as GitHub's runner does (bash -e)", neededFor: 'tests', tiers: ['integration'] },
  { command: 'mkdir', debianPackage: 'coreutils', purpose: 'a unit test makes a directory with it', neededFor: 'tests', tiers: ['unit'] },
  { command: 'true', debianPackage: 'coreutils', purpose: 'a unit test starts a process that ends at once', neededFor: 'tests', tiers: ['unit'] },
  { command: 'cpio', debianPackage: 'cpio', purpose: "GNU cpio reads tinyx's initramfs back; packs the Xen tests' dom0 root", neededFor: 'tests', tiers: ALL_TIERS },
  { command: 'gzip', debianPackage: 'gzip', purpose: 'reads gzip initramfs back; unpacks the Xen hypervisor', neededFor: 'tests', tiers: ALL_TIERS },
  { command: 'dump.erofs', debianPackage: 'erofs-utils', purpose: "reads an erofs root's inodes back (owners, devices, timestamps)", neededFor: 'tests', tiers: ['unit'] },
  { command: 'fsck.erofs', debianPackage: 'erofs-utils', purpose: 'checks and extracts an erofs root, an independent reader of what tinyx writes', neededFor: 'tests', tiers: ['unit'] },
  { command: 'file', debianPackage: 'file', purpose: 'tells that vmlinuz is a bzImage', neededFor: 'tests' },
  { command: 'readelf', debianPackage: 'binutils', purpose: "reads the xen-pvh kernel's PVH entry note", neededFor: 'tests' },
  { command: 'sha256sum', debianPackage: 'coreutils', purpose: "checks the manifest's kernel config hash", neededFor: 'tests' },
  { command: 'pgrep', debianPackage: 'procps', purpose: 'finds processes a test must not leave behind', neededFor: 'tests' },
  { command: 'pkill', debianPackage: 'procps', purpose: 'kills a QEMU under a detached VM', neededFor: 'tests' },
  { command: 'fallocate', debianPackage: 'util-linux', purpose: 'fills a filesystem for the disk-full fault tests', neededFor: 'tests' },
  { command: 'mountpoint', debianPackage: 'util-linux', purpose: 'the fault tests unmount only their own tmpfs', neededFor: 'tests' },

  { command: 'depmod', debianPackage: 'kmod', purpose: "indexes the Xen tests' dom0 kernel modules", neededFor: 'tests', tiers: ['xen'] },
  { command: 'dpkg-deb', debianPackage: 'dpkg', purpose: "unpacks the Xen hypervisor and dom0's kernel", neededFor: 'tests', tiers: ['xen'] },
  { command: 'apt-cache', debianPackage: 'apt', purpose: "lists the versions of BusyBox's source the mirror serves (the base's may be gone after a point release); finds dom0's kernel package and version for the Xen tests", neededFor: 'build', tiers: BUILDING_TIERS },
  { command: 'find', debianPackage: 'findutils', purpose: "lists the Xen tests' dom0 root and payload for cpio", neededFor: 'tests', tiers: ['xen'] },
  { command: 'docker-registry', debianPackage: 'docker-registry', purpose: 'the reference OCI distribution server that tinyx push and pull are tested against, on 127.0.0.1', neededFor: 'tests', tiers: ['integration'] },
  { command: 'libvirtd', debianPackage: 'libvirt-daemon-system', purpose: 'boots what tinyx export libvirt writes (virsh create), started by the tests', neededFor: 'tests', tiers: ['integration'] },
  { command: 'virtlogd', debianPackage: 'libvirt-daemon-system', purpose: "libvirt's log daemon, which its QEMU driver needs", neededFor: 'tests', tiers: ['integration'] },
  { command: 'virsh', debianPackage: 'libvirt-clients', purpose: 'creates and destroys the exported domain', neededFor: 'tests', tiers: ['integration'] },
  { command: 'virt-xml-validate', debianPackage: 'libvirt-clients', purpose: "validates the exported domain XML against libvirt's schema", neededFor: 'tests', tiers: ['integration'] },
  { command: 'xmllint', debianPackage: 'libxml2-utils', purpose: 'virt-xml-validate runs it', neededFor: 'tests', tiers: ['integration'] },
  { command: 'skopeo', debianPackage: 'skopeo', purpose: 'an independent client that reads back what tinyx push wrote (inspect, copy to an OCI layout)', neededFor: 'tests', tiers: ['integration'] },
  { command: 'htpasswd', debianPackage: 'apache2-utils', purpose: "writes the bcrypt password file of the test registry that asks for a password (docker-registry's htpasswd auth)", neededFor: 'tests', tiers: ['integration'] },
  { command: 'openssl', debianPackage: 'openssl', purpose: "makes the certificate the test registry's token service signs its tokens with (Bearer auth)", neededFor: 'tests', tiers: ['integration'] },
];

/** The keyring debootstrap verifies the mirror with when the host's apt source names none. */
export const DEBIAN_ARCHIVE_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** Files tinyx and its tests read on the host, and the package that provides them. */
export const HOST_FILES: readonly HostFile[] = [
  {
    path: DEBIAN_ARCHIVE_KEYRING,
    debianPackage: 'debian-archive-keyring',
    purpose: "verifies the mirror's signatures",
    neededFor: 'build',
    tiers: BUILDING_TIERS,
  },
  { path: '/etc/ssl/certs/ca-certificates.crt', debianPackage: 'ca-certificates', purpose: 'debootstrap and apt reach an https:// mirror with it', neededFor: 'https' },
  // objtool, which the x86 kernel build runs, reads ELF files through libelf.
  { path: '/usr/include/libelf.h', debianPackage: 'libelf-dev', purpose: "the kernel's objtool is built against it", neededFor: 'kernel', tiers: ['xen'] },
  // gcc only recommends the C library's headers and start files; without them it links nothing.
  { path: '/usr/include/stdio.h', debianPackage: 'libc6-dev', purpose: "the kernel's and BusyBox's host programs are built with it, and BusyBox with the kernel headers it brings (a unit test links an ELF program)", neededFor: 'build', tiers: ALL_TIERS },
  // A glob: the package is versioned (linux-source-6.1); any version will do.
  { path: '/usr/src/linux-source-*.tar.xz', debianPackage: 'linux-source', purpose: "Debian's kernel source, for the kernel step", neededFor: 'kernel', tiers: ['xen'] },
];

/** What `tinyx doctor` looks at: what tinyx needs to build and run images, and with `tests` what `npm test` needs too. */
export interface HostScope {
  tests: boolean;
}

/** The tools and files of a scope: every one but the tests' own, or all of them. */
export function hostScope(scope: HostScope): { tools: HostTool[]; files: HostFile[] } {
  const inScope = (need: HostNeed): boolean => scope.tests || need.neededFor !== 'tests';
  return { tools: HOST_TOOLS.filter(inScope), files: HOST_FILES.filter(inScope) };
}

/**
 * Whether a host is ready without it: options and speed-ups are, for building
 * (`tinyx doctor` reports them, `--fix` installs them anyway). The tests use
 * zstd, QEMU and the bridge, so with `tests` only ccache, modprobe and the CA
 * certificates stay optional. (apt-get fetches BusyBox's source: every build needs it.)
 */
export function isOptional(need: Pick<HostNeed, 'neededFor'>, scope: HostScope): boolean {
  switch (need.neededFor) {
    case 'ccache':
    case 'overlay':
    case 'https':
    case 'fix':
      return true;
    case 'zstd':
    case 'run':
    case 'bridge':
      return !scope.tests;
    default:
      return false;
  }
}

/**
 * The Debian packages `tinyx doctor --fix` installs (with `--tests` when
 * `scope.tests`): those of the scope's tools and files that are `missing`
 * (by command name or path), the optional ones too (they are small, and the
 * options then just work); each once, in the registry's order. Missing things
 * outside the scope are left alone.
 */
export function packagesToInstall(scope: HostScope, missing: ReadonlySet<string>): string[] {
  const { tools, files } = hostScope(scope);
  const wanted = [...tools.filter((tool) => missing.has(tool.command)), ...files.filter((file) => missing.has(file.path))];
  return [...new Set(wanted.map((need) => need.debianPackage))];
}

/** Every package of a scope: what `tinyx doctor --fix` installs on a host that has none of them. */
export function hostPackages(scope: HostScope): string[] {
  const { tools, files } = hostScope(scope);
  return packagesToInstall(scope, new Set([...tools.map((tool) => tool.command), ...files.map((file) => file.path)]));
}

/** The commands a test tier cannot start without (see HostNeed.tiers). */
export function testTierTools(tier: TestTier): string[] {
  return HOST_TOOLS.filter((tool) => tool.tiers?.includes(tier)).map((tool) => tool.command);
}

/** The host files a test tier cannot start without. */
export function testTierFiles(tier: TestTier): HostFile[] {
  return HOST_FILES.filter((file) => file.tiers?.includes(tier));
}

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

/** Where a host file is looked for: its directory, and a pattern for the names in it (the last component may hold `*`). */
export function hostFilePattern(file: Pick<HostFile, 'path'>): { dir: string; name: RegExp } {
  const dir = file.path.slice(0, file.path.lastIndexOf('/'));
  const base = file.path.slice(file.path.lastIndexOf('/') + 1);
  return { dir, name: new RegExp(`^${base.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`) };
}

/** The host files (HOST_FILES by default) that are missing. */
export async function missingHostFiles(files: readonly HostFile[] = HOST_FILES): Promise<HostFile[]> {
  const missing: HostFile[] = [];
  for (const file of files) {
    const { dir, name } = hostFilePattern(file);
    const names = await readdir(dir).catch(() => [] as string[]);
    if (!names.some((entry) => name.test(entry))) missing.push(file);
  }
  return missing;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

