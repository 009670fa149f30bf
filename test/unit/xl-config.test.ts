import test from 'ava';
import { IMAGE_CMDLINE, PLATFORMS, ROOT_FORMATS, TinyxError, bootCmdline, imageXlConfig, kernelCmdline, renderXlConfig } from '@tinyx/image';

test('an image directory gets a ready xl configuration: pvh boots vmlinux, pv the bzImage', (t) => {
  const pvh = imageXlConfig({ name: 'nginx', platform: 'xen-pvh', dir: '/srv/images/nginx', rootfs: 'initrd.cpio.gz', rootAs: 'initrd' });
  t.regex(pvh, /^# The xl domain configuration of the tinyx image "nginx"/);
  t.regex(pvh, /^type = "pvh"$/m);
  t.regex(pvh, /^kernel = "\/srv\/images\/nginx\/vmlinux"$/m);
  t.regex(pvh, /^ramdisk = "\/srv\/images\/nginx\/initrd\.cpio\.gz"$/m);
  t.regex(pvh, /^extra = "console=hvc0 quiet panic=-1 rootfstype=ramfs tinyx\.ip=10\.213\.0\.2\/16 tinyx\.gw=10\.213\.0\.1"$/m);
  t.regex(pvh, /^vif = \[ "bridge=xenbr0" \]$/m);
  t.regex(pvh, /^on_reboot = "destroy"$/m, "/init's reboot -f ends the domain");
  const pv = imageXlConfig({ name: 'nginx', platform: 'xen-pv', dir: '/srv/images/nginx', rootfs: 'initrd.cpio.gz', rootAs: 'initrd' });
  t.regex(pv, /^type = "pv"$/m);
  t.regex(pv, /^kernel = "\/srv\/images\/nginx\/vmlinuz"$/m);
});

test('the backend writes its own: name, MAC, hotplug script; values xl cannot hold are errors', (t) => {
  const text = renderXlConfig({
    name: 'nginx-1a2b3c',
    type: 'pvh',
    kernel: '/i/vmlinux',
    root: { as: 'initrd', file: '/i/initrd.cpio.gz' },
    cmdline: kernelCmdline({ console: 'hvc0', image: IMAGE_CMDLINE, network: { address: '10.213.0.9', prefixLength: 16, gateway: '10.213.0.1' } }),
    memoryMiB: 64,
    vcpus: 2,
    vif: { bridge: 'xenbr0', mac: '00:16:3e:1a:2b:3c', script: '/usr/lib/tinyx/vif-lean' },
  });
  t.is(
    text,
    [
      'name = "nginx-1a2b3c"',
      'type = "pvh"',
      'kernel = "/i/vmlinux"',
      'ramdisk = "/i/initrd.cpio.gz"',
      'extra = "console=hvc0 quiet panic=-1 rootfstype=ramfs tinyx.ip=10.213.0.9/16 tinyx.gw=10.213.0.1"',
      'memory = 64',
      'vcpus = 2',
      'vif = [ "bridge=xenbr0,mac=00:16:3e:1a:2b:3c,script=/usr/lib/tinyx/vif-lean" ]',
      'on_poweroff = "destroy"',
      'on_reboot = "destroy"',
      'on_crash = "destroy"',
      '',
    ].join('\n'),
  );
  t.false(/vif/.test(renderXlConfig({ name: 'x', type: 'pv', kernel: '/k', root: { as: 'initrd', file: '/r' }, cmdline: '', memoryMiB: 32, vcpus: 1 })), 'no card without vif');
  const quote = t.throws(() => renderXlConfig({ name: 'x', type: 'pv', kernel: '/my "kernel"', root: { as: 'initrd', file: '/r' }, cmdline: '', memoryMiB: 32, vcpus: 1 }), { instanceOf: TinyxError });
  t.regex(quote?.message ?? '', /kernel "\/my \\"kernel\\"" contains a quote/);
  t.throws(() => renderXlConfig({ name: 'x', type: 'pv', kernel: '/k', root: { as: 'initrd', file: '/r' }, cmdline: '', memoryMiB: 0, vcpus: 1 }), { message: /memory must be a positive integer, not 0/ });
});

test('a disk root (erofs): a read-only disk= line, xvda, instead of ramdisk=', (t) => {
  const cfg = renderXlConfig({ name: 'x', type: 'pvh', kernel: '/k', root: { as: 'disk', file: '/img/rootfs.erofs' }, cmdline: 'root=/dev/xvda', memoryMiB: 32, vcpus: 1 });
  t.regex(cfg, /^disk = \[ "format=raw,vdev=xvda,access=ro,target=\/img\/rootfs\.erofs" \]$/m);
  t.notRegex(cfg, /ramdisk/);
  const lean = renderXlConfig({ name: 'x', type: 'pv', kernel: '/k', root: { as: 'disk', file: '/img/rootfs.erofs', script: '/run/tinyx/.hotplug/block-tinyx' }, cmdline: '', memoryMiB: 32, vcpus: 1 });
  t.regex(lean, /^disk = \[ "format=raw,vdev=xvda,access=ro,script=\/run\/tinyx\/\.hotplug\/block-tinyx,target=\/img\/rootfs\.erofs" \]$/m, 'a script of its own, before target= (which xl wants last)');
  const image = imageXlConfig({ name: 'nginx', platform: 'xen-pvh', dir: '/srv/nginx', rootfs: 'rootfs.erofs', rootAs: 'disk', cmdline: bootCmdline(ROOT_FORMATS.erofs, PLATFORMS['xen-pvh']) });
  t.regex(image, /^disk = \[ "format=raw,vdev=xvda,access=ro,target=\/srv\/nginx\/rootfs\.erofs" \]$/m);
  t.regex(image, /^extra = "console=hvc0 quiet panic=-1 root=\/dev\/xvda rootfstype=erofs ro rootwait init=\/init tinyx\.ip=/m);
});

test("the boot command line by root format: an initramfs's stays what it was; erofs names the platform's first disk", (t) => {
  t.is(bootCmdline(ROOT_FORMATS.initramfs, PLATFORMS.kvm), IMAGE_CMDLINE);
  t.is(bootCmdline(ROOT_FORMATS.erofs, PLATFORMS.kvm), 'quiet panic=-1 root=/dev/vda rootfstype=erofs ro init=/init');
  t.is(bootCmdline(ROOT_FORMATS.erofs, PLATFORMS['xen-pv']), 'quiet panic=-1 root=/dev/xvda rootfstype=erofs ro rootwait init=/init');
});
