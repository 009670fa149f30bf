import { kernelCmdline, type GuestNetwork } from './cmdline.js';
import { TinyxError } from './errors.js';
import { DEFAULT_MEMORY_MIB, IMAGE_CMDLINE, PLATFORMS, type Platform, type PlatformFacts } from './platforms.js';

/**
 * The xl domain configuration of a tinyx image (xl.cfg(5)). One function
 * writes it for both users: `tinyx build` emits `<name>.xl.cfg` into the image
 * directory (a file of the contract), and the toolstack's xen backend writes
 * the one it creates a domain from (with the VM's own name, address and MAC).
 */
export interface XlConfig {
  name: string;
  /** pvh boots the ELF vmlinux through its PVH entry note; pv the bzImage. */
  type: 'pvh' | 'pv';
  kernel: string;
  /**
   * The root filesystem: the ramdisk (an initramfs), or a read-only disk the
   * guest sees as xvda (ROOT_FORMATS' boots), attached in dom0 by Xen's block
   * hotplug script (a loop device over the file) or the given `script`.
   */
  root: { as: 'initrd' | 'disk'; file: string; script?: string | undefined };
  /** The kernel command line (xl's `extra`). */
  cmdline: string;
  memoryMiB: number;
  vcpus: number;
  /** One network card on a bridge; none when undefined. */
  vif?: { bridge: string; mac?: string; script?: string } | undefined;
  /**
   * The guest's /init ends the VM with a reboot (see the init script): a
   * domain that reboots or crashes is destroyed, not restarted.
   */
  onCrash?: 'destroy' | 'preserve';
  /**
   * Further xl.cfg lines, written as they are after the rest (for settings
   * tinyx does not model, such as `tsc_mode = "native"`). xl reads them, and
   * rejects them with its own message when they do not parse.
   */
  extraLines?: readonly string[];
}

/** The bridge and address the emitted `<name>.xl.cfg` uses: Debian's Xen bridge, the first guest address of the tinyx subnet. */
export const XEN_DEFAULT_NETWORK = { bridge: 'xenbr0', address: '10.213.0.2', prefixLength: 16, gateway: '10.213.0.1' } as const satisfies GuestNetwork & { bridge: string };

/**
 * The `<name>.xl.cfg` of an image directory: absolute paths to its kernel and
 * initrd, 128 MiB, one vCPU, a card on xenbr0 and the default address. Ready
 * for `xl create`; a second VM of the same image needs another tinyx.ip.
 */
export function imageXlConfig(options: { name: string; platform: Platform; dir: string; rootfs: string; rootAs: 'initrd' | 'disk'; cmdline?: string }): string {
  const facts: PlatformFacts = PLATFORMS[options.platform];
  const type = Object.keys(facts.guests)[0];
  if (!facts.xlConfig || (type !== 'pvh' && type !== 'pv')) throw new TinyxError('E_PLATFORM', `${options.platform} images have no xl configuration`, { kind: 'user' });
  // The kernel file the default guest type loads first, among those the platform's image gets.
  const kernel = facts.guests[type]!.kernel.find((artifact) => facts.kernelArtifacts.includes(artifact))!;
  const header = [
    `# The xl domain configuration of the tinyx image "${options.name}" (xl.cfg(5)), written by tinyx build.`,
    `#   xl create ${options.dir}/${options.name}.xl.cfg`,
    `# The guest's address is on the kernel command line (tinyx.ip, tinyx.gw); the bridge must exist in dom0.`,
    '# tinyx run --backend xen writes its own from the same code, with a free address for each VM.',
  ];
  const body = renderXlConfig({
    name: options.name,
    type,
    kernel: `${options.dir}/${kernel}`,
    root: { as: options.rootAs, file: `${options.dir}/${options.rootfs}` },
    cmdline: kernelCmdline({ console: facts.console, image: options.cmdline ?? IMAGE_CMDLINE, network: XEN_DEFAULT_NETWORK }),
    memoryMiB: DEFAULT_MEMORY_MIB,
    vcpus: 1,
    vif: { bridge: XEN_DEFAULT_NETWORK.bridge },
  });
  return `${header.join('\n')}\n${body}`;
}

export function renderXlConfig(config: XlConfig): string {
  const lines = [
    `name = ${quote(config.name, 'name')}`,
    `type = ${quote(config.type, 'type')}`,
    `kernel = ${quote(config.kernel, 'kernel')}`,
    config.root.as === 'initrd'
      ? `ramdisk = ${quote(config.root.file, 'ramdisk')}`
      : // Read-only, so that every domain of the image can open the one file; xl wants target= last.
        `disk = [ ${quote(['format=raw', 'vdev=xvda', 'access=ro', ...(config.root.script ? [`script=${config.root.script}`] : []), `target=${config.root.file}`].join(','), 'disk')} ]`,
    `extra = ${quote(config.cmdline, 'extra')}`,
    `memory = ${positive(config.memoryMiB, 'memory')}`,
    `vcpus = ${positive(config.vcpus, 'vcpus')}`,
  ];
  if (config.vif) {
    const spec = [`bridge=${config.vif.bridge}`, ...(config.vif.mac ? [`mac=${config.vif.mac}`] : []), ...(config.vif.script ? [`script=${config.vif.script}`] : [])].join(',');
    lines.push(`vif = [ ${quote(spec, 'vif')} ]`);
  }
  lines.push(
    // The app's exit reboots the guest (/init's `reboot -f`): that ends the domain.
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    `on_crash = ${quote(config.onCrash ?? 'destroy', 'on_crash')}`,
    ...(config.extraLines ?? []),
  );
  return `${lines.join('\n')}\n`;
}

/** A double-quoted xl string; xl's parser has no escapes, so a quote or newline cannot be written. */
function quote(value: string, field: string): string {
  if (/["\n\\]/.test(value)) {
    throw new TinyxError('E_XL_CONFIG', `xl configuration: ${field} ${JSON.stringify(value)} contains a quote, backslash or newline, which xl.cfg cannot hold`, {
      kind: 'user',
      hint: 'use a path and a name without those characters',
    });
  }
  return `"${value}"`;
}

function positive(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 1) throw new TinyxError('E_XL_CONFIG', `xl configuration: ${field} must be a positive integer, not ${value}`, { kind: 'user' });
  return value;
}
