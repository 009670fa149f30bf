import { TinyxError } from './errors.js';
import { IMAGE_CMDLINE, type PlatformFacts } from './platforms.js';

/**
 * How a root filesystem format boots, whatever writes it (the builder's
 * OUTPUT_FORMATS) and whatever boots it (the backends): the one place that
 * says whether the kernel gets the file as its initramfs or as a disk.
 */
export interface RootFormatFacts {
  /**
   * `initrd`: the kernel unpacks the file into RAM (QEMU -initrd, xl ramdisk=).
   * `disk`: the file is a read-only block device the kernel mounts as its root
   * (virtio-blk, xl disk=), read page by page and shared in the host's page cache.
   * null: not bootable (an archive for other tools).
   */
  boots: 'initrd' | 'disk' | null;
  /** The kernel fragment the format needs (kernel/formats/), or null. */
  kernelFragment: string | null;
  /** The root is read-only in the guest: /init puts what the app writes on tmpfs. */
  readOnlyRoot: boolean;
  /** A disk root's filesystem type (rootfstype=); null for the others. */
  fstype: string | null;
}

export const ROOT_FORMATS = {
  initramfs: { boots: 'initrd', kernelFragment: 'formats/initramfs.config', readOnlyRoot: false, fstype: null },
  erofs: { boots: 'disk', kernelFragment: 'formats/erofs.config', readOnlyRoot: true, fstype: 'erofs' },
  tar: { boots: null, kernelFragment: null, readOnlyRoot: false, fstype: null },
} as const satisfies Record<string, RootFormatFacts>;

export type RootFormat = keyof typeof ROOT_FORMATS;

export function isRootFormat(name: string): name is RootFormat {
  return Object.hasOwn(ROOT_FORMATS, name);
}

/** A format's facts by name; an unknown one (an image from a newer tinyx) is the user's error. */
export function rootFormatFacts(name: string, where: string): RootFormatFacts {
  if (!isRootFormat(name)) {
    throw new TinyxError('E_FORMAT', `${where}: unknown root filesystem format "${name}"`, { kind: 'user', hint: `the formats are ${Object.keys(ROOT_FORMATS).join(', ')}; build the image again with this tinyx` });
  }
  return ROOT_FORMATS[name];
}

/**
 * The kernel command line an image needs (the manifest's boot.cmdline), by its
 * root's format and its platform. An initramfs: IMAGE_CMDLINE. A disk root:
 * the platform's first disk, mounted read-only, and /init run from it (the
 * kernel looks for /sbin/init otherwise); on Xen, blkfront connects after the
 * kernel first looks for the root, hence rootwait.
 */
export function bootCmdline(format: RootFormatFacts, platform: Pick<PlatformFacts, 'disk' | 'backend'>): string {
  if (format.boots !== 'disk' || !format.fstype) return IMAGE_CMDLINE;
  return ['quiet panic=-1', `root=/dev/${platform.disk}`, `rootfstype=${format.fstype}`, 'ro', ...(platform.backend === 'xen' ? ['rootwait'] : []), 'init=/init'].join(' ');
}
