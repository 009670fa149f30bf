import { TinyxError, kernelCmdline, kernelFor, type BootableImage, type GuestNetwork } from '@tinyx/image';
import type { Accelerator } from '../accel.js';
import { MAC_PREFIX } from '../bridge.js';
import { qemuCmdline } from '../qemu/argv.js';

/**
 * An image as a libvirt domain. A kvm image, for the QEMU driver: direct kernel boot of the
 * bzImage on q35, the initramfs as the initrd or the erofs root as a
 * read-only virtio disk, the console on the first serial port, a reboot
 * that destroys the domain (as tinyx's /init ends the VM), and the image's
 * kernel command line as `tinyx run` gives it. libvirt has no microvm
 * machine, so q35 it is (the kvm kernel boots on both).
 *
 * The network: a virtio NIC on a host bridge, and the guest's address on the
 * command line, where /init reads it (the image has no DHCP client). None
 * without `network`: the console only.
 *
 * A Xen image (xen-pvh, xen-pv), for the libxl driver: what its
 * `<name>.xl.cfg` says in libvirt's words. A PVH guest (`xenpvh`) entered at
 * the ELF vmlinux's PVH note, or a PV guest (`xenpv`), the kernel as xl
 * loads it; the initramfs as the ramdisk, or the erofs root as a read-only
 * xvda through the phy backend (a loop device in dom0, as tinyx's own Xen
 * backend attaches it: no QEMU in dom0); a netfront card on a dom0 bridge;
 * the console on hvc0, a pty (`virsh console`).
 */
export interface LibvirtOptions {
  /** The domain's name (default: the image's). */
  name?: string;
  /** `qemu` (TCG) or `kvm`: the domain type. */
  accel: Accelerator;
  memoryMiB: number;
  vcpus?: number;
  /** A host bridge and the guest's address on it. */
  network?: { bridge: string } & GuestNetwork;
  /** Under TCG, the host's TSC rate, as `tinyx run` passes it (the guest keeps the TSC as its clock). */
  hostTscKhz?: number | undefined;
  /** Where QEMU writes the serial console (default: a pty, `virsh console`). The QEMU driver only. */
  consoleFile?: string;
  /** A Xen image's guest type (default: the platform's first, pvh for xen-pvh). */
  xenGuest?: string;
}

/** How an exported domain begins: `--out` replaces only a file that begins so. */
export const LIBVIRT_HEADER = '<!-- written by tinyx export libvirt -->\n';

const xml = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

/** QEMU's prefix and the address's last three bytes: the same guest address, the same MAC. */
function macOf(address: string, prefix: string = MAC_PREFIX.qemu): string {
  return [prefix, ...address.split('.').slice(1).map((n) => Number(n).toString(16).padStart(2, '0'))].join(':');
}

/** What differs between the drivers' domains; `domainXml` writes the rest around it. */
interface DomainParts {
  type: 'kvm' | 'qemu' | 'xen';
  /** The <type> line of <os>. */
  osType: string;
  kernel: string;
  cmdline: string;
  /** Lines between </os> and the on_* lines (cpu, features, clock). */
  machine: string[];
  /** The disk's driver and target, for an erofs root. */
  disk: { driver: string; target: string; bus: string; shareable: boolean };
  /** The NIC's MAC prefix and its lines after <source> (the model). */
  nic: { macPrefix: string; extra: string[] };
  /** The console's lines, and the last devices. */
  console: string[];
  tail: string[];
}

function domainXml(image: BootableImage, options: LibvirtOptions, parts: DomainParts): string {
  const network = options.network;
  const disk = parts.disk;
  return [
    LIBVIRT_HEADER.trimEnd(),
    `<domain type='${parts.type}'>`,
    `  <name>${xml(options.name ?? image.name)}</name>`,
    `  <description>tinyx image ${xml(image.name)} (${xml(image.dir)}), exported by tinyx export libvirt</description>`,
    `  <memory unit='MiB'>${options.memoryMiB}</memory>`,
    `  <vcpu>${options.vcpus ?? 1}</vcpu>`,
    '  <os>',
    `    ${parts.osType}`,
    `    <kernel>${xml(parts.kernel)}</kernel>`,
    ...(image.rootAs === 'initrd' ? [`    <initrd>${xml(image.rootfs)}</initrd>`] : []),
    `    <cmdline>${xml(parts.cmdline)}</cmdline>`,
    '  </os>',
    ...parts.machine,
    // The guest's reboot is how /init ends the VM (the app exited): the domain goes, as with tinyx run.
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>destroy</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    ...(image.rootAs === 'disk'
      ? [
          "    <disk type='file' device='disk'>",
          `      <driver ${disk.driver}/>`,
          `      <source file='${xml(image.rootfs)}'/>`,
          `      <target dev='${disk.target}' bus='${disk.bus}'/>`,
          '      <readonly/>',
          ...(disk.shareable ? ['      <shareable/>'] : []),
          '    </disk>',
        ]
      : []),
    ...(network
      ? ["    <interface type='bridge'>", `      <mac address='${macOf(network.address, parts.nic.macPrefix)}'/>`, `      <source bridge='${xml(network.bridge)}'/>`, ...parts.nic.extra, '    </interface>']
      : []),
    ...parts.console,
    ...parts.tail,
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}

export function libvirtDomainXml(image: BootableImage, options: LibvirtOptions): string {
  if (image.facts.backend === 'xen') return xenDomainXml(image, options);
  if (options.xenGuest) throw new TinyxError('E_USAGE', `--xen-guest ${options.xenGuest}: ${image.dir} is a ${image.platform} image, not a Xen one`, { kind: 'user', hint: 'leave --xen-guest out' });
  const kernel = image.kernels.vmlinuz;
  if (!kernel) throw new TinyxError('E_KERNEL_MISSING', `${image.dir} has no bzImage (vmlinuz), which libvirt's q35 boots`, { kind: 'user', hint: `build the image again: tinyx build ${image.name}` });
  const kvm = options.accel === 'kvm';
  return domainXml(image, options, {
    type: kvm ? 'kvm' : 'qemu',
    osType: "<type arch='x86_64' machine='q35'>hvm</type>",
    kernel,
    // Without a network the guest gets no address on its command line; /init then brings up lo only.
    cmdline: qemuCmdline(image, options.network, { accel: options.accel, hostTscKhz: options.hostTscKhz }),
    machine: [...(kvm ? ["  <cpu mode='host-passthrough'/>"] : []), '  <features>', '    <acpi/>', '  </features>', "  <clock offset='utc'/>"],
    disk: { driver: "name='qemu' type='raw'", target: 'vda', bus: 'virtio', shareable: true },
    nic: { macPrefix: MAC_PREFIX.qemu, extra: ["      <model type='virtio'/>", "      <rom enabled='no'/>"] },
    console: options.consoleFile
      ? ["    <serial type='file'>", `      <source path='${xml(options.consoleFile)}'/>`, "      <target port='0'/>", '    </serial>']
      : ["    <serial type='pty'>", "      <target port='0'/>", '    </serial>'],
    tail: ["    <memballoon model='none'/>"],
  });
}

/** The libxl driver's domain of a Xen image (see the top of the file). */
function xenDomainXml(image: BootableImage, options: LibvirtOptions): string {
  const guests = Object.keys(image.facts.guests);
  const guest = options.xenGuest ?? guests[0]!;
  if (!guests.includes(guest)) {
    throw new TinyxError('E_USAGE', `--xen-guest ${guest}: a ${image.platform} image boots as ${guests.join(' or ')}`, { kind: 'user', hint: `--xen-guest ${guests.join(' or --xen-guest ')}` });
  }
  if (options.consoleFile) throw new TinyxError('E_USAGE', "--console-file: libvirt's Xen console is a pty (virsh console), not a file", { kind: 'user', hint: 'leave --console-file out' });
  return domainXml(image, options, {
    type: 'xen',
    osType: guest === 'pvh' ? "<type arch='x86_64' machine='xenpvh'>xenpvh</type>" : "<type arch='x86_64' machine='xenpv'>linux</type>",
    kernel: kernelFor(image, guest),
    cmdline: kernelCmdline({ console: image.facts.console, image: image.cmdline, network: options.network }),
    machine: [],
    disk: { driver: "name='phy'", target: image.facts.disk, bus: 'xen', shareable: false },
    nic: { macPrefix: MAC_PREFIX.xen, extra: [] },
    console: ["    <console type='pty'>", "      <target type='xen' port='0'/>", '    </console>'],
    tail: [],
  });
}
