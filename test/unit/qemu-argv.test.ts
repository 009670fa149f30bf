import test from 'ava';
import { IMAGE_CMDLINE, PLATFORMS } from '@tinyx/image';
import { USER_NETWORK, freePort, qemuArgv, qemuCmdline, tscKhzFromCpuinfo } from '@tinyx/toolstack/internals';

// QEMU's command line is a pure function of the VM's options: the KVM path,
// which this TCG-only host never boots, is checked here argument by argument.

const base = {
  machine: 'microvm' as const,
  memoryMiB: 48,
  vcpus: 1,
  dir: '/run/tinyx/nginx-abcdef',
  kernel: '/img/vmlinux',
  root: { as: 'initrd' as const, file: '/img/initrd.cpio.gz' },
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

test('a disk root (erofs): a read-only virtio-blk drive instead of -initrd, the device by machine', (t) => {
  const disk = { as: 'disk' as const, file: '/img/a,b/rootfs.erofs' };
  const micro = qemuArgv({ ...base, accel: 'tcg', root: disk });
  t.false(micro.includes('-initrd'));
  t.is(after(micro, '-drive'), 'id=root,file=/img/a,,b/rootfs.erofs,format=raw,if=none,readonly=on', "a comma in the path is doubled, as QEMU's option parser wants");
  t.true(micro.includes('virtio-blk-device,drive=root'));
  const q35 = qemuArgv({ ...base, machine: 'q35', accel: 'kvm', kernel: '/img/vmlinuz', root: disk });
  t.true(q35.includes('virtio-blk-pci,drive=root'));
  t.false(q35.includes('virtio-blk-device,drive=root'));
  const initrd = qemuArgv({ ...base, accel: 'tcg' });
  t.is(after(initrd, '-initrd'), '/img/initrd.cpio.gz');
  t.false(initrd.includes('-drive'));
});

test("TCG with a known host TSC rate: the guest keeps the TSC as its clock (tsc_early_khz, tsc=reliable); under TCG the APIC timer's rate is stated (lapic_timer_hz); KVM adds neither, an unknown TSC rate no tsc", (t) => {
  const image = { facts: PLATFORMS.kvm, cmdline: IMAGE_CMDLINE };
  t.regex(qemuCmdline(image, USER_NETWORK, { accel: 'tcg', hostTscKhz: 2096001 }), / no_timer_check tsc_early_khz=2096001 tsc=reliable lapic_timer_hz=1000000000 tinyx\.ip=/);
  t.notRegex(qemuCmdline(image, USER_NETWORK, { accel: 'kvm', hostTscKhz: 2096001 }), /tsc|lapic/);
  t.notRegex(qemuCmdline(image, USER_NETWORK, { accel: 'tcg' }), /tsc/);
});

test("the host's TSC rate from /proc/cpuinfo: only with constant_tsc and nonstop_tsc, from the first CPU", (t) => {
  const cpu = (mhz: string, flags: string): string => `processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu ${flags} sse\n`;
  t.is(tscKhzFromCpuinfo(`${cpu('2096.001', 'constant_tsc nonstop_tsc')}\n${cpu('1000.000', 'constant_tsc nonstop_tsc')}`), 2096001);
  t.is(tscKhzFromCpuinfo(cpu('2096.001', 'constant_tsc')), undefined, 'a TSC that stops in deep idle');
  t.is(tscKhzFromCpuinfo(cpu('2096.001', 'nonstop_tsc')), undefined, 'a TSC whose rate follows the clock');
  t.is(tscKhzFromCpuinfo(cpu('?', 'constant_tsc nonstop_tsc')), undefined);
  t.is(tscKhzFromCpuinfo(''), undefined);
});

test('the probe forward ports of VMs started one after another are all different (the kernel hands a closed port out again: 300 in a row repeat one)', async (t) => {
  const ports: number[] = [];
  for (let i = 0; i < 300; i++) ports.push(await freePort());
  t.is(new Set(ports).size, ports.length);
  t.true(ports.every((p) => p > 0 && p < 65536));
});
