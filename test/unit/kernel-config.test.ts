import test from 'ava';
import { readFile } from 'node:fs/promises';
import { KERNEL_FEATURES } from '@tinyx/builder';
import { checkConfig, findDependencies, importedSymbols, inferFeatures, kernelBuildKey, kernelConfigKey, kernelFragments, mergeFragments, parseKconfig, renderKconfig, SYMBOL_FEATURES } from '@tinyx/builder/internals';
import { fixturePath } from '../helpers/fixture-root.js';

const fixture = (name: string): Promise<string> => readFile(fixturePath(`kernel/${name}`), 'utf8');

test('fragments merge in order: a later value wins and remembers its fragment', (t) => {
  const merged = mergeFragments([
    { name: 'base.config', text: 'CONFIG_NET=y\nCONFIG_IPV6=y\n# comment\nCONFIG_HZ=100\n' },
    { name: 'trim.config', text: '# CONFIG_IPV6 is not set\n' },
    { name: 'feature ipv6 (recipe)', text: 'CONFIG_IPV6=y\nCONFIG_HZ=250\n' },
  ]);
  t.deepEqual(merged.get('NET'), { value: 'y', origin: 'base.config' });
  t.deepEqual(merged.get('IPV6'), { value: 'y', origin: 'feature ipv6 (recipe)' });
  t.deepEqual(merged.get('HZ'), { value: '250', origin: 'feature ipv6 (recipe)' });
  t.is(renderKconfig(mergeFragments([{ name: 'a', text: '# CONFIG_VT is not set\nCONFIG_X="a b"\n' }])), '# CONFIG_VT is not set\nCONFIG_X="a b"\n');
  t.throws(() => parseKconfig('CONFIG_OK=y\nNOT_A_LINE\n', 'bad.config'), { message: 'bad.config: line 2: not a Kconfig line: NOT_A_LINE' });
});

test('the bundled fragments: base, platform, its network card with net, trim, features, the root format, decompressor, in that order', async (t) => {
  const fragments = await kernelFragments({ platform: 'kvm', features: new Map([['net', ['recipe']], ['epoll', ['inferred: epoll_create (/usr/sbin/nginx)']]]), format: 'initramfs', decompressor: 'RD_GZIP' });
  t.deepEqual(
    fragments.map((f) => f.name),
    ['base.config', 'shared.config', 'platforms/kvm.config', 'platforms/kvm.net.config', 'trim.config', 'feature net (recipe)', 'feature epoll (inferred: epoll_create (/usr/sbin/nginx))', 'formats/initramfs.config', 'the initramfs compression'],
  );
  t.is(mergeFragments(fragments).get('BLK_DEV_INITRD')?.value, 'y');
  t.is(mergeFragments(fragments).get('NO_HZ_IDLE')?.origin, 'base.config', 'every kernel is tickless when idle');
  // The build split: options that change widely included headers are in every kernel, so kernels share their objects.
  for (const wide of ['BLOCK', 'TIMERFD', 'AIO', 'INOTIFY_USER', 'SYSVIPC']) t.is(mergeFragments(fragments).get(wide)?.origin, 'shared.config', wide);
  t.is(mergeFragments(fragments).get('SWAP')?.value, 'n', 'no swap, which BLOCK would bring');
  t.is(mergeFragments(fragments).get('SIGNALFD'), undefined, 'a leaf option stays with the apps that need it');
  const merged = mergeFragments(fragments);
  t.is(merged.get('RD_GZIP')?.value, 'y', 'the decompressor beats the trim list');
  t.is(merged.get('RD_XZ')?.value, 'n');
  t.is(merged.get('VIRTIO_NET')?.origin, 'platforms/kvm.net.config');
  t.is(merged.get('PVH')?.origin, 'platforms/kvm.config');
  // An erofs root: the platform's disk driver and the filesystem, and no initramfs support.
  for (const [platform, driver] of [['kvm', 'VIRTIO_BLK'], ['xen-pvh', 'XEN_BLKDEV_FRONTEND'], ['xen-pv', 'XEN_BLKDEV_FRONTEND']] as const) {
    const erofs = await kernelFragments({ platform, features: new Map(), format: 'erofs', decompressor: null });
    t.deepEqual(erofs.map((f) => f.name), ['base.config', 'shared.config', `platforms/${platform}.config`, `platforms/${platform}.block.config`, 'trim.config', 'formats/erofs.config'], platform);
    const merged = mergeFragments(erofs);
    t.is(merged.get(driver)?.value, 'y', platform);
    t.is(merged.get('EROFS_FS')?.value, 'y');
    t.is(merged.get('MISC_FILESYSTEMS')?.value, 'y', 'EROFS_FS is under this menu');
    t.is(merged.get('BLK_DEV_INITRD')?.value, 'n');
  }
  // The recipe's kernel.disable comes last: it wins even over a feature and the decompressor.
  const pruned = mergeFragments(await kernelFragments({ platform: 'kvm', features: new Map([['shmem', ['recipe']]]), format: 'initramfs', decompressor: 'RD_GZIP', disable: ['TMPFS', 'AIO'] }));
  t.deepEqual(pruned.get('TMPFS'), { value: 'n', origin: "the recipe's kernel.disable" });
  t.deepEqual(pruned.get('AIO'), { value: 'n', origin: "the recipe's kernel.disable" });
  t.is(pruned.get('SHMEM')?.value, 'y');
  // A build's kernelDisable (the minimizer's trial) comes after the recipe's, under its own name.
  const trial = await kernelFragments({ platform: 'kvm', features: new Map([['net', ['recipe']]]), format: 'initramfs', decompressor: null, disable: ['TMPFS'], alsoDisable: ['INET'] });
  t.deepEqual(trial.slice(-2).map((f) => f.name), ["the recipe's kernel.disable", "the build's kernelDisable"]);
  t.deepEqual(mergeFragments(trial).get('INET'), { value: 'n', origin: "the build's kernelDisable" });
  const tar = await kernelFragments({ platform: 'kvm', features: new Map(), format: 'tar', decompressor: null });
  t.true(tar.some((f) => f.name === 'formats/initramfs.config'), "a tar's kernel is an initramfs one");
  const noNet = await kernelFragments({ platform: 'xen-pvh', features: new Map(), format: 'initramfs', decompressor: null });
  t.false(noNet.some((f) => f.name.includes('.net.')), 'no network card without the net feature');
  t.is(mergeFragments(noNet).get('XEN_PVH')?.value, 'y');
  // Every platform has both fragments, and every line of every bundled fragment parses.
  for (const platform of ['kvm', 'xen-pvh', 'xen-pv'] as const) {
    const all = await kernelFragments({ platform, features: new Map(Object.keys(KERNEL_FEATURES).map((f) => [f as keyof typeof KERNEL_FEATURES, ['test']])), format: 'initramfs', decompressor: 'RD_XZ' });
    t.true(mergeFragments(all).size > 20, platform);
  }
});

test('the check finds an option Kconfig dropped, in a real final .config', async (t) => {
  const final = parseKconfig(await fixture('kvm-nginx.config'));
  t.is(final.get('VIRTIO_NET'), 'y');
  t.is(final.get('BLOCK'), 'n', 'tinyconfig has no block layer');
  const requested = mergeFragments([
    { name: 'platforms/kvm.config', text: 'CONFIG_PVH=y\nCONFIG_VIRTIO_BLK=y\n' },
    { name: 'trim.config', text: '# CONFIG_VT is not set\n# CONFIG_X86_64 is not set\n' },
    { name: 'feature net (recipe)', text: 'CONFIG_NET=y\n' },
  ]);
  const check = checkConfig(requested, final);
  t.deepEqual(check.dropped, [{ symbol: 'VIRTIO_BLK', wanted: 'y', got: 'n', origin: 'platforms/kvm.config' }]);
  t.deepEqual(check.stuckOn, [{ symbol: 'X86_64', got: 'y', origin: 'trim.config' }]);
  t.deepEqual(checkConfig(mergeFragments([{ name: 'x', text: 'CONFIG_PVH=y\n' }]), final), { dropped: [], stuckOn: [] });
});

test("a dropped option's unmet dependencies come from the Kconfig files, if-blocks included", async (t) => {
  const files = new Map([
    ['arch/x86/xen/Kconfig', await fixture('Kconfig.xen')],
    ['drivers/net/Kconfig', await fixture('Kconfig.net')],
  ]);
  const deps = findDependencies(files, ['XEN_PVH', 'XEN_NETDEV_FRONTEND', 'VIRTIO_NET', 'NO_SUCH_OPTION']);
  t.deepEqual(deps.get('XEN_PVH'), { file: 'arch/x86/xen/Kconfig', dependsOn: ['XEN && XEN_PVHVM && ACPI'] });
  // XEN_NETDEV_FRONTEND sits inside `if NETDEVICES`; VIRTIO_NET inside `if NET_CORE` too.
  t.deepEqual(deps.get('XEN_NETDEV_FRONTEND'), { file: 'drivers/net/Kconfig', dependsOn: ['NETDEVICES', 'XEN'] });
  t.deepEqual(deps.get('VIRTIO_NET')?.dependsOn, ['NETDEVICES', 'NET_CORE', 'VIRTIO']);
  t.false(deps.has('NO_SUCH_OPTION'));
});

test('features inferred from the symbols nginx and redis import (real objdump -T)', async (t) => {
  const nginx = await fixture('objdump-T-nginx.txt');
  const symbols = importedSymbols(nginx);
  t.true(symbols.includes('epoll_create'));
  t.true(symbols.includes('SSL_get_error'));
  t.false(symbols.includes('ngx_epoll_module'), 'what nginx exports is not an import');
  t.false(symbols.some((s) => s.startsWith('(')), 'version tags are not names');
  const fromNginx = inferFeatures(new Map([['/usr/sbin/nginx', nginx]]));
  t.deepEqual([...fromNginx.keys()], ['epoll', 'eventfd', 'futex', 'net']);
  t.deepEqual(fromNginx.get('eventfd'), ['eventfd (/usr/sbin/nginx)']);
  const fromRedis = inferFeatures(new Map([['/usr/bin/redis-check-rdb', await fixture('objdump-T-redis-server.txt')], ['/usr/lib/x86_64-linux-gnu/libsystemd.so.0.35.0', await fixture('objdump-T-libsystemd.txt')]]));
  t.true(fromRedis.has('file-locking'), 'redis calls flock');
  t.true(fromRedis.get('epoll')!.some((e) => e.endsWith('(/usr/bin/redis-check-rdb)')));
  t.true(fromRedis.has('inotify') && fromRedis.get('inotify')!.every((e) => e.includes('libsystemd')), 'inotify comes from libsystemd, not redis');
  // Every feature the table names exists.
  for (const feature of new Set(Object.values(SYMBOL_FEATURES))) t.true(feature in KERNEL_FEATURES, feature);
});

test('cache keys: the config by source and request (not origins), the kernel by source and final .config', (t) => {
  const a = mergeFragments([{ name: 'base.config', text: 'CONFIG_NET=y\n' }, { name: 'feature epoll (recipe)', text: 'CONFIG_EPOLL=y\n' }]);
  const sameFromElsewhere = mergeFragments([{ name: 'x', text: 'CONFIG_NET=y\nCONFIG_EPOLL=y\n' }]);
  const more = mergeFragments([{ name: 'x', text: 'CONFIG_NET=y\nCONFIG_EPOLL=y\nCONFIG_AIO=y\n' }]);
  t.is(kernelConfigKey('debian:linux-source-6.1 6.1.192-2', a), kernelConfigKey('debian:linux-source-6.1 6.1.192-2', sameFromElsewhere));
  t.not(kernelConfigKey('debian:linux-source-6.1 6.1.192-2', a), kernelConfigKey('debian:linux-source-6.1 6.1.192-2', more));
  t.not(kernelConfigKey('debian:linux-source-6.1 6.1.192-2', a), kernelConfigKey('debian:linux-source-6.1 6.1.193-1', a));
  t.is(kernelBuildKey('s', 'CONFIG_A=y\n'), kernelBuildKey('s', 'CONFIG_A=y\n'));
  t.not(kernelBuildKey('s', 'CONFIG_A=y\n'), kernelBuildKey('s', 'CONFIG_A=y\nCONFIG_B=y\n'));
  t.regex(kernelBuildKey('s', ''), /^[0-9a-f]{24}$/);
});
