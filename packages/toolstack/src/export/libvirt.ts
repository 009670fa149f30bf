import { TinyxError, type BootableImage, type GuestNetwork } from '@tinyx/image';
import type { Accelerator } from '../accel.js';
import { MAC_PREFIX } from '../bridge.js';
import { qemuCmdline } from '../qemu/argv.js';

/**
 * An image as a libvirt domain (the QEMU driver): direct kernel boot of the
 * bzImage on q35, the initramfs as the initrd or the erofs root as a
 * read-only virtio disk, the console on the first serial port, a reboot
 * that destroys the domain (as tinyx's /init ends the VM), and the image's
 * kernel command line as `tinyx run` gives it. libvirt has no microvm
 * machine, so q35 it is (the kvm kernel boots on both).
 *
 * The network: a virtio NIC on a host bridge, and the guest's address on the
 * command line, where /init reads it (the image has no DHCP client). None
 * without `network`: the console only.
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
  /** Where QEMU writes the serial console (default: a pty, `virsh console`). */
  consoleFile?: string;
}

/** How an exported domain begins: `--out` replaces only a file that begins so. */
export const LIBVIRT_HEADER = '<!-- written by tinyx export libvirt -->\n';

const xml = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

/** QEMU's prefix and the address's last three bytes: the same guest address, the same MAC. */
function macOf(address: string): string {
  return [MAC_PREFIX.qemu, ...address.split('.').slice(1).map((n) => Number(n).toString(16).padStart(2, '0'))].join(':');
}

export function libvirtDomainXml(image: BootableImage, options: LibvirtOptions): string {
  if (image.facts.backend !== 'qemu') {
    throw new TinyxError('E_PLATFORM', `${image.dir} is built for ${image.platform}; tinyx exports a libvirt domain for the QEMU driver, which boots kvm images`, {
      kind: 'user',
      hint: `build it for QEMU: tinyx build ${image.name} --platform kvm`,
    });
  }
  const kernel = image.kernels.vmlinuz;
  if (!kernel) throw new TinyxError('E_KERNEL_MISSING', `${image.dir} has no bzImage (vmlinuz), which libvirt's q35 boots`, { kind: 'user', hint: `build the image again: tinyx build ${image.name}` });
  const name = options.name ?? image.name;
  const network = options.network;
  // Without a network the guest gets no address on its command line; /init then brings up lo only.
  const cmdline = qemuCmdline(image, network, { accel: options.accel, hostTscKhz: options.hostTscKhz });
  const root =
    image.rootAs === 'initrd'
      ? [`    <initrd>${xml(image.rootfs)}</initrd>`]
      : [];
  const disk =
    image.rootAs === 'disk'
      ? [
          "    <disk type='file' device='disk'>",
          "      <driver name='qemu' type='raw'/>",
          `      <source file='${xml(image.rootfs)}'/>`,
          "      <target dev='vda' bus='virtio'/>",
          '      <readonly/>',
          "      <shareable/>",
          '    </disk>',
        ]
      : [];
  const nic = network
    ? [
        "    <interface type='bridge'>",
        `      <mac address='${macOf(network.address)}'/>`,
        `      <source bridge='${xml(network.bridge)}'/>`,
        "      <model type='virtio'/>",
        "      <rom enabled='no'/>",
        '    </interface>',
      ]
    : [];
  const serial = options.consoleFile
    ? ["    <serial type='file'>", `      <source path='${xml(options.consoleFile)}'/>`, "      <target port='0'/>", '    </serial>']
    : ["    <serial type='pty'>", "      <target port='0'/>", '    </serial>'];
  return [
    LIBVIRT_HEADER.trimEnd(),
    `<domain type='${options.accel === 'kvm' ? 'kvm' : 'qemu'}'>`,
    `  <name>${xml(name)}</name>`,
    `  <description>tinyx image ${xml(image.name)} (${xml(image.dir)}), exported by tinyx export libvirt</description>`,
    `  <memory unit='MiB'>${options.memoryMiB}</memory>`,
    `  <vcpu>${options.vcpus ?? 1}</vcpu>`,
    '  <os>',
    "    <type arch='x86_64' machine='q35'>hvm</type>",
    `    <kernel>${xml(kernel)}</kernel>`,
    ...root,
    `    <cmdline>${xml(cmdline)}</cmdline>`,
    '  </os>',
    ...(options.accel === 'kvm' ? ["  <cpu mode='host-passthrough'/>"] : []),
    '  <features>',
    '    <acpi/>',
    '  </features>',
    "  <clock offset='utc'/>",
    // The guest's reboot is how /init ends the VM (the app exited): the domain goes, as with tinyx run.
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>destroy</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    ...disk,
    ...nic,
    ...serial,
    "    <memballoon model='none'/>",
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}
