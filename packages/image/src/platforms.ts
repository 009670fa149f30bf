import { TinyxError } from './errors.js';

/** The kernel files an image directory can carry. */
export type KernelArtifact = 'vmlinuz' | 'vmlinux';

/** One way a backend boots an image of a platform: a QEMU machine, a Xen guest type. */
export interface GuestFacts {
  /** The kernel file it loads, in order of preference (the first the image has). */
  kernel: readonly KernelArtifact[];
  description: string;
}

/** What tinyx knows about a platform, in one place: the builder, the toolstack and the CLI read it here. */
export interface PlatformFacts {
  description: string;
  /** The toolstack backend that boots it. */
  backend: 'qemu' | 'xen';
  /** The guest's console device: the backend's, given on the kernel command line. */
  console: 'ttyS0' | 'hvc0';
  /**
   * The kernel's Kconfig fragments (kernel/platforms/): the platform's own,
   * its network card (with the `net` feature), its disk (for a root on a block device).
   */
  kernelFragments: { base: string; net: string; block: string };
  /** The guest's first disk as the kernel names it: the root device of an image whose root is a disk (root=/dev/NAME). */
  disk: 'vda' | 'xvda';
  /** The kernel files the image directory gets. */
  kernelArtifacts: readonly KernelArtifact[];
  /** The ways its backend boots it; the first is the default. */
  guests: Readonly<Record<string, GuestFacts>>;
  /** Whether the image directory gets `<name>.xl.cfg`, a domain configuration for `xl create`. */
  xlConfig: boolean;
  /**
   * The format a build gets without --format (or with --compression alone,
   * which is the initramfs's), chosen by measurement. On kvm the erofs disk
   * (lightness bench, nginx, TCG, 2026-12-02, commit 9661ec4: serves with 14
   * MiB of guest memory against 25, 39.2 MiB of host memory per VM at 100
   * against 47.7; first answer 1.19 s against 1.14 s, which has gone either
   * way between runs; 19 of the corpus's 20 services serve from --package
   * alone against 18), at 6.97 MiB of kernel + root against 5.32. On Xen the
   * initramfs: the disk costs each domain a block hotplug script and a
   * blkfront, and made every step slower (the Xen bench's boot part,
   * 2026-12-02, commit d2353a8, nginx, 64 MiB, medians of 3: xl create 8.05
   * and 8.67 s against 5.47 and 6.26 s as PVH and PV, first HTTP 200 13.83
   * and 12.24 s against 11.01 and 8.91 s).
   */
  defaultFormat: 'initramfs' | 'erofs';
}

/**
 * Every platform tinyx builds for. A platform's facts are read only from here
 * (STYLE.md 13): nothing else compares a platform's name.
 */
export const PLATFORMS = {
  kvm: {
    description: 'QEMU with KVM where the host has it, TCG otherwise',
    backend: 'qemu',
    console: 'ttyS0',
    kernelFragments: { base: 'platforms/kvm.config', net: 'platforms/kvm.net.config', block: 'platforms/kvm.block.config' },
    disk: 'vda',
    kernelArtifacts: ['vmlinuz', 'vmlinux'],
    guests: {
      // microvm enters the ELF kernel at its PVH note: no real-mode setup, no firmware.
      microvm: { kernel: ['vmlinux', 'vmlinuz'], description: 'QEMU microvm (virtio-mmio), the ELF kernel booted directly' },
      q35: { kernel: ['vmlinuz', 'vmlinux'], description: 'QEMU q35 (virtio-pci), the bzImage' },
    },
    xlConfig: false,
    defaultFormat: 'erofs',
  },
  'xen-pvh': {
    description: 'a Xen PVH domain (a xen-pvh kernel also boots as PV)',
    backend: 'xen',
    console: 'hvc0',
    kernelFragments: { base: 'platforms/xen-pvh.config', net: 'platforms/xen-pvh.net.config', block: 'platforms/xen-pvh.block.config' },
    disk: 'xvda',
    kernelArtifacts: ['vmlinuz', 'vmlinux'],
    guests: {
      pvh: { kernel: ['vmlinux'], description: 'PVH: xl enters the ELF vmlinux at its PVH note' },
      pv: { kernel: ['vmlinux', 'vmlinuz'], description: 'PV: xl loads the ELF (its Xen notes), or the bzImage' },
    },
    xlConfig: true,
    defaultFormat: 'initramfs',
  },
  'xen-pv': {
    description: 'a Xen PV domain',
    backend: 'xen',
    console: 'hvc0',
    kernelFragments: { base: 'platforms/xen-pv.config', net: 'platforms/xen-pv.net.config', block: 'platforms/xen-pv.block.config' },
    disk: 'xvda',
    // A PV-only kernel has no PVH note: xl loads the bzImage.
    kernelArtifacts: ['vmlinuz'],
    guests: {
      pv: { kernel: ['vmlinux', 'vmlinuz'], description: 'PV: xl loads the bzImage' },
    },
    xlConfig: true,
    defaultFormat: 'initramfs',
  },
} as const satisfies Record<string, PlatformFacts>;

export type Platform = keyof typeof PLATFORMS;

/** The platforms by name, in the table's order: for --help and option choices. */
export const PLATFORM_NAMES = Object.keys(PLATFORMS) as Platform[];

/** The platform a build gets without --platform. */
export const DEFAULT_PLATFORM: Platform = 'kvm';

/** Guest memory in MiB when nothing says otherwise: tinyx run, the pool, the emitted xl.cfg. */
export const DEFAULT_MEMORY_MIB = 128;

/**
 * What the image itself needs on the kernel command line, recorded in its
 * manifest (boot.cmdline); a backend adds what it owns (the console device,
 * the network, its machine's quirks).
 * rootfstype=ramfs: the initramfs unpacks into ramfs, not tmpfs, whose limit
 * of half the memory would otherwise decide how small a guest can be
 * (nginx: 41 MiB -> 32 MiB). panic=-1: a panic ends the VM at once.
 */
export const IMAGE_CMDLINE = 'quiet panic=-1 rootfstype=ramfs';

export function isPlatform(name: string): name is Platform {
  return Object.hasOwn(PLATFORMS, name);
}

/** A platform's facts by name; an unknown name (an image from a newer tinyx, a typo) is the user's error. */
export function platformFacts(name: string, where: string): PlatformFacts {
  if (!isPlatform(name)) {
    throw new TinyxError('E_PLATFORM', `${where}: unknown platform "${name}"`, { kind: 'user', hint: `the platforms are ${PLATFORM_NAMES.join(', ')}` });
  }
  return PLATFORMS[name];
}

/** The guest kinds of the platforms a backend boots (qemu: microvm, q35; xen: pvh, pv). */
export function guestsOf(backend: PlatformFacts['backend']): string[] {
  const names = Object.values(PLATFORMS as Record<string, PlatformFacts>)
    .filter((facts) => facts.backend === backend)
    .flatMap((facts) => Object.keys(facts.guests));
  return [...new Set(names)];
}
