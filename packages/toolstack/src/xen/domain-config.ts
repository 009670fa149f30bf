import { XEN_DEFAULT_NETWORK, kernelCmdline, kernelFor, renderXlConfig, type BootableImage } from '@tinyx/image';
import type { BridgeConfig } from '../bridge.js';
import type { XenRecord } from '../store.js';

/** Debian's Xen bridge and the tinyx subnet: the network of the image's own `<name>.xl.cfg` (XEN_DEFAULT_NETWORK). */
export const DEFAULT_XEN_BRIDGE: BridgeConfig = { bridge: XEN_DEFAULT_NETWORK.bridge, gateway: XEN_DEFAULT_NETWORK.gateway, prefixLength: XEN_DEFAULT_NETWORK.prefixLength };

/**
 * The xl.cfg of a domain: the renderer the image's `<name>.xl.cfg` comes
 * from, with the VM's name, the kernel for its type, the image's command line
 * with the leased address, the MAC on the vif, and the hotplug scripts of the
 * lean choice (hotplug.ts) on the vif and the root disk, and any words the
 * caller adds to the command line (a profiled boot's).
 */
export function xenDomainConfig(
  image: BootableImage,
  record: Pick<XenRecord, 'id' | 'type' | 'memoryMiB' | 'vcpus' | 'network'>,
  options: { extraLines?: readonly string[] | undefined; vifScript?: string | undefined; blockScript?: string | undefined; kernelArgs?: readonly string[] | undefined } = {},
): string {
  return renderXlConfig({
    name: record.id,
    type: record.type,
    kernel: kernelFor(image, record.type),
    root: { as: image.rootAs, file: image.rootfs, ...(options.blockScript ? { script: options.blockScript } : {}) },
    cmdline: [kernelCmdline({ console: image.facts.console, image: image.cmdline, network: record.network }), ...(options.kernelArgs ?? [])].join(' '),
    memoryMiB: record.memoryMiB,
    vcpus: record.vcpus,
    vif: { bridge: record.network.bridge, mac: record.network.mac, ...(options.vifScript ? { script: options.vifScript } : {}) },
    ...(options.extraLines ? { extraLines: options.extraLines } : {}),
  });
}
