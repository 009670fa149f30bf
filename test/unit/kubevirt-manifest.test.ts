import test from 'ava';
import { IMAGE_CMDLINE, PLATFORMS, TinyxError, type BootableImage } from '@tinyx/image';
import { KUBEVIRT_MASQUERADE, kubevirtVirtualMachine } from '@tinyx/toolstack';
import { virtualMachineValidator } from '../helpers/kubevirt-schema.js';

const image = (over: Partial<BootableImage> = {}): BootableImage => ({
  dir: '/srv/images/nginx',
  name: 'nginx',
  platform: 'kvm',
  facts: PLATFORMS.kvm,
  readiness: { http: { port: 80, path: '/healthz' } },
  cmdline: IMAGE_CMDLINE,
  kernels: { vmlinuz: '/srv/images/nginx/vmlinuz' },
  rootfs: '/srv/images/nginx/initrd.cpio.gz',
  rootAs: 'initrd',
  ...over,
});
const OPTIONS = { image: 'ghcr.io/you/nginx@sha256:' + 'a'.repeat(64), paths: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd' }, memoryMiB: 64 };

type Vm = { metadata: { name: string }; spec: { template: { spec: { domain: { firmware: { kernelBoot: { kernelArgs: string; container: Record<string, string> } }; resources: { requests: { memory: string } } }; readinessProbe?: Record<string, unknown> } } } };

test("the VirtualMachine validates against KubeVirt's published schema (v1.9.0, unknown fields refused), boots the pushed container's kernel and initramfs, and maps the HTTP probe", async (t) => {
  const validate = await virtualMachineValidator();
  const vm = kubevirtVirtualMachine(image(), OPTIONS) as unknown as Vm;
  t.true(validate(vm), JSON.stringify(validate.errors, null, 1));
  const spec = vm.spec.template.spec;
  t.deepEqual(spec.domain.firmware.kernelBoot.container, { image: OPTIONS.image, kernelPath: '/boot/vmlinuz', initrdPath: '/boot/initrd', imagePullPolicy: 'IfNotPresent' });
  t.regex(spec.domain.firmware.kernelBoot.kernelArgs, new RegExp(`^console=ttyS0 .* tinyx\\.ip=${KUBEVIRT_MASQUERADE.address.replace(/\./g, '\\.')}/24 tinyx\\.gw=10\\.0\\.2\\.1$`));
  t.is(spec.domain.resources.requests.memory, '64Mi');
  t.deepEqual(spec.readinessProbe?.httpGet, { port: 80, path: '/healthz' });

  // The validator is not a rubber stamp: a misspelt field, a wrong type.
  const misspelt = structuredClone(vm) as unknown as { spec: { template: { spec: { domain: { firmware: { kernelBoot: Record<string, unknown> } } } } } };
  misspelt.spec.template.spec.domain.firmware.kernelBoot.kernelArg = 'x';
  t.false(validate(misspelt));
  const wrongType = structuredClone(vm) as unknown as { spec: { template: { spec: { domain: { machine: unknown } } } } };
  wrongType.spec.template.spec.domain.machine = 'q35';
  t.false(validate(wrongType));
});

test('a TCP probe becomes tcpSocket (an exchange does not map), a console line none; TCG nodes get the clock words; names become object names', async (t) => {
  const validate = await virtualMachineValidator();
  const tcp = kubevirtVirtualMachine(image({ name: 'Redis_7', readiness: { tcp: { port: 6379, send: 'PING\r\n', expect: '+PONG' } } }), { ...OPTIONS, accel: 'tcg' }) as unknown as Vm;
  t.true(validate(tcp), JSON.stringify(validate.errors));
  t.is(tcp.metadata.name, 'redis-7');
  t.deepEqual(tcp.spec.template.spec.readinessProbe?.tcpSocket, { port: 6379 });
  t.regex(tcp.spec.template.spec.domain.firmware.kernelBoot.kernelArgs, /lapic_timer_hz=1000000000/);
  const quiet = kubevirtVirtualMachine(image({ readiness: { console: { line: 'ready' } } }), OPTIONS) as unknown as Vm;
  t.true(validate(quiet));
  t.is(quiet.spec.template.spec.readinessProbe, undefined);
});

test('an erofs image and a Xen image are refused, naming the fix', (t) => {
  const erofs = t.throws(() => kubevirtVirtualMachine(image({ rootAs: 'disk', rootfs: '/srv/images/nginx/rootfs.erofs' }), OPTIONS), { instanceOf: TinyxError });
  t.regex(erofs?.hint ?? '', /--format initramfs/);
  const xen = t.throws(() => kubevirtVirtualMachine(image({ platform: 'xen-pvh', facts: PLATFORMS['xen-pvh'] }), OPTIONS), { instanceOf: TinyxError });
  t.regex(xen?.message ?? '', /KubeVirt boots kvm images/);
});
