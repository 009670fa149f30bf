import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_MEMORY_MIB, TinyxError, openImage } from '@tinyx/image';
import { stringify } from 'yaml';
import { KERNEL_BOOT_PATHS, parseReference } from '@tinyx/builder';
import { DEFAULT_BRIDGE, KUBEVIRT_HEADER, KUBEVIRT_MASQUERADE, LIBVIRT_HEADER, detectAccel, hostTscKhz, kubevirtVirtualMachine, libvirtDomainXml, writeOwnedFile, type OwnedFile } from '@tinyx/toolstack';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError, type Output } from '../output.js';

interface LibvirtArgs extends GlobalArgs {
  image: string;
  name?: string;
  memory: number;
  accel: 'auto' | 'kvm' | 'tcg';
  bridge?: string;
  address?: string;
  gateway?: string;
  'console-file'?: string;
  'xen-guest'?: 'pvh' | 'pv';
  out?: string;
}

/** ADDR/PREFIX: the guest's address and the length of its network's prefix. */
function parseAddress(text: string): { address: string; prefixLength: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text);
  if (!m || m[1]!.split('.').some((n) => Number(n) > 255) || Number(m[2]) < 1 || Number(m[2]) > 30) {
    throw new TinyxError('E_USAGE', `--address ${text}: not an IPv4 address with its prefix length`, { kind: 'user', hint: 'write it as ADDR/PREFIX, e.g. --address 10.213.9.2/16' });
  }
  return { address: m[1]!, prefixLength: Number(m[2]) };
}

const LIBVIRT_FILE: OwnedFile = { option: '--out', start: LIBVIRT_HEADER, what: 'a domain tinyx export libvirt wrote' };
const KUBEVIRT_FILE: OwnedFile = { option: '--out', start: KUBEVIRT_HEADER, what: 'a manifest tinyx export kubevirt wrote' };

/**
 * An export's text: into --out (replacing only an export of the same kind,
 * then a line saying what to run), else on standard output; with --json,
 * one result holding it.
 */
async function emit(out: Output, file: string | undefined, kind: OwnedFile, text: string, next: string, json: Record<string, unknown>): Promise<void> {
  if (file) await writeOwnedFile(file, kind, text);
  if (out.json) out.result({ ok: true, ...json, file: file ?? null });
  else if (file) out.line(`wrote ${file}: ${next}`);
  else process.stdout.write(text);
}

/**
 * The first directory above (or file of) the image that others cannot pass
 * through or read: libvirt's QEMU runs as an unprivileged user (libvirt-qemu
 * on Debian) and then cannot open the kernel. Undefined when it can.
 */
async function hiddenFromOthers(files: string[]): Promise<{ path: string; mode: number } | undefined> {
  for (const file of files) {
    const mode = (await stat(file)).mode & 0o777;
    if ((mode & 0o004) === 0) return { path: file, mode };
  }
  for (let dir = dirname(files[0]!); ; dir = dirname(dir)) {
    const mode = (await stat(dir)).mode & 0o777;
    if ((mode & 0o001) === 0) return { path: dir, mode };
    if (dir === dirname(dir)) return undefined;
  }
}

const libvirtCommand: CommandModule<object, LibvirtArgs> = {
  command: 'libvirt <image>',
  describe: 'A libvirt domain (direct kernel boot: q35 for a kvm image, a libxl PVH or PV domain for a Xen one) for an image directory, as XML',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory (out/<name>): kvm for the QEMU driver, xen-pvh or xen-pv for libxl' })
      .option('name', { type: 'string', describe: "the domain's name (default: the image's)" })
      .option('memory', { type: 'number', default: DEFAULT_MEMORY_MIB, describe: 'guest memory in MiB' })
      .option('accel', { choices: ['auto', 'kvm', 'tcg'] as const, default: 'auto' as const, describe: 'a kvm image: domain type kvm or qemu (TCG); auto: kvm where this host can run a guest with it' })
      .option('xen-guest', { choices: ['pvh', 'pv'] as const, describe: "a Xen image: the guest type (default: the platform's first, pvh for xen-pvh)" })
      .option('bridge', { type: 'string', describe: `a host bridge for the guest's NIC (with --address; tinyx run --network bridge makes ${DEFAULT_BRIDGE.bridge})` })
      .option('address', { type: 'string', describe: "the guest's address on the bridge, ADDR/PREFIX (on its kernel command line, where /init reads it)" })
      .option('gateway', { type: 'string', describe: "the guest's default route (default: none)" })
      .option('console-file', { type: 'string', describe: 'a kvm image: QEMU writes the serial console to this file (default: a pty, for virsh console)' })
      .option('out', { type: 'string', describe: 'write the XML to this file (default: standard output)' })
      .example('$0 export libvirt out/nginx > nginx.xml && virsh create nginx.xml', 'boot it with libvirt; virsh console nginx shows it')
      .example(`$0 export libvirt out/nginx --bridge ${DEFAULT_BRIDGE.bridge} --address 10.213.9.2/16 --gateway ${DEFAULT_BRIDGE.gateway}`, 'on a host bridge, at its own address')
      .example('$0 export libvirt out/nginx-xen --bridge xenbr0 --address 10.213.0.2/16 | virsh -c xen:/// create /dev/stdin', 'a xen-pvh image, on a Xen host through libvirt\'s libxl driver')
      .epilog(
        "A kvm image: the domain boots the bzImage on q35 (libvirt has no microvm machine) with the image's kernel command line as tinyx run gives it; the initramfs is its initrd, an erofs root a read-only shareable virtio disk. A Xen image: a libxl domain (type xen) as its xl.cfg says, PVH at the vmlinux's PVH note or PV, the root as the ramdisk or a read-only xvda (phy: a loop device in dom0), the console on hvc0. Either way the guest's reboot (the app has exited) destroys the domain. The XML names the image's files by absolute path: keep the image directory where it is, readable by libvirt's QEMU. Without --bridge the guest has no network.",
      ) as unknown as Argv<LibvirtArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      if (!!args.bridge !== !!args.address) {
        throw new TinyxError('E_USAGE', `${args.bridge ? '--bridge' : '--address'} needs ${args.bridge ? '--address' : '--bridge'}`, { kind: 'user', hint: 'give both: the bridge the NIC is on and the guest address on it' });
      }
      const image = await openImage(args.image);
      // A Xen domain has no accelerator to choose: Xen is the hypervisor.
      const xen = image.facts.backend === 'xen';
      const accel = xen ? 'tcg' : args.accel === 'auto' ? (await detectAccel()).accel : args.accel;
      const domainXml = libvirtDomainXml(image, {
        ...(args.name ? { name: args.name } : {}),
        accel,
        memoryMiB: args.memory,
        ...(args.bridge && args.address ? { network: { bridge: args.bridge, ...parseAddress(args.address), gateway: args.gateway ?? '' } } : {}),
        hostTscKhz: accel === 'tcg' && !xen ? await hostTscKhz() : undefined,
        ...(args['console-file'] ? { consoleFile: args['console-file'] } : {}),
        ...(args['xen-guest'] ? { xenGuest: args['xen-guest'] } : {}),
      });
      // libxl runs as root in dom0: only the QEMU driver's libvirt-qemu is kept out of closed directories.
      const hidden = image.facts.backend === 'qemu' ? await hiddenFromOthers([image.kernels.vmlinuz!, image.rootfs]) : undefined;
      if (hidden) {
        out.note(`tinyx: warning: libvirt's QEMU runs as libvirt-qemu and cannot reach ${hidden.path} (mode ${hidden.mode.toString(8).padStart(4, '0')}): virsh create would fail with "Permission denied". Put the image under /var/lib/libvirt/images, or let others into that directory (chmod o+x).`);
      }
      await emit(out, args.out, LIBVIRT_FILE, domainXml, `virsh create ${args.out}`, { format: 'libvirt', driver: xen ? 'libxl' : 'qemu', accel: xen ? null : accel, xml: domainXml });
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

interface KubevirtArgs extends GlobalArgs {
  image: string;
  ref: string;
  name?: string;
  memory: number;
  accel: 'kvm' | 'tcg';
  out?: string;
}

const kubevirtCommand: CommandModule<object, KubevirtArgs> = {
  command: 'kubevirt <image>',
  describe: 'A KubeVirt VirtualMachine that boots the kernel-boot container tinyx push wrote, as YAML',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory built for kvm with an initramfs (out/<name>)' })
      .option('ref', { type: 'string', demandOption: true, describe: 'the image tinyx push wrote it to, as the cluster pulls it (REGISTRY/REPOSITORY:TAG or @sha256:...)' })
      .option('name', { type: 'string', describe: "the VirtualMachine's name (default: the image's)" })
      .option('memory', { type: 'number', default: DEFAULT_MEMORY_MIB, describe: 'guest memory in MiB (resources.requests.memory)' })
      .option('accel', { choices: ['kvm', 'tcg'] as const, default: 'kvm' as const, describe: "tcg: the nodes run KubeVirt's software emulation; the kernel command line gets the clock words tinyx run gives TCG guests" })
      .option('out', { type: 'string', describe: 'write the manifest to this file (default: standard output)' })
      .example('$0 push out/nginx ghcr.io/you/nginx:1.0 && $0 export kubevirt out/nginx --ref ghcr.io/you/nginx:1.0 | kubectl apply -f -', 'push, then run it on a cluster with KubeVirt')
      .epilog(
        `The VirtualMachine boots on q35 with firmware.kernelBoot: the kernel and the initramfs from the pushed image's linux/amd64 container (${KERNEL_BOOT_PATHS.kernel}, ${KERNEL_BOOT_PATHS.initrd}), the image's kernel command line, the pod network through masquerade (the guest at ${KUBEVIRT_MASQUERADE.address}, on the command line: the image has no DHCP client), the app's port declared, and its readiness probe as a Kubernetes one where it maps (HTTP: httpGet; TCP: tcpSocket, without an exchange; a console line: none). An erofs image cannot be booted this way: build with --format initramfs.`,
      ) as unknown as Argv<KubevirtArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      parseReference(args.ref);
      const image = await openImage(args.image);
      const vm = kubevirtVirtualMachine(image, { image: args.ref, paths: KERNEL_BOOT_PATHS, ...(args.name ? { name: args.name } : {}), memoryMiB: args.memory, accel: args.accel });
      const text = `${KUBEVIRT_HEADER}${stringify(vm, { aliasDuplicateObjects: false, lineWidth: 0 })}`;
      await emit(out, args.out, KUBEVIRT_FILE, text, `kubectl apply -f ${args.out}`, { format: 'kubevirt', manifest: vm });
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

export const exportCommand: CommandModule = {
  command: 'export <format>',
  describe: 'Describe an image for another engine: a libvirt domain, a KubeVirt VirtualMachine',
  builder: (yargs) => yargs.command(libvirtCommand).command(kubevirtCommand).demandCommand(1, 'name a format: libvirt or kubevirt'),
  handler: () => undefined,
};
