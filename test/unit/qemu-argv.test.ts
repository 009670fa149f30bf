import test from 'ava';
import { IMAGE_CMDLINE, PLATFORMS } from '@tinyx/image';
import { USER_NETWORK, qemuArgv, qemuCmdline } from '@tinyx/toolstack/internals';

// QEMU's command line is a pure function of the VM's options: the KVM path,
// which this TCG-only host never boots, is checked here argument by argument.

const base = {
  machine: 'microvm' as const,
  memoryMiB: 48,
  vcpus: 1,
  dir: '/run/tinyx/nginx-abcdef',
  kernel: '/img/vmlinux',
  initrd: '/img/initrd.cpio.gz',
  cmdline: qemuCmdline({ facts: PLATFORMS.kvm, cmdline: IMAGE_CMDLINE }, USER_NETWORK),
  forwards: [{ host: 8080, guest: 80 }],
};

/** The value after a flag (the first occurrence). */
function after(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
}

test('KVM: -accel kvm with the host CPU model; no TCG cache size even when asked', (t) => {
  const argv = qemuArgv({ ...base, accel: 'kvm', tcgCacheMiB: 8 });
  t.is(after(argv, '-accel'), 'kvm');
  t.is(after(argv, '-cpu'), 'host');
  t.false(argv.some((a) => a.includes('tb-size')));
});

test('TCG: -accel tcg (with tb-size when a cache size is asked) and no -cpu host', (t) => {
  t.is(after(qemuArgv({ ...base, accel: 'tcg' }), '-accel'), 'tcg');
  const bounded = qemuArgv({ ...base, accel: 'tcg', tcgCacheMiB: 8 });
  t.is(after(bounded, '-accel'), 'tcg,tb-size=8');
  t.false(bounded.includes('-cpu'));
});

test('microvm boots the given kernel with virtio-mmio; q35 with virtio-pci and no option ROM', (t) => {
  const micro = qemuArgv({ ...base, accel: 'tcg' });
  t.is(after(micro, '-M'), 'microvm,acpi=off');
  t.is(after(micro, '-kernel'), '/img/vmlinux');
  t.is(after(micro, '-device'), 'virtio-net-device,netdev=net0');
  t.is(after(micro, '-netdev'), 'user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80');
  t.is(after(micro, '-m'), '48');
  t.is(after(micro, '-serial'), 'file:/run/tinyx/nginx-abcdef/console.log');
  t.regex(after(micro, '-append')!, /^console=ttyS0 .* tinyx\.ip=10\.0\.2\.15\/24 tinyx\.gw=10\.0\.2\.2$/);
  const q35 = qemuArgv({ ...base, machine: 'q35', accel: 'kvm', kernel: '/img/vmlinuz' });
  t.is(after(q35, '-M'), 'q35');
  t.is(after(q35, '-device'), 'virtio-net-pci,romfile=,netdev=net0');
});

test('a bridged VM: its tap and MAC, no forwards; paused and incoming add -S and -incoming', (t) => {
  const argv = qemuArgv({ ...base, accel: 'kvm', tap: { name: 'tx-abcdef', mac: '52:54:00:ab:cd:ef' }, forwards: [], paused: true, incoming: "/tmp/it's.state" });
  t.is(after(argv, '-netdev'), 'tap,id=net0,ifname=tx-abcdef,script=no,downscript=no');
  t.is(after(argv, '-device'), 'virtio-net-device,netdev=net0,mac=52:54:00:ab:cd:ef');
  t.true(argv.includes('-S'));
  t.is(after(argv, '-incoming'), `exec:cat '/tmp/it'\\''s.state'`);
});

test("the kernel command line: the platform's console, the image's own line (its manifest), QEMU's machine settings, the network", (t) => {
  t.is(
    qemuCmdline({ facts: PLATFORMS.kvm, cmdline: 'quiet panic=-1 rootfstype=ramfs' }, USER_NETWORK),
    'console=ttyS0 quiet panic=-1 rootfstype=ramfs reboot=t no_timer_check tinyx.ip=10.0.2.15/24 tinyx.gw=10.0.2.2',
  );
  t.regex(qemuCmdline({ facts: PLATFORMS.kvm, cmdline: 'root=/dev/vda ro' }, { address: '10.99.0.5', prefixLength: 16, gateway: '10.99.0.1' }), /^console=ttyS0 root=\/dev\/vda ro reboot=t no_timer_check tinyx\.ip=10\.99\.0\.5\/16 tinyx\.gw=10\.99\.0\.1$/, 'what the image asks for is what it gets');
});
