import { TinyxError, probePort, type BootableImage, type Readiness } from '@tinyx/image';
import { qemuCmdline } from '../qemu/argv.js';

/**
 * An image as a KubeVirt VirtualMachine (kubevirt.io/v1) that boots the
 * kernel-boot container `tinyx push` wrote (KERNEL_BOOT_PATHS in
 * @tinyx/builder): q35, `firmware.kernelBoot` with the kernel and the
 * initramfs from that image, the image's kernel command line, the pod
 * network through masquerade, and the readiness probe as a Kubernetes one
 * where it maps (HTTP: httpGet; TCP: tcpSocket, without a TCP probe's
 * exchange; a console line: none).
 *
 * The network: KubeVirt's masquerade binding gives the guest 10.0.2.2/24
 * behind 10.0.2.1 by DHCP; tinyx's /init has no DHCP client, so that
 * address goes on the command line, where /init reads it.
 */
export interface KubevirtOptions {
  /** The kernel-boot container: what `tinyx push` printed. */
  image: string;
  /** Where its files are (tinyx push's layout). */
  paths: { kernel: string; initrd: string };
  name?: string;
  memoryMiB: number;
  /** Under TCG on the node, the clock words tinyx run gives (KubeVirt's software emulation). */
  accel?: 'kvm' | 'tcg';
}

/** How an exported manifest begins (a YAML comment): `--out` replaces only a file that begins so. */
export const KUBEVIRT_HEADER = '# written by tinyx export kubevirt\n';

/** KubeVirt's masquerade binding: the guest's address and gateway (its default vmNetworkCIDR, 10.0.2.0/24). */
export const KUBEVIRT_MASQUERADE = { address: '10.0.2.2', prefixLength: 24, gateway: '10.0.2.1' } as const;

/** A DNS-1123 label from an image name (VirtualMachine names are object names). */
function objectName(name: string): string {
  const label = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  if (!label) throw new TinyxError('E_USAGE', `"${name}" gives no Kubernetes object name`, { kind: 'user', hint: 'give one with --name (lower-case letters, digits and "-")' });
  return label;
}

function readinessProbe(readiness: Readiness | null): Record<string, unknown> | undefined {
  if (!readiness || 'console' in readiness) return undefined;
  const timing = { initialDelaySeconds: 1, periodSeconds: 2, timeoutSeconds: 1, failureThreshold: 30 };
  if ('http' in readiness) return { httpGet: { port: readiness.http.port, path: readiness.http.path }, ...timing };
  return { tcpSocket: { port: readiness.tcp.port }, ...timing };
}

export function kubevirtVirtualMachine(image: BootableImage, options: KubevirtOptions): Record<string, unknown> {
  if (image.facts.backend !== 'qemu') {
    throw new TinyxError('E_PLATFORM', `${image.dir} is built for ${image.platform}; KubeVirt boots kvm images`, { kind: 'user', hint: `build it for QEMU: tinyx build ${image.name} --platform kvm --format initramfs` });
  }
  if (image.rootAs !== 'initrd') {
    throw new TinyxError('E_FORMAT', `${image.dir} has its root on a disk (erofs); KubeVirt's kernelBoot boots a kernel and an initramfs`, {
      kind: 'user',
      hint: `build it with an initramfs root: tinyx build ${image.name} --format initramfs`,
    });
  }
  const name = objectName(options.name ?? image.name);
  const probe = readinessProbe(image.readiness);
  const port = probePort(image.readiness);
  const labels = { 'app.kubernetes.io/name': name, 'app.kubernetes.io/managed-by': 'tinyx', 'kubevirt.io/vm': name };
  return {
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name, labels, annotations: { 'tinyx.io/image': image.name, 'tinyx.io/kernel-boot-image': options.image } },
    spec: {
      runStrategy: 'Always',
      template: {
        metadata: { labels },
        spec: {
          domain: {
            machine: { type: 'q35' },
            resources: { requests: { memory: `${options.memoryMiB}Mi` } },
            firmware: {
              kernelBoot: {
                kernelArgs: qemuCmdline(image, KUBEVIRT_MASQUERADE, { accel: options.accel ?? 'kvm' }),
                container: { image: options.image, kernelPath: options.paths.kernel, initrdPath: options.paths.initrd, imagePullPolicy: 'IfNotPresent' },
              },
            },
            devices: {
              autoattachGraphicsDevice: false,
              autoattachSerialConsole: true,
              interfaces: [{ name: 'default', masquerade: {}, model: 'virtio', ...(port !== undefined ? { ports: [{ port, protocol: 'TCP' }] } : {}) }],
            },
          },
          networks: [{ name: 'default', pod: {} }],
          ...(probe ? { readinessProbe: probe } : {}),
          terminationGracePeriodSeconds: 0,
        },
      },
    },
  };
}
