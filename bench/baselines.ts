// The two baselines the benchmark compares a tinyx VM against, each prepared once
// and cached under the benchmark's cache directory:
//
//   debian VM     a classic Debian 12 guest: a full debootstrap (systemd as init), the
//                 app's Debian package, Debian's cloud kernel and its initrd, booted
//                 from an ext4 disk. What LightVM's "Debian VM" row stands for.
//   stock kernel  the tinyx image's own initramfs under Debian's cloud kernel instead
//                 of the tailored one: what the tailored kernel alone is worth.
//
// Every cache entry is built in a temporary directory under the cache and renamed
// into place when complete, so an interrupted run leaves nothing half-made behind.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, truncate, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import { createGzip } from 'node:zlib';
import { pickBaseSource, readAptSources, removeTree, unmountBelow, writeCpio, type AptSource, type ImageEntry } from '@tinyx/builder/internals';
import { run } from '@tinyx/image';
import type { Accelerator } from '@tinyx/toolstack';
import { errorCode } from './error-text.js';
import { isRecord, isStringList } from './json-shape.js';

/** Debian's kernel for cloud guests: virtio drivers, no hardware ones; the smallest stock kernel Debian ships. */
const CLOUD_KERNEL = 'linux-image-cloud-amd64';

/** What an app adds to the Debian VM: its package and the edits that make it reachable from the host. */
interface DebianApp {
  packages: readonly string[];
  configure(root: string): Promise<void>;
}

const DEBIAN_APPS: Record<string, DebianApp> = {
  nginx: { packages: ['nginx'], configure: async () => {} },
  redis: { packages: ['redis-server'], configure: openRedis },
};

/** The guest's network on QEMU's user-mode net, the same the tinyx image gets from its command line. */
const GUEST_ADDRESS = '10.0.2.15/24';
const GUEST_GATEWAY = '10.0.2.2';

/** Free space on the Debian VM's disk, as a share of the root: room for logs and a running system. */
const DISK_HEADROOM = 0.3;
const MiB = 1024 * 1024;

/** A Debian VM's files and what they hold. */
export interface DebianVm {
  kernel: string;
  initrd: string;
  disk: string;
  kernelVersion: string;
  rootBytes: number;
  diskBytes: number;
}

/** What a Debian VM's meta.json says that its files do not. */
interface DebianVmMeta {
  kernelVersion: string;
  rootBytes: number;
  diskBytes: number;
}

/** How a baseline VM is started: its kernel and initrd, its memory, one forward, its console's file. */
interface QemuBoot {
  kernel: string;
  initrd: string;
  memoryMiB: number;
  hostPort: number;
  guestPort: number;
  consoleFile: string;
  /** Default tcg. */
  accel?: Accelerator;
}

/** The tinyx image's initramfs, with the stock kernel's modules appended, and the stock kernel. */
export interface StockKernelTinyxRoot {
  kernel: string;
  /** The version of the kernel it boots (Debian's cloud kernel), which labels its figures. */
  kernelVersion: string;
  initrd: string;
  /** What to add to the image's command line. */
  append: string;
}

/** Debian's cloud kernel as prepareCloudKernel caches it. */
interface CloudKernel {
  dir: string;
  vmlinuz: string;
  version: string;
  /** Module names in load order. */
  modules: string[];
}

// ---------------------------------------------------------------------------------
// The Debian VM

/**
 * A classic Debian VM for `app` ('nginx' or 'redis'), in `${cacheDir}/baseline-debian-<app>/`:
 * disk.img (ext4, the whole root), and the root's own kernel and initrd next to it.
 * Built once; later calls return the cached one.
 */
export async function prepareDebianVm({ cacheDir, app }: { cacheDir: string; app: string }): Promise<DebianVm> {
  const spec = DEBIAN_APPS[app];
  if (!spec) throw new Error(`no Debian VM baseline for "${app}" (known: ${Object.keys(DEBIAN_APPS).join(', ')})`);
  const dir = join(cacheDir, `baseline-debian-${app}`);
  const cached = await readMeta(dir);
  if (cached) return debianVmPaths(dir, debianVmMeta(cached, dir));

  const temp = await makeTemp(cacheDir, `debian-${app}`);
  try {
    const root = join(temp, 'root');
    const source = pickBaseSource(await readAptSources());
    await debootstrap(root, source, [...spec.packages, CLOUD_KERNEL]);
    await configureNetwork(root);
    await writeFile(join(root, 'etc/hostname'), `debian-${app}\n`);
    await writeFile(join(root, 'etc/fstab'), '/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1\n');
    await spec.configure(root);

    const built = join(temp, 'vm');
    await mkdir(built);
    const kernelVersion = await bootKernelVersion(root);
    await copyFile(join(root, `boot/vmlinuz-${kernelVersion}`), join(built, 'vmlinuz'));
    await copyFile(join(root, `boot/initrd.img-${kernelVersion}`), join(built, 'initrd.img'));
    const rootBytes = await treeBytes(root);
    const diskBytes = await makeExt4(root, join(built, 'disk.img'), rootBytes);
    const meta = { app, kernelVersion, rootBytes, diskBytes, mirror: source.uri, suite: source.suite, created: new Date().toISOString() };
    return debianVmPaths(await publish(built, dir, meta), meta);
  } finally {
    await removeTree(temp);
  }
}

/**
 * QEMU's arguments to boot a Debian VM from prepareDebianVm. The disk is opened
 * with snapshot=on: writes go to a temporary overlay, so every boot starts from
 * the same disk (no journal to replay, no machine-id from the last boot).
 */
export function debianVmQemuArgs({ kernel, initrd, disk, memoryMiB, hostPort, guestPort, consoleFile, accel = 'tcg' }: QemuBoot & { disk: string }): string[] {
  return [
    ...q35Args({ kernel, initrd, memoryMiB, hostPort, guestPort, consoleFile, accel, cmdline: 'root=/dev/vda rw console=ttyS0 quiet' }),
    '-drive', `file=${disk},if=virtio,format=raw,snapshot=on`,
  ];
}

/**
 * The baselines' machine: q35, one vCPU, direct kernel boot, the console to a
 * file, a virtio-net card on user-mode networking with one forward, and no
 * option ROM on it (as the toolstack's q35 has none).
 */
function q35Args({ kernel, initrd, memoryMiB, hostPort, guestPort, consoleFile, accel, cmdline }: Required<QemuBoot> & { cmdline: string }): string[] {
  return [
    '-M', 'q35',
    '-accel', accel,
    '-m', String(memoryMiB),
    '-smp', '1',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-serial', `file:${consoleFile}`,
    '-kernel', kernel,
    '-initrd', initrd,
    '-append', cmdline,
    '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${hostPort}-:${guestPort}`,
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
  ];
}

function debianVmPaths(dir: string, meta: DebianVmMeta): DebianVm {
  return {
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    disk: join(dir, 'disk.img'),
    kernelVersion: meta.kernelVersion,
    rootBytes: meta.rootBytes,
    diskBytes: meta.diskBytes,
  };
}

/**
 * A full Debian root: debootstrap's default variant (required + important
 * priorities, so systemd, apt, ifupdown, ... as a Debian install has them) with
 * the app's packages and the kernel. Their maintainer scripts run in
 * debootstrap's own chroot, which has /proc and /sys mounted (the kernel's
 * postinst runs update-initramfs there, which makes the initrd) and which
 * forbids starting services (its own policy-rc.d and a fake start-stop-daemon),
 * so nothing needs a chroot of ours.
 */
async function debootstrap(root: string, source: AptSource, include: readonly string[]): Promise<void> {
  const args = ['--arch=amd64', `--include=${include.join(',')}`];
  if (source.keyring) args.push(`--keyring=${source.keyring}`);
  args.push(source.suite, root, source.uri);
  try {
    await run('debootstrap', args, { hint: `check that ${source.uri} serves ${source.suite}` });
  } finally {
    // The second stage mounts /proc and /sys in the target and may leave them on failure.
    await unmountBelow(root);
  }
}

/**
 * systemd-networkd with the static address QEMU's user-mode network expects
 * (its DHCP would do too, but a static address keeps DHCP's round trips out of
 * the boot time, as tinyx's /init does). The match covers both the predictable
 * names (enp0s2) and the kernel's (eth0).
 */
async function configureNetwork(root: string): Promise<void> {
  const network = ['[Match]', 'Name=en* eth*', '', '[Network]', `Address=${GUEST_ADDRESS}`, `Gateway=${GUEST_GATEWAY}`, ''].join('\n');
  await writeFile(join(root, 'etc/systemd/network/10-tinyx-baseline.network'), network);
  // systemctl enable only writes symlinks, which works in a chroot with nothing mounted.
  await run('chroot', [root, 'systemctl', 'enable', 'systemd-networkd.service']);
}

/** Debian's redis listens on loopback only and refuses remote clients in protected mode: open it to the host's forward. */
async function openRedis(root: string): Promise<void> {
  const file = join(root, 'etc/redis/redis.conf');
  const conf = await readFile(file, 'utf8');
  const opened = conf.replace(/^bind .*$/m, 'bind 0.0.0.0').replace(/^protected-mode .*$/m, 'protected-mode no');
  if (!/^bind 0\.0\.0\.0$/m.test(opened) || !/^protected-mode no$/m.test(opened)) throw new Error(`${file}: found no "bind" or "protected-mode" line to change`);
  await writeFile(file, opened);
}

/** The version of the one kernel in the root's /boot (vmlinuz-<version>). */
async function bootKernelVersion(root: string): Promise<string> {
  const kernels = (await readdir(join(root, 'boot'))).filter((name) => name.startsWith('vmlinuz-'));
  const [kernel] = kernels;
  if (kernels.length !== 1 || kernel === undefined) throw new Error(`expected one kernel in ${root}/boot, found: ${kernels.join(', ') || 'none'}`);
  return kernel.slice('vmlinuz-'.length);
}

/**
 * The root as an ext4 image, sized root + DISK_HEADROOM. The file is sparse
 * (truncate, then mkfs.ext4 -d writes only what it fills), so it costs the host
 * about the root's size. Returns the image's size as the guest sees it.
 */
async function makeExt4(root: string, image: string, rootBytes: number): Promise<number> {
  const size = Math.ceil((rootBytes * (1 + DISK_HEADROOM)) / MiB) * MiB;
  await writeFile(image, '');
  await truncate(image, size);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', root, image]);
  return size;
}

// ---------------------------------------------------------------------------------
// The tinyx root on Debian's stock kernel

/** Where the extra archive puts its script and modules: new top-level names, so nothing of the image is replaced. */
const BASELINE_INIT = '/tinyx-baseline-init';
const BASELINE_INSMOD = '/tinyx-baseline-insmod';

/**
 * The module loader the baseline /init runs: finit_module(2) for each file
 * named, static, built with the host's gcc. Its own, since the image's BusyBox
 * has /init's applets only (no insmod) since 2026-12-02.
 */
const INSMOD_SOURCE = `#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int failed = 0;
  for (int i = 1; i < argc; i++) {
    int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) { perror(argv[i]); failed = 1; }
    if (fd >= 0) close(fd);
  }
  return failed;
}
`;
const BASELINE_MODULES = '/tinyx-baseline-modules';

/**
 * The drivers the tinyx VM needs from a kernel, by Kconfig symbol and module
 * name. A tinyx VM on q35 has a virtio-pci network card and nothing else (no
 * disk, so VIRTIO_BLK is not needed even when Debian builds it as a module).
 */
const NEEDED_DRIVERS: readonly { symbol: string; module: string }[] = [
  { symbol: 'VIRTIO_PCI', module: 'virtio_pci' },
  { symbol: 'VIRTIO_NET', module: 'virtio_net' },
];

/**
 * Debian's cloud kernel booting the tinyx image's own initramfs
 * (imageDir/initrd.cpio.gz). The modules it needs and a small /init that loads
 * them are a second cpio appended to the image's: the kernel unpacks
 * concatenated archives as one initramfs. Cached in
 * `${cacheDir}/baseline-stock-<hash of kernel and image>/`.
 */
export async function prepareStockKernelTinyxRoot({ cacheDir, imageDir }: { cacheDir: string; imageDir: string }): Promise<StockKernelTinyxRoot> {
  const cloud = await prepareCloudKernel(cacheDir);
  const imageInitrd = join(imageDir, 'initrd.cpio.gz');
  await checkHasBusybox(imageInitrd);
  const script = baselineInit(cloud.modules);
  const key = createHash('sha256')
    .update(JSON.stringify({ kernel: cloud.version, initrd: await fileSha256(imageInitrd), script, insmod: INSMOD_SOURCE }))
    .digest('hex')
    .slice(0, 24);
  const dir = join(cacheDir, `baseline-stock-${key}`);
  const result: StockKernelTinyxRoot = { kernel: cloud.vmlinuz, kernelVersion: cloud.version, initrd: join(dir, 'initrd.cpio.gz'), append: `rdinit=${BASELINE_INIT}` };
  if (await readMeta(dir)) return result;

  const temp = await makeTemp(cacheDir, 'stock');
  try {
    const built = join(temp, 'out');
    await mkdir(built);
    const extra = join(temp, 'baseline.cpio.gz');
    await writeFile(join(temp, 'insmod.c'), INSMOD_SOURCE);
    await run('gcc', ['-static', '-Os', '-s', '-o', join(temp, 'insmod'), join(temp, 'insmod.c')]);
    await writeGzipCpio(extra, [
      { type: 'file', path: BASELINE_INIT, mode: 0o755, source: { content: Buffer.from(script) } },
      { type: 'file', path: BASELINE_INSMOD, mode: 0o755, source: { path: join(temp, 'insmod') } },
      ...cloud.modules.map((m): ImageEntry => ({ type: 'file', path: `${BASELINE_MODULES}/${m}.ko`, mode: 0o644, source: { path: join(cloud.dir, 'modules', `${m}.ko`) } })),
    ]);
    await concatenate([imageInitrd, extra], join(built, 'initrd.cpio.gz'));
    await publish(built, dir, { kernel: cloud.version, image: imageDir, modules: cloud.modules, created: new Date().toISOString() });
    return result;
  } finally {
    await removeTree(temp);
  }
}

/**
 * QEMU's arguments to boot prepareStockKernelTinyxRoot's result, with the
 * command line the toolstack gives a tinyx image. q35 with virtio-pci, not
 * microvm: QEMU loads Debian's bzImage on microvm, but the kernel hangs in its
 * timer setup there (no PIT, HPET or PM timer to calibrate against), and with
 * noapic it reaches /init but its serial console goes silent.
 */
export function stockKernelQemuArgs({ kernel, initrd, append, memoryMiB, hostPort, guestPort, consoleFile, accel = 'tcg' }: QemuBoot & { append: string }): string[] {
  const cmdline = `console=ttyS0 quiet reboot=t panic=-1 rootfstype=ramfs tinyx.ip=${GUEST_ADDRESS} tinyx.gw=${GUEST_GATEWAY} ${append}`;
  return q35Args({ kernel, initrd, memoryMiB, hostPort, guestPort, consoleFile, accel, cmdline });
}

/**
 * The script the stock kernel runs first (with the image's BusyBox shell):
 * loads the modules, in dependency order, with its own loader, then hands
 * over to the image's own /init, which finds eth0 as it would under the
 * tinyx kernel.
 */
function baselineInit(modules: readonly string[]): string {
  return [
    '#!/bin/busybox sh',
    '# tinyx bench: Debian\'s stock kernel builds these drivers as modules; load them, then run the image.',
    ...modules.map((m) => `${BASELINE_INSMOD} ${BASELINE_MODULES}/${m}.ko || echo "tinyx-baseline: loading ${m} failed"`),
    'exec /init',
    '',
  ].join('\n');
}

/** The image's BusyBox runs the baseline /init: check it is there (the image's /bin is a link to /usr/bin). */
async function checkHasBusybox(initrd: string): Promise<void> {
  const { stdout } = await run('sh', ['-c', 'zcat -- "$1" | cpio -t --quiet', 'sh', initrd]);
  const names = new Set(stdout.split('\n'));
  if (!names.has('bin/busybox') && !names.has('usr/bin/busybox')) throw new Error(`${initrd} has no /bin/busybox to load the stock kernel's modules with`);
}

/**
 * Debian's cloud kernel, in `${cacheDir}/baseline-cloud-kernel/`: vmlinuz and,
 * in modules/, the NEEDED_DRIVERS that it builds as modules with their
 * dependencies, uncompressed (BusyBox's insmod need not know .xz or .zst).
 * Downloaded from the host's mirror and suite, the same the Debian VM is
 * bootstrapped from, so both baselines run the same kernel.
 */
async function prepareCloudKernel(cacheDir: string): Promise<CloudKernel> {
  const dir = join(cacheDir, 'baseline-cloud-kernel');
  const cached = await readMeta(dir);
  if (cached) {
    const { version, modules } = cloudKernelMeta(cached, dir);
    return { dir, vmlinuz: join(dir, 'vmlinuz'), version, modules };
  }

  const temp = await makeTemp(cacheDir, 'cloud-kernel');
  try {
    const deb = await downloadCloudKernel(temp);
    const pkg = join(temp, 'pkg');
    await run('dpkg-deb', ['-x', deb, pkg]);
    const version = await bootKernelVersion(pkg);
    const modulesDir = join(pkg, 'lib/modules', version);
    // The package ships no modules.dep: depmod writes it at install time, as here.
    await run('depmod', ['-b', pkg, version]);
    const config = await readFile(join(pkg, `boot/config-${version}`), 'utf8');
    const wanted = NEEDED_DRIVERS.filter((d) => kconfigValue(config, d.symbol, version) === 'm').map((d) => d.module);
    const order = moduleLoadOrder(await readFile(join(modulesDir, 'modules.dep'), 'utf8'), wanted);

    const built = join(temp, 'out');
    await mkdir(join(built, 'modules'), { recursive: true });
    await copyFile(join(pkg, `boot/vmlinuz-${version}`), join(built, 'vmlinuz'));
    for (const m of order) await uncompressedModule(join(modulesDir, m.file), join(built, 'modules', `${m.name}.ko`));
    const meta = { version, package: basename(deb), modules: order.map((m) => m.name), created: new Date().toISOString() };
    await publish(built, dir, meta);
    return { dir, vmlinuz: join(dir, 'vmlinuz'), version, modules: meta.modules };
  } finally {
    await removeTree(temp);
  }
}

/**
 * Fetches the cloud kernel's .deb with apt-get download, against a private apt
 * state in `temp` that holds only the host's base mirror and suite: the host's
 * own package lists are neither read (they may be stale) nor changed.
 * linux-image-cloud-amd64 is a metapackage: the kernel is the package it depends on.
 */
async function downloadCloudKernel(temp: string): Promise<string> {
  const source = pickBaseSource(await readAptSources());
  const apt = join(temp, 'apt');
  for (const sub of ['lists/partial', 'cache/archives/partial', 'sources.list.d']) await mkdir(join(apt, sub), { recursive: true });
  const line = `deb ${source.keyring ? `[signed-by=${source.keyring}] ` : ''}${source.uri} ${source.suite} main\n`;
  await writeFile(join(apt, 'sources.list'), line);
  const aptSettings: [string, string][] = [
    ['Dir::Etc::SourceList', join(apt, 'sources.list')],
    ['Dir::Etc::SourceParts', join(apt, 'sources.list.d')],
    ['Dir::State::Lists', join(apt, 'lists')],
    ['Dir::Cache', join(apt, 'cache')],
    // The private directories belong to root; apt's download sandbox user could not write them.
    ['APT::Sandbox::User', 'root'],
  ];
  const aptOptions = aptSettings.flatMap(([k, v]) => ['-o', `${k}=${v}`]);
  const aptGet = (args: readonly string[]) => run('apt-get', ['-q', ...aptOptions, ...args], { cwd: temp });
  await aptGet(['update']);
  await aptGet(['download', CLOUD_KERNEL]);
  const meta = await findDeb(temp, CLOUD_KERNEL);
  const depends = (await run('dpkg-deb', ['-f', meta, 'Depends'])).stdout;
  const kernelPackage = depends.split(',').map((d) => d.trim().split(/\s/)[0] ?? '').find((name) => /^linux-image-.*-cloud-amd64$/.test(name));
  if (!kernelPackage) throw new Error(`${CLOUD_KERNEL} depends on no kernel package: ${depends}`);
  await aptGet(['download', kernelPackage]);
  return findDeb(temp, kernelPackage);
}

async function findDeb(dir: string, pkg: string): Promise<string> {
  const deb = (await readdir(dir)).find((name) => name.startsWith(`${pkg}_`) && name.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download left no ${pkg}_*.deb in ${dir}`);
  return join(dir, deb);
}

/** A Kconfig symbol's value in a .config, 'y' or 'm'; a driver the kernel lacks altogether is an error. */
function kconfigValue(config: string, symbol: string, version: string): 'y' | 'm' {
  const value = config.match(new RegExp(`^CONFIG_${symbol}=(.*)$`, 'm'))?.[1];
  if (value !== 'y' && value !== 'm') throw new Error(`Debian's ${version} kernel has no CONFIG_${symbol}: the tinyx image cannot run on it`);
  return value;
}

/**
 * The modules to insmod, dependencies first, from modules.dep
 * ("kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko ...").
 * Each module appears once, after everything it depends on. A module's file
 * is relative to /lib/modules/<version>.
 */
function moduleLoadOrder(modulesDep: string, wanted: readonly string[]): { name: string; file: string }[] {
  const deps = new Map<string, string[]>();
  for (const line of modulesDep.split('\n')) {
    const [file, rest] = line.split(':');
    if (file && rest !== undefined) deps.set(file, rest.split(/\s+/).filter(Boolean));
  }
  const fileOf = (name: string): string => {
    const file = [...deps.keys()].find((f) => moduleName(f) === name);
    if (!file) throw new Error(`modules.dep has no module ${name}`);
    return file;
  };
  const order: { name: string; file: string }[] = [];
  const visit = (file: string): void => {
    if (order.some((m) => m.file === file)) return;
    for (const dep of deps.get(file) ?? []) visit(dep);
    order.push({ name: moduleName(file), file });
  };
  for (const name of wanted) visit(fileOf(name));
  return order;
}

/** virtio_net from kernel/drivers/net/virtio_net.ko.xz (modules.dep names, like module names, use _ where files may use -). */
function moduleName(file: string): string {
  return basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** Copies a module, decompressing a .ko.xz, .ko.zst or .ko.gz on the way. */
async function uncompressedModule(from: string, to: string): Promise<void> {
  const tools: Record<string, string> = { '.xz': 'xz', '.zst': 'zstd', '.gz': 'gzip' };
  const tool = tools[from.match(/\.(xz|zst|gz)$/)?.[0] ?? ''];
  if (!tool) return copyFile(from, to);
  await run('sh', ['-c', `${tool} -dc -- "$1" > "$2"`, 'sh', from, to]);
}

/** A gzip'd newc cpio of the entries, with the builder's writer (deterministic: mtime 0). */
async function writeGzipCpio(file: string, entries: readonly ImageEntry[]): Promise<void> {
  const through = new PassThrough();
  const written = pipeline(through, createGzip({ level: 9 }), createWriteStream(file));
  await writeCpio(entries, through, { mtime: 0 });
  through.end();
  await written;
}

async function concatenate(files: readonly string[], output: string): Promise<void> {
  const out = createWriteStream(output);
  for (const file of files) await pipeline(createReadStream(file), out, { end: false });
  out.end();
  await new Promise<void>((resolve, reject) => out.once('finish', resolve).once('error', reject));
}

// ---------------------------------------------------------------------------------
// Shared

/**
 * A fresh directory under the cache to build an entry in, named after this
 * process. The temporary directories of runs that died on the way (killed, so
 * no `finally` ran) are removed first, with whatever debootstrap left mounted in them.
 */
async function makeTemp(cacheDir: string, label: string): Promise<string> {
  await mkdir(cacheDir, { recursive: true });
  for (const name of await readdir(cacheDir)) {
    const pid = Number(name.match(/^\.tmp-baseline-.*-(\d+)-\w{6}$/)?.[1]);
    if (pid && !isAlive(pid)) await removeTree(join(cacheDir, name));
  }
  return mkdtemp(join(cacheDir, `.tmp-baseline-${label}-${process.pid}-`));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

/** An entry's meta.json, or undefined while the entry does not exist (meta.json is written last). */
async function readMeta(dir: string): Promise<unknown> {
  return readFile(join(dir, 'meta.json'), 'utf8').then((text): unknown => JSON.parse(text), () => undefined);
}

/** What a cached Debian VM's meta.json must hold; a meta.json that does not is an error naming it. */
function debianVmMeta(meta: unknown, dir: string): DebianVmMeta {
  if (isRecord(meta) && typeof meta.kernelVersion === 'string' && typeof meta.rootBytes === 'number' && typeof meta.diskBytes === 'number') {
    return { kernelVersion: meta.kernelVersion, rootBytes: meta.rootBytes, diskBytes: meta.diskBytes };
  }
  throw new Error(`${join(dir, 'meta.json')} lacks kernelVersion, rootBytes or diskBytes: remove ${dir} to build it again`);
}

/** What the cached cloud kernel's meta.json must hold; a meta.json that does not is an error naming it. */
function cloudKernelMeta(meta: unknown, dir: string): { version: string; modules: string[] } {
  if (isRecord(meta) && typeof meta.version === 'string' && isStringList(meta.modules)) return { version: meta.version, modules: meta.modules };
  throw new Error(`${join(dir, 'meta.json')} lacks version or modules: remove ${dir} to download it again`);
}

/**
 * Publishes a directory built in a temporary one: meta.json last, then one
 * rename into place. When a concurrent run published the same entry first,
 * theirs is kept (same inputs) and ours goes with the temporary directory.
 */
async function publish(built: string, dir: string, meta: object): Promise<string> {
  await writeFile(join(built, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  try {
    await rename(built, dir);
  } catch (error) {
    if (!['ENOTEMPTY', 'EEXIST'].includes(errorCode(error) ?? '') || !(await readMeta(dir))) throw error;
  }
  return dir;
}

async function fileSha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** Apparent size of a directory tree in bytes (what the files hold, not the blocks), as bench/build.ts counts a root. */
async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}
