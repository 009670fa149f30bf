import test from 'ava';
import { IMAGE_CMDLINE, TinyxError, imageXlConfig, kernelCmdline, renderXlConfig } from '@tinyx/image';

test('an image directory gets a ready xl configuration: pvh boots vmlinux, pv the bzImage', (t) => {
  const pvh = imageXlConfig({ name: 'nginx', platform: 'xen-pvh', dir: '/srv/images/nginx', rootfs: 'initrd.cpio.gz' });
  t.regex(pvh, /^# The xl domain configuration of the tinyx image "nginx"/);
  t.regex(pvh, /^type = "pvh"$/m);
  t.regex(pvh, /^kernel = "\/srv\/images\/nginx\/vmlinux"$/m);
  t.regex(pvh, /^ramdisk = "\/srv\/images\/nginx\/initrd\.cpio\.gz"$/m);
  t.regex(pvh, /^extra = "console=hvc0 quiet panic=-1 rootfstype=ramfs tinyx\.ip=10\.213\.0\.2\/16 tinyx\.gw=10\.213\.0\.1"$/m);
  t.regex(pvh, /^vif = \[ "bridge=xenbr0" \]$/m);
  t.regex(pvh, /^on_reboot = "destroy"$/m, "/init's reboot -f ends the domain");
  const pv = imageXlConfig({ name: 'nginx', platform: 'xen-pv', dir: '/srv/images/nginx', rootfs: 'initrd.cpio.gz' });
  t.regex(pv, /^type = "pv"$/m);
  t.regex(pv, /^kernel = "\/srv\/images\/nginx\/vmlinuz"$/m);
});

test('the backend writes its own: name, MAC, hotplug script; values xl cannot hold are errors', (t) => {
  const text = renderXlConfig({
    name: 'nginx-1a2b3c',
    type: 'pvh',
    kernel: '/i/vmlinux',
    ramdisk: '/i/initrd.cpio.gz',
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
  t.false(/vif/.test(renderXlConfig({ name: 'x', type: 'pv', kernel: '/k', ramdisk: '/r', cmdline: '', memoryMiB: 32, vcpus: 1 })), 'no card without vif');
  const quote = t.throws(() => renderXlConfig({ name: 'x', type: 'pv', kernel: '/my "kernel"', ramdisk: '/r', cmdline: '', memoryMiB: 32, vcpus: 1 }), { instanceOf: TinyxError });
  t.regex(quote?.message ?? '', /kernel "\/my \\"kernel\\"" contains a quote/);
  t.throws(() => renderXlConfig({ name: 'x', type: 'pv', kernel: '/k', ramdisk: '/r', cmdline: '', memoryMiB: 0, vcpus: 1 }), { message: /memory must be a positive integer, not 0/ });
});
