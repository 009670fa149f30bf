import { copyFile, cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Cache, cacheKey, pickBaseSource, readAptSources, removeTree, run, unmountBelow } from '@tinyx/builder/internals';
import { librariesIn } from './payload.js';

/**
 * dom0 for the Xen test harness: Xen's hypervisor, a Linux kernel for dom0,
 * and a root filesystem (an uncompressed newc cpio) with the Xen tools, all
 * from Debian packages of the host's suite. Built once per key into the
 * tinyx cache (xen-dom0/<key>/), atomically, like every other cache entry.
 * Its /init comes with each run's payload (payload.ts).
 */
export interface Dom0 {
  key: string;
  /** The hypervisor, gunzipped: a multiboot ELF that QEMU's -kernel loads. */
  xen: string;
  /** dom0's kernel (Debian's linux-image-amd64). */
  kernel: string;
  /** dom0's root filesystem, an uncompressed newc cpio; the run's payload is appended to it. */
  rootCpio: string;
  versions: { xen: string; linux: string; suite: string };
  /** The shared libraries in dom0's root, by file name: what a payload need not bring. */
  libraries: Set<string>;
  cached: boolean;
  seconds: number;
}

/**
 * What dom0 needs beyond minbase: the Xen tools and xenstore's command-line
 * tools (the vif-bridge hotplug script calls xenstore-read and -write), kmod
 * to load the backends, iproute2 for the bridge and the hotplug script (it
 * falls back to `ip link set master` without brctl), BusyBox for wget.
 */
export const DOM0_PACKAGES = ['xen-utils-4.17', 'xenstore-utils', 'kmod', 'iproute2', 'busybox'];

/** The Xen tools' package, whose version picks the hypervisor package: tools and hypervisor must match. */
const XEN_TOOLS_PACKAGE = 'xen-utils-4.17';
const XEN_HYPERVISOR_PACKAGE = 'xen-hypervisor-4.17-amd64';

/**
 * The kernel's modules dom0 loads; the other 380 MiB of modules are left
 * out. drivers/xen: xenfs, evtchn, gntdev, gntalloc, privcmd (what xenstored
 * and xl open); the network and block backends; loop (the block hotplug
 * scripts put an erofs root image on a loop device for blkback); the bridge
 * and what it needs. Directories, or one module's file.
 */
const DOM0_MODULE_DIRS = ['kernel/drivers/xen', 'kernel/drivers/net/xen-netback', 'kernel/drivers/block/xen-blkback', 'kernel/drivers/block/loop.ko', 'kernel/net/bridge', 'kernel/net/802', 'kernel/net/llc'];

/** What dom0 never uses at run time: its share of the initramfs is memory taken from dom0. */
const DOM0_TRIM = ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale', 'var/cache/apt', 'var/lib/apt/lists', 'var/cache/debconf'];

export interface Dom0Options {
  cache: Cache;
  signal?: AbortSignal | undefined;
  /** Each line a subprocess prints, and what the builder is doing. */
  onLine?: (line: string) => void;
}

export async function buildDom0(options: Dom0Options): Promise<Dom0> {
  const started = performance.now();
  const { cache, signal } = options;
  const onLine = options.onLine ?? (() => undefined);
  const source = pickBaseSource(await readAptSources());
  const kernelPackage = await resolveKernelPackage(signal);
  const key = cacheKey('xen-dom0', { suite: source.suite, mirror: source.uri, packages: DOM0_PACKAGES, kernelPackage, modules: DOM0_MODULE_DIRS, trim: DOM0_TRIM, settings: DOM0_SETTINGS });

  const hit = await cache.lookup('xen-dom0', key);
  if (hit) return { ...(await dom0Files(cache, hit, key)), cached: true, seconds: (performance.now() - started) / 1000 };

  const temp = await cache.makeTemp('xen-dom0');
  try {
    const root = join(temp, 'root');
    onLine(`debootstrap ${source.suite} from ${source.uri} with ${DOM0_PACKAGES.join(', ')}`);
    await run('debootstrap', ['--variant=minbase', `--include=${DOM0_PACKAGES.join(',')}`, ...(source.keyring ? [`--keyring=${source.keyring}`] : []), source.suite, root, source.uri], {
      signal,
      onLine,
    });
    await unmountBelow(temp);

    // The hypervisor must be the version of the tools in dom0 (the domctl interface changes within a series).
    const xenVersion = (await run('dpkg-query', [`--admindir=${join(root, 'var/lib/dpkg')}`, '-W', '-f=${Version}', XEN_TOOLS_PACKAGE], { signal })).stdout.trim();
    const debs = join(temp, 'debs');
    await mkdir(debs);
    onLine(`apt-get download ${XEN_HYPERVISOR_PACKAGE}=${xenVersion} ${kernelPackage.name}=${kernelPackage.version}`);
    await run('apt-get', ['download', `${XEN_HYPERVISOR_PACKAGE}=${xenVersion}`, `${kernelPackage.name}=${kernelPackage.version}`], {
      signal,
      cwd: debs,
      hint: 'the host apt lists must know these versions: apt-get update',
    });
    const extracted = join(temp, 'extracted');
    for (const deb of await readdir(debs)) await run('dpkg-deb', ['-x', join(debs, deb), extracted], { signal });

    // Xen's package ships it gzipped; QEMU's multiboot loader wants the ELF.
    const xenGz = (await readdir(join(extracted, 'boot'))).find((f) => /^xen-.*\.gz$/.test(f));
    if (!xenGz) throw new Error(`${XEN_HYPERVISOR_PACKAGE} has no /boot/xen-*.gz`);
    await run('sh', ['-c', 'gzip -dc "$1" > "$2"', 'sh', join(extracted, 'boot', xenGz), join(temp, 'xen')], { signal });
    const vmlinuz = (await readdir(join(extracted, 'boot'))).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`${kernelPackage.name} has no /boot/vmlinuz-*`);
    await copyFile(join(extracted, 'boot', vmlinuz), join(temp, 'vmlinuz'));
    const linuxVersion = vmlinuz.slice('vmlinuz-'.length);

    await copyModules(join(extracted, 'lib/modules', linuxVersion), join(root, 'lib/modules', linuxVersion));
    await run('depmod', ['-b', root, linuxVersion], { signal });
    await configureRoot(root);
    const libraries = await librariesIn(root);

    // Sorted names and --reproducible: the same root gives the same archive.
    onLine('packing dom0 root');
    await run('sh', ['-c', 'cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null --reproducible -o -H newc --quiet > "$2"', 'sh', root, join(temp, 'root.cpio')], { signal });
    await removeTree(root);
    await removeTree(extracted);
    await removeTree(debs);

    const rootBytes = (await stat(join(temp, 'root.cpio'))).size;
    const dir = await cache.publish('xen-dom0', key, temp, {
      key,
      suite: source.suite,
      mirror: source.uri,
      packages: DOM0_PACKAGES,
      xen: xenVersion,
      linux: linuxVersion,
      kernelPackage,
      rootBytes,
      libraries,
      seconds: (performance.now() - started) / 1000,
      created: new Date().toISOString(),
    });
    return { ...(await dom0Files(cache, dir, key)), cached: false, seconds: (performance.now() - started) / 1000 };
  } finally {
    await removeTree(temp);
  }
}

async function dom0Files(cache: Cache, dir: string, key: string): Promise<Omit<Dom0, 'cached' | 'seconds'>> {
  const meta = await cache.readMeta<{ xen: string; linux: string; suite: string; libraries: string[] }>(dir);
  return {
    key,
    xen: join(dir, 'xen'),
    kernel: join(dir, 'vmlinuz'),
    rootCpio: join(dir, 'root.cpio'),
    versions: { xen: meta.xen, linux: meta.linux, suite: meta.suite },
    libraries: new Set(meta.libraries),
  };
}

/** linux-image-amd64 is a metapackage: the package it depends on, and that package's candidate version. */
async function resolveKernelPackage(signal: AbortSignal | undefined): Promise<{ name: string; version: string }> {
  const depends = (await run('apt-cache', ['depends', 'linux-image-amd64'], { signal, hint: 'apt-get update' })).stdout;
  const name = depends.match(/Depends:\s+(linux-image-[^\s]+)/)?.[1];
  if (!name) throw new Error(`apt-cache depends linux-image-amd64 names no kernel package:\n${depends}`);
  const show = (await run('apt-cache', ['show', '--no-all-versions', name], { signal })).stdout;
  const version = show.match(/^Version:\s*(\S+)/m)?.[1];
  if (!version) throw new Error(`apt-cache show ${name} gives no version`);
  return { name, version };
}

async function copyModules(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const dir of DOM0_MODULE_DIRS) {
    const present = await stat(join(from, dir)).then(() => true, () => false);
    if (present) await cp(join(from, dir), join(to, dir), { recursive: true });
  }
  // depmod needs to know what is built in, or modprobe of a built-in module fails.
  for (const file of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
    await copyFile(join(from, file), join(to, file)).catch(() => undefined);
  }
}

/**
 * xl's and xenconsoled's settings: the guests' consoles go to files (xl
 * console wants a terminal); autoballoon off because dom0's memory is fixed
 * by dom0_mem. /init is not here but in each run's payload, so that changing
 * it does not rebuild dom0.
 */
const DOM0_SETTINGS = { autoballoon: 'off', xenconsoled: '--log=guest --log-dir=/var/log/xen/console' };

async function configureRoot(root: string): Promise<void> {
  const xlConf = join(root, 'etc/xen/xl.conf');
  const xl = await readFile(xlConf, 'utf8').catch(() => '');
  await writeFile(xlConf, `${xl.replace(/^\s*#?\s*autoballoon\s*=.*$/m, '')}\nautoballoon="${DOM0_SETTINGS.autoballoon}"\n`);
  const defaults = join(root, 'etc/default/xen');
  const current = await readFile(defaults, 'utf8').catch(() => '');
  await writeFile(defaults, `${current}\nXENCONSOLED_ARGS="${DOM0_SETTINGS.xenconsoled}"\n`);
  await writeFile(join(root, 'etc/hostname'), 'dom0\n');
  for (const path of DOM0_TRIM) await rm(join(root, path), { recursive: true, force: true });
}
