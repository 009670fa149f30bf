import test from 'ava';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TinyxError, XenBackend } from '@tinyx/toolstack';
import { IMAGE_CMDLINE, PLATFORMS, chooseGuest, type BootableImage, type Platform } from '@tinyx/image';
import { leaseAddress, MAC_PREFIX, macFor, xenDomainConfig, xlFailure } from '@tinyx/toolstack/internals';

const XENBR0 = { bridge: 'xenbr0', gateway: '10.213.0.1', prefixLength: 16 };

function image(platform: Platform, vmlinux: string | null = '/img/vmlinux'): BootableImage {
  const kernels = { vmlinuz: '/img/vmlinuz', ...(vmlinux ? { vmlinux } : {}) };
  return { dir: '/img', name: 'nginx', platform, facts: PLATFORMS[platform], readiness: null, cmdline: IMAGE_CMDLINE, kernels, rootfs: '/img/initrd.cpio.gz', rootAs: 'initrd' as const };
}

/** A leased address on xenbr0 for a VM id, in a scratch runtime directory (the lease logic the qemu backend uses). */
async function leased(t: { teardown(f: () => Promise<void>): void }, id: string) {
  const runtime = await mkdtemp(join(tmpdir(), 'tinyx-xen-'));
  t.teardown(() => rm(runtime, { recursive: true, force: true }));
  await mkdir(join(runtime, 'other'));
  await leaseAddress('other', runtime, XENBR0);
  await mkdir(join(runtime, id));
  const address = await leaseAddress(id, runtime, XENBR0);
  return { ...XENBR0, address, mac: macFor(id, MAC_PREFIX.xen) };
}

test('a pvh domain: the ELF vmlinux, the leased address on the command line, a Xen MAC on the vif', async (t) => {
  const network = await leased(t, 'nginx-1a2b3c');
  t.is(network.address, '10.213.0.3', 'the second lease');
  const text = xenDomainConfig(image('xen-pvh'), { id: 'nginx-1a2b3c', type: 'pvh', memoryMiB: 128, vcpus: 1, network });
  t.is(
    text,
    [
      'name = "nginx-1a2b3c"',
      'type = "pvh"',
      'kernel = "/img/vmlinux"',
      'ramdisk = "/img/initrd.cpio.gz"',
      'extra = "console=hvc0 quiet panic=-1 rootfstype=ramfs tinyx.ip=10.213.0.3/16 tinyx.gw=10.213.0.1"',
      'memory = 128',
      'vcpus = 1',
      'vif = [ "bridge=xenbr0,mac=00:16:3e:1a:2b:3c" ]',
      'on_poweroff = "destroy"',
      'on_reboot = "destroy"',
      'on_crash = "destroy"',
      '',
    ].join('\n'),
  );
});

test('a pv domain boots the same ELF (its Xen notes), or the bzImage when there is none; extra lines go last', async (t) => {
  const network = await leased(t, 'nginx-00ff00');
  const pv = xenDomainConfig(image('xen-pvh'), { id: 'nginx-00ff00', type: 'pv', memoryMiB: 64, vcpus: 2, network }, { extraLines: ['tsc_mode = "native"'] });
  t.regex(pv, /^type = "pv"$/m);
  t.regex(pv, /^kernel = "\/img\/vmlinux"$/m);
  t.regex(pv, /^memory = 64$/m);
  t.regex(pv, /^vcpus = 2$/m);
  t.regex(pv, /^vif = \[ "bridge=xenbr0,mac=00:16:3e:00:ff:00" \]$/m);
  t.true(pv.endsWith('on_crash = "destroy"\ntsc_mode = "native"\n'));
  const bz = xenDomainConfig(image('xen-pv', null), { id: 'nginx-00ff00', type: 'pv', memoryMiB: 64, vcpus: 1, network });
  t.regex(bz, /^kernel = "\/img\/vmlinuz"$/m);
  const noElf = t.throws(() => xenDomainConfig(image('xen-pvh', null), { id: 'x-1', type: 'pvh', memoryMiB: 64, vcpus: 1, network }), { instanceOf: TinyxError });
  t.is((noElf as TinyxError).code, 'E_NO_KERNEL');
});

test("the guest type comes from the platform (PLATFORMS): its first by default, another of its own when asked, else a named error", (t) => {
  t.is(chooseGuest(image('xen-pvh'), undefined), 'pvh');
  t.is(chooseGuest(image('xen-pvh'), 'pv'), 'pv', 'a xen-pvh kernel boots as pv too');
  t.is(chooseGuest(image('xen-pv'), undefined), 'pv');
  t.is(chooseGuest(image('kvm'), undefined), 'microvm');
  const pvhOfPv = t.throws(() => chooseGuest(image('xen-pv'), 'pvh'), { instanceOf: TinyxError });
  t.is((pvhOfPv as TinyxError).code, 'E_PLATFORM');
  t.regex(pvhOfPv?.message ?? '', /nginx is a xen-pv image, which boots as pv, not pvh/);
  const kvm = t.throws(() => chooseGuest(image('kvm'), 'pvh'), { instanceOf: TinyxError });
  t.regex(kvm?.message ?? '', /nginx is a kvm image, which boots as microvm or q35, not pvh/);
});

test("xl's failures keep xl's own words: a config it cannot parse, no xenstore, anything else", (t) => {
  const parse = xlFailure('create', 'nginx-1a2b3c', {
    exitCode: 1,
    stdout: '',
    stderr: 'Parsing config from /run/tinyx/nginx-1a2b3c/xl.cfg\n/run/tinyx/nginx-1a2b3c/xl.cfg:12: config parsing error near `[\': syntax error, unexpected $end\nFailed to parse config: Invalid argument',
  }, '/run/tinyx/nginx-1a2b3c/xl.cfg');
  t.is(parse.code, 'E_XL_CONFIG');
  t.is(parse.kind, 'user');
  t.regex(parse.message, /xl\.cfg:12: config parsing error near/);
  t.notRegex(parse.message, /Parsing config from/);
  const store = xlFailure('list', 'the domains', { exitCode: 1, stdout: '', stderr: 'xencall: error: Could not obtain handle on privileged command interface: No such file or directory\nlibxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\ncannot init xl context' });
  t.is(store.code, 'E_NOT_DOM0');
  t.is(store.kind, 'host');
  const other = xlFailure('create', 'nginx-1a2b3c', { exitCode: 3, stdout: '', stderr: "libxl: error: libxl_device.c:1408:device_hotplug_child_death_cb: script: /etc/xen/scripts/vif-bridge failed; error detected." });
  t.is(other.code, 'E_XL');
  t.regex(other.message, /^xl create nginx-1a2b3c failed:\nlibxl: error: .*vif-bridge failed/);
});

test('xl.cfg lines for every domain: the option, else TINYX_XEN_XL_EXTRA one per line', (t) => {
  const saved = process.env.TINYX_XEN_XL_EXTRA;
  t.teardown(() => {
    if (saved === undefined) delete process.env.TINYX_XEN_XL_EXTRA;
    else process.env.TINYX_XEN_XL_EXTRA = saved;
  });
  process.env.TINYX_XEN_XL_EXTRA = 'tsc_mode = "native"\n\n  on_watchdog = "destroy"  \n';
  t.deepEqual(new XenBackend().extraLines, ['tsc_mode = "native"', 'on_watchdog = "destroy"']);
  t.deepEqual(new XenBackend({ extraLines: ['vcpus = 2'] }).extraLines, ['vcpus = 2'], 'the option wins');
  delete process.env.TINYX_XEN_XL_EXTRA;
  t.deepEqual(new XenBackend().extraLines, []);
});
