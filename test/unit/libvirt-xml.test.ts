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

test('an erofs image: its root a read-only shareable virtio disk, no initrd', (t) => {
  const xml = libvirtDomainXml(image({ rootfs: '/srv/web/rootfs.erofs', rootAs: 'disk', cmdline: 'root=/dev/vda rootfstype=erofs ro init=/init' }), { accel: 'tcg', memoryMiB: 64 });
  t.notRegex(xml, /<initrd>/);
  t.regex(xml, /<disk type='file' device='disk'>\n\s+<driver name='qemu' type='raw'\/>\n\s+<source file='\/srv\/web\/rootfs\.erofs'\/>\n\s+<target dev='vda' bus='virtio'\/>\n\s+<readonly\/>\n\s+<shareable\/>/);
  t.regex(xml, /<cmdline>console=ttyS0 root=\/dev\/vda rootfstype=erofs ro init=\/init /);
  t.throws(() => libvirtDomainXml(image(), { accel: 'tcg', memoryMiB: 64, xenGuest: 'pvh' }), { message: /--xen-guest pvh: .* is a kvm image, not a Xen one/ });
});

const xenImage = (platform: 'xen-pvh' | 'xen-pv', over: Partial<BootableImage> = {}): BootableImage =>
  image({ platform, facts: PLATFORMS[platform], kernels: platform === 'xen-pv' ? { vmlinuz: '/srv/web/vmlinuz' } : { vmlinuz: '/srv/web/vmlinuz', vmlinux: '/srv/web/vmlinux' }, ...over });

test('a xen-pvh image: a libxl domain entered at the vmlinux PVH note, the initramfs as ramdisk, the console on hvc0 (no TCG words), a netfront card with a Xen MAC', (t) => {
  const xml = libvirtDomainXml(xenImage('xen-pvh'), { accel: 'tcg', memoryMiB: 128, hostTscKhz: 2096001, network: { bridge: 'xenbr0', address: '10.213.0.7', prefixLength: 16, gateway: '10.213.0.1' } });
  t.regex(xml, /^<!-- written by tinyx export libvirt -->\n<domain type='xen'>/);
  t.regex(xml, /<type arch='x86_64' machine='xenpvh'>xenpvh<\/type>\n\s+<kernel>\/srv\/web\/vmlinux<\/kernel>\n\s+<initrd>\/srv\/images\/web &amp; co\/initrd\.cpio\.gz<\/initrd>/);
  t.regex(xml, /<cmdline>console=hvc0 [^<]*tinyx\.ip=10\.213\.0\.7\/16 tinyx\.gw=10\.213\.0\.1<\/cmdline>/);
  t.notRegex(xml, /tsc|lapic|ttyS0|<serial|virtio|q35/, "the QEMU driver's words are not a Xen domain's");
  t.regex(xml, /<interface type='bridge'>\n\s+<mac address='00:16:3e:d5:00:07'\/>\n\s+<source bridge='xenbr0'\/>\n\s+<\/interface>/);
  t.regex(xml, /<console type='pty'>\n\s+<target type='xen' port='0'\/>/);
  t.regex(xml, /<on_reboot>destroy<\/on_reboot>/);
});

test('a Xen image as PV, and an erofs root as a read-only xvda through phy; a guest type the platform lacks and a console file are refused', (t) => {
  const pv = libvirtDomainXml(xenImage('xen-pvh', { rootfs: '/srv/web/rootfs.erofs', rootAs: 'disk', cmdline: 'root=/dev/xvda rootfstype=erofs ro init=/init' }), { accel: 'tcg', memoryMiB: 64, xenGuest: 'pv' });
  t.regex(pv, /<type arch='x86_64' machine='xenpv'>linux<\/type>\n\s+<kernel>\/srv\/web\/vmlinux<\/kernel>\n\s+<cmdline>/, 'PV loads the ELF where there is one');
  t.regex(pv, /<disk type='file' device='disk'>\n\s+<driver name='phy'\/>\n\s+<source file='\/srv\/web\/rootfs\.erofs'\/>\n\s+<target dev='xvda' bus='xen'\/>\n\s+<readonly\/>/);
  t.notRegex(pv, /<initrd>/);
  t.regex(libvirtDomainXml(xenImage('xen-pv'), { accel: 'tcg', memoryMiB: 64 }), /machine='xenpv'>linux<\/type>\n\s+<kernel>\/srv\/web\/vmlinuz<\/kernel>/, 'a xen-pv image: PV, its bzImage');
  t.throws(() => libvirtDomainXml(xenImage('xen-pv'), { accel: 'tcg', memoryMiB: 64, xenGuest: 'pvh' }), { instanceOf: TinyxError, message: /--xen-guest pvh: a xen-pv image boots as pv/ });
  t.throws(() => libvirtDomainXml(xenImage('xen-pvh'), { accel: 'tcg', memoryMiB: 64, consoleFile: '/tmp/c' }), { message: /libvirt's Xen console is a pty/ });
});
