import test from 'ava';
import { IMAGE_CMDLINE, PLATFORMS, TinyxError, type BootableImage } from '@tinyx/image';
import { libvirtDomainXml } from '@tinyx/toolstack';

const image = (over: Partial<BootableImage> = {}): BootableImage => ({
  dir: '/srv/images/web & co',
  name: 'web',
  platform: 'kvm',
  facts: PLATFORMS.kvm,
  readiness: { http: { port: 80, path: '/' } },
  cmdline: IMAGE_CMDLINE,
  kernels: { vmlinuz: '/srv/images/web & co/vmlinuz', vmlinux: '/srv/images/web & co/vmlinux' },
  rootfs: '/srv/images/web & co/initrd.cpio.gz',
  rootAs: 'initrd',
  ...over,
});

test('an initramfs image: q35, the bzImage and the initrd, the command line tinyx run gives (TCG: the clock words), a reboot destroys; paths escaped', (t) => {
  const xml = libvirtDomainXml(image(), { accel: 'tcg', memoryMiB: 64, hostTscKhz: 2096001 });
  t.regex(xml, /^<!-- written by tinyx export libvirt -->\n<domain type='qemu'>/, 'a comment first: --out replaces only a file that begins so');
  t.regex(xml, /<type arch='x86_64' machine='q35'>hvm<\/type>/);
  t.regex(xml, /<kernel>\/srv\/images\/web &amp; co\/vmlinuz<\/kernel>/);
  t.regex(xml, /<initrd>\/srv\/images\/web &amp; co\/initrd\.cpio\.gz<\/initrd>/);
  t.regex(xml, /<cmdline>console=ttyS0 .* reboot=t no_timer_check tsc_early_khz=2096001 tsc=reliable lapic_timer_hz=1000000000<\/cmdline>/);
  t.notRegex(xml, /tinyx\.ip|<interface|<disk/, 'no network unless asked, no disk for an initramfs');
  t.regex(xml, /<on_reboot>destroy<\/on_reboot>/);
  t.regex(xml, /<memory unit='MiB'>64<\/memory>/);
  t.regex(xml, /<serial type='pty'>/);
});

test('KVM: domain type kvm with the host CPU and no TCG clock words; a bridge gives a virtio NIC, a MAC from the address and the address on the command line', (t) => {
  const xml = libvirtDomainXml(image(), { accel: 'kvm', memoryMiB: 128, network: { bridge: 'br0', address: '10.1.2.3', prefixLength: 24, gateway: '10.1.2.1' }, consoleFile: '/var/log/web.log' });
  t.regex(xml, /^<domain type='kvm'>/m);
  t.regex(xml, /<cpu mode='host-passthrough'\/>/);
  t.notRegex(xml, /tsc|lapic/);
  t.regex(xml, /<source bridge='br0'\/>/);
  t.regex(xml, /<mac address='52:54:00:01:02:03'\/>/);
  t.regex(xml, /tinyx\.ip=10\.1\.2\.3\/24 tinyx\.gw=10\.1\.2\.1<\/cmdline>/);
  t.regex(xml, /<serial type='file'>\n\s+<source path='\/var\/log\/web\.log'\/>/);
});

test('an erofs image: its root a read-only shareable virtio disk, no initrd; a Xen image is refused', (t) => {
  const xml = libvirtDomainXml(image({ rootfs: '/srv/web/rootfs.erofs', rootAs: 'disk', cmdline: 'root=/dev/vda rootfstype=erofs ro init=/init' }), { accel: 'tcg', memoryMiB: 64 });
  t.notRegex(xml, /<initrd>/);
  t.regex(xml, /<disk type='file' device='disk'>\n\s+<driver name='qemu' type='raw'\/>\n\s+<source file='\/srv\/web\/rootfs\.erofs'\/>\n\s+<target dev='vda' bus='virtio'\/>\n\s+<readonly\/>\n\s+<shareable\/>/);
  t.regex(xml, /<cmdline>console=ttyS0 root=\/dev\/vda rootfstype=erofs ro init=\/init /);
  const xen = t.throws(() => libvirtDomainXml(image({ platform: 'xen-pvh', facts: PLATFORMS['xen-pvh'] }), { accel: 'tcg', memoryMiB: 64 }), { instanceOf: TinyxError });
  t.regex(xen?.message ?? '', /is built for xen-pvh; tinyx exports a libvirt domain for the QEMU driver/);
});
