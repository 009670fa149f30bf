/** The guest's address as the image's /init reads it from the kernel command line. */
export interface GuestNetwork {
  address: string;
  prefixLength: number;
  gateway: string;
}

/**
 * A guest's kernel command line: the console device (the backend's), what the
 * image needs (its manifest's boot.cmdline), what the backend's machine needs,
 * and the network /init brings up (tinyx.ip=ADDR/PREFIX tinyx.gw=GATEWAY).
 */
export function kernelCmdline(parts: { console: string; image: string; machine?: readonly string[]; network?: GuestNetwork | undefined }): string {
  const network = parts.network ? [`tinyx.ip=${parts.network.address}/${parts.network.prefixLength}`, `tinyx.gw=${parts.network.gateway}`] : [];
  return [`console=${parts.console}`, parts.image, ...(parts.machine ?? []), ...network].join(' ');
}
