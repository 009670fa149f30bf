import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, realpath, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { build, createBuild, defaultCacheDir, loadRecipeFile, setRecipeKernelDisable, type KernelResult, type Manifest } from '@tinyx/builder';
import { BUSYBOX_PATH, Cache, createBase, hostBaseSpec, mount, packImage, parseKconfig, removeTree, tinyConfigKey, unmountBelow } from '@tinyx/builder/internals';
import { hostTscKhz } from '@tinyx/toolstack';
import { TCG_APIC_TIMER_HZ } from '@tinyx/toolstack/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli, startCli } from '../helpers/cli.js';

// The real thing: Debian's linux-source, tinyconfig + fragments, make, and a
// boot under QEMU (TCG on a host whose KVM cannot run a Linux guest). The
// shared build cache keeps the kernels, so a second run costs nothing.
const test = integrationTest({ kernel: true, tools: ['qemu-system-x86_64', 'file', 'readelf', 'objdump', 'sha256sum', 'pgrep'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-kernel-'));
test.after.always(() => removeTree(work));

/**
 * A BusyBox initramfs whose /init prints a marker and reboots (QEMU exits with
 * -no-reboot). The BusyBox is the pipeline's own, the static one in the cached
 * Debian base every build starts from (the nginx build above made it; a cache
 * hit here), not whatever the host has.
 */
async function markerInitramfs(marker: string): Promise<string> {
  const base = await createBase(new Cache(defaultCacheDir()), await hostBaseSpec(), {});
  const dir = join(work, 'marker');
  await mkdir(dir, { recursive: true });
  await packImage(
    [
      { type: 'file', path: BUSYBOX_PATH, mode: 0o755, source: { path: join(base.root, BUSYBOX_PATH) } },
      { type: 'file', path: '/init', mode: 0o755, source: { content: Buffer.from(`#!/bin/busybox sh\n/bin/busybox echo ${marker}\n/bin/busybox reboot -f\n`) } },
      { type: 'char', path: '/dev/console', mode: 0o600, major: 5, minor: 1 },
    ],
    'initramfs',
    dir,
    { mtime: 0 },
  );
  return join(dir, 'initrd.cpio.gz');
}

function bootQemu(kernel: string, initrd: string, machine: string, append: readonly string[] = []): { output: string; status: number | null; seconds: number } {
  const started = performance.now();
  const result = spawnSync(
    'qemu-system-x86_64',
    ['-M', machine, '-accel', 'tcg', '-m', '128', '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio', '-no-reboot', '-kernel', kernel, '-initrd', initrd, '-append', ['console=ttyS0 reboot=t panic=-1', ...append].join(' ')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  return { output: `${result.stdout}${result.stderr}`, status: result.status, seconds: (performance.now() - started) / 1000 };
}

let nginx: Manifest;

test.serial('tinyx build nginx: vmlinuz, vmlinux and kernel.config next to the initrd, with the features recorded', async (t) => {
  const out = join(work, 'nginx');
  nginx = await build({ recipe: 'nginx', outDir: out, format: 'initramfs' });
  const kernel = nginx.kernel!;
  t.truthy(kernel);
  t.regex(kernel.version, /^6\.1\./);
  t.is(kernel.platform, 'kvm');
  t.is(nginx.artifacts.kernel, 'vmlinuz');
  t.is(nginx.artifacts.vmlinux, 'vmlinux');
  t.is(nginx.sizes.kernel, (await stat(join(out, 'vmlinuz'))).size);
  t.is(nginx.sizes.total, nginx.sizes.kernel! + nginx.sizes.initrd);
  t.regex(execFileSync('file', ['-b', join(out, 'vmlinuz')], { encoding: 'utf8' }), /Linux kernel x86 boot executable bzImage/);
  const config = parseKconfig(await readFile(join(out, 'kernel.config'), 'utf8'));
  for (const symbol of ['VIRTIO_NET', 'VIRTIO_MMIO_CMDLINE_DEVICES', 'PVH', 'SERIAL_8250_CONSOLE', 'EPOLL', 'EVENTFD', 'UNIX', 'INET', 'RD_GZIP', 'BLK_DEV_INITRD']) t.is(config.get(symbol), 'y', symbol);
  for (const symbol of ['VT', 'INPUT', 'IPV6', 'RD_XZ', 'RD_BZIP2', 'SERIAL_8250_PCI', 'XEN']) t.is(config.get(symbol) ?? 'n', 'n', symbol);
  t.is(kernel.configSha256, execFileSync('sha256sum', [join(out, 'kernel.config')], { encoding: 'utf8' }).split(' ')[0]!);
  const epoll = kernel.features.find((f) => f.name === 'epoll')!;
  t.deepEqual(epoll.from.slice(0, 1), ['recipe']);
  t.true(epoll.from.some((f) => f === 'inferred: epoll_create (/usr/sbin/nginx)'), epoll.from.join('; '));
  t.is(kernel.decompressor, 'RD_GZIP');
});

/** The longest run of one byte value in a section of an ELF file, read with readelf. */
async function longestRun(elf: string, section: string, byte: number): Promise<{ sectionBytes: number; run: number }> {
  const line = execFileSync('readelf', ['-SW', elf], { encoding: 'utf8' }).split('\n').find((l) => l.includes(` ${section} `));
  const [offset, size] = line!.replace(/^.*?\]\s+/, '').trim().split(/\s+/).slice(3, 5).map((hex) => Number.parseInt(hex, 16));
  const bytes = (await readFile(elf)).subarray(offset!, offset! + size!);
  let run = 0;
  let longest = 0;
  for (const b of bytes) {
    run = b === byte ? run + 1 : 0;
    if (run > longest) longest = run;
  }
  return { sectionBytes: size!, run: longest };
}

test.serial("tinyx's first kernel patch is in: no 2 MiB of int3 padding around the entry text; the manifest's source names the patch", async (t) => {
  t.regex(nginx.kernel!.source, /^debian:linux-source-6\.1 \S+ \+ 0001-x86-no-pmd-padding-without-pti-or-sme\.patch, 0002-x86-apic-lapic-timer-hz-parameter\.patch, 0003-x86-mm-poison-freed-init-memory-by-words\.patch, 0004-x86-tsc-known-tsc-rate-is-the-cpu-rate\.patch, 0005-kbuild-empty-commands-spawn-no-shell\.patch \([0-9a-f]{12}\)$/);
  // Unpatched, .text was 6 MiB with two runs of int3 (0xcc) of almost 2 MiB each, loaded into the guest and never freed.
  const text = await longestRun(join(work, 'nginx', 'vmlinux'), '.text', 0xcc);
  t.true(text.run < 64 * 1024, `the longest int3 run in .text is ${text.run} bytes`);
  t.true(text.sectionBytes < 4 * 1024 * 1024, `.text is ${text.sectionBytes} bytes`);
});

test.serial("tinyx's third kernel patch is in: free_init_pages fills freed init memory with int3 eight bytes a store (rep stosq of 0xcccccccccccccccc), not byte by byte", async (t) => {
  // The function's bounds from the image's System.map (the vmlinux is stripped): from it to the next symbol.
  const map = (await readFile(join(work, 'nginx', 'System.map'), 'utf8')).split('\n').map((line) => line.split(' '));
  const at = map.findIndex((fields) => fields[2] === 'free_init_pages');
  t.true(at >= 0, 'System.map names free_init_pages');
  const code = execFileSync('objdump', ['-d', `--start-address=0x${map[at]![0]}`, `--stop-address=0x${map[at + 1]![0]}`, join(work, 'nginx', 'vmlinux')], { encoding: 'utf8' });
  t.regex(code, /movabs \$0xcccccccccccccccc,%rax/);
  t.regex(code, /rep stos %rax,%es:\(%rdi\)/);
  t.notRegex(code, /rep stos %al/);
});

test.serial('the nginx kernel boots under QEMU (microvm, vmlinux through the PVH entry) and runs a BusyBox /init', async (t) => {
  const marker = `tinyx-marker-${process.pid}`;
  const initrd = await markerInitramfs(marker);
  const boot = bootQemu(join(work, 'nginx', 'vmlinux'), initrd, 'microvm');
  t.is(boot.status, 0, boot.output.slice(-2000));
  t.regex(boot.output, new RegExp(`^${marker}\\r?$`, 'm'));
  t.regex(boot.output, /Run \/init as init process/);
  const q35 = bootQemu(join(work, 'nginx', 'vmlinuz'), initrd, 'q35');
  t.is(q35.status, 0, q35.output.slice(-2000));
  t.regex(q35.output, new RegExp(`^${marker}\\r?$`, 'm'), 'and the bzImage on q35 (virtio-pci)');
});

test.serial("tinyx's second kernel patch: given lapic_timer_hz (as tinyx run gives TCG guests), the kernel takes the APIC timer's rate and does not calibrate it against the PIT", async (t) => {
  const marker = `tinyx-marker-${process.pid}`;
  const boot = bootQemu(join(work, 'nginx', 'vmlinux'), await markerInitramfs(marker), 'microvm', ['apic=verbose', `lapic_timer_hz=${TCG_APIC_TIMER_HZ}`]);
  t.is(boot.status, 0, boot.output.slice(-2000));
  t.regex(boot.output, new RegExp(`^${marker}\\r?$`, 'm'));
  // HZ is 250: 10^9 / 250 APIC counts per tick. Unpatched, the parameter is unknown and the kernel calibrates.
  t.regex(boot.output, /lapic timer already calibrated 4000000\b/);
  t.notRegex(boot.output, /calibrating APIC timer|APIC timer disabled/);
});

test.serial("tinyx's fourth kernel patch: a TSC rate stated on the command line (as tinyx run gives TCG guests) is the CPU's rate too, not measured against the PIT", async (t) => {
  const host = await hostTscKhz();
  t.truthy(host, "the host states its TSC rate (/proc/cpuinfo), the rate at which a TCG guest's TSC runs");
  // 5 % above the real rate. Unpatched, the kernel measures the CPU against the PIT (the real rate) and,
  // within 10 % of the stated TSC rate, keeps its measure: "Detected <real> MHz processor", then "Detected <stated> MHz TSC".
  const stated = Math.round(host! * 1.05);
  const marker = `tinyx-marker-${process.pid}`;
  const boot = bootQemu(join(work, 'nginx', 'vmlinux'), await markerInitramfs(marker), 'microvm', [`tsc_early_khz=${stated}`]);
  t.is(boot.status, 0, boot.output.slice(-2000));
  t.regex(boot.output, new RegExp(`^${marker}\\r?$`, 'm'));
  t.regex(boot.output, new RegExp(`tsc: Detected ${Math.floor(stated / 1000)}\\.${String(stated % 1000).padStart(3, '0')} MHz processor`));
  t.notRegex(boot.output, /MHz TSC/, 'one rate: the CPU was not measured apart from the TSC');
});

test.serial("every configuration starts from the source's tinyconfig, made once and kept in the cache: byte for byte what `make tinyconfig` makes", async (t) => {
  // A configuration of its own (the others may be cache hits, made before the tinyconfig was kept): it is made from the tinyconfig.
  const recipe = join(work, 'nginx-own-config.yaml');
  await copyFile('recipes/nginx.yaml', recipe);
  await setRecipeKernelDisable(recipe, [...(await loadRecipeFile(recipe)).kernel.disable, 'MEMBARRIER']);
  const made = await runCli(['kernel', 'config', recipe, '--json']);
  t.is(made.code, 0, made.stderr);
  const tree = (JSON.parse(made.stdout) as { sourceDir: string }).sourceDir;
  const kept = join(defaultCacheDir(), 'kernel-configs', tinyConfigKey(nginx.kernel!.source), 'config');
  const dir = join(work, 'tinyconfig');
  await mkdir(dir, { recursive: true });
  execFileSync('make', ['-s', '-C', tree, `O=${dir}`, 'tinyconfig'], { encoding: 'utf8' });
  const tiny = await readFile(join(dir, '.config'), 'utf8');
  t.regex(tiny, /^CONFIG_CC_OPTIMIZE_FOR_SIZE=y$/m, "tiny.config's options");
  t.is(await readFile(kept, 'utf8'), tiny);
});

test.serial("the base's BusyBox runs /init's commands in its own process (a standalone shell): no exec, no dynamic loading per command", async (t) => {
  const base = await createBase(new Cache(defaultCacheDir()), await hostBaseSpec(), {});
  const busybox = join(base.root, BUSYBOX_PATH);
  t.notRegex(execFileSync('objdump', ['-p', busybox], { encoding: 'utf8' }), /^\s+NEEDED\s/m, 'statically linked');
  // The host has its own readlink in PATH: a shell without FEATURE_SH_STANDALONE would exec it.
  const exe = execFileSync(busybox, ['sh', '-c', 'readlink /proc/self/exe'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).trim();
  t.is(exe, await realpath(busybox), 'readlink ran as an applet of the same BusyBox, not as /usr/bin/readlink');
});

test.serial('a damaged cached kernel (a truncated vmlinux) is detected, removed and built again (ccache: the same files, compiled once), never shipped: the same bytes', async (t) => {
  const kernels = join(defaultCacheDir(), 'kernels');
  let entry: string | undefined;
  for (const name of await readdir(kernels)) {
    const meta = JSON.parse(await readFile(join(kernels, name, 'meta.json'), 'utf8')) as { configSha256: string; source: string };
    // The same config built from another source (before a kernel patch changed) is another entry.
    if (meta.configSha256 === nginx.kernel!.configSha256 && meta.source === nginx.kernel!.source) entry = name;
  }
  t.truthy(entry, "nginx's kernel is in the cache");
  const sha = (file: string): string => execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]!;
  const good = { vmlinux: sha(join(kernels, entry!, 'vmlinux')), bzImage: sha(join(kernels, entry!, 'bzImage')) };
  await truncate(join(kernels, entry!, 'vmlinux'), 4096);
  const out = join(work, 'nginx-again');
  const result = await runCli(['build', 'nginx', '--format', 'initramfs', '--out', out]);
  t.is(result.code, 0, result.stderr.slice(-3000));
  t.regex(result.stderr, new RegExp(`cache: kernels/${entry} was damaged \\(vmlinux is not what was published \\(sha256 differs\\)\\); removed, building it again`));
  t.regex(result.stderr, /\[kernel\] done/, 'compiled, not a cache hit');
  t.is(sha(join(out, 'vmlinux')), good.vmlinux, 'the image has the right kernel');
  t.is(sha(join(out, 'vmlinuz')), good.bzImage);
  t.is(sha(join(kernels, entry!, 'vmlinux')), good.vmlinux, 'and so has the cache again');
});

test.serial("tinyx's fifth kernel patch: Kbuild's `cmd` runs no shell for a command that expands to nothing; and the kernel build tells nm the object format", async (t) => {
  const tree = (JSON.parse((await runCli(['kernel', 'config', 'nginx', '--json'])).stdout) as { sourceDir: string }).sourceDir;
  // The tree's own Kbuild.include, under a make whose every shell says what it runs.
  const dir = join(work, 'kbuild-cmd');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'sh'), `#!/bin/sh\nprintf '%s\\n' "$*" >> ${join(dir, 'shells')}\nexec /bin/sh "$@"\n`, { mode: 0o755 });
  await writeFile(
    join(dir, 'Makefile'),
    [`include ${tree}/scripts/Kbuild.include`, 'cmd_nothing =', 'cmd_touch = touch $@', 'out:', '\t$(call cmd,nothing)', '\t$(call cmd,touch)', ''].join('\n'),
  );
  execFileSync('make', ['-s', '-C', dir, `SHELL=${join(dir, 'sh')}`, 'out'], { encoding: 'utf8' });
  await stat(join(dir, 'out'));
  const shells = (await readFile(join(dir, 'shells'), 'utf8')).trim().split('\n');
  // Unpatched, a second shell ran `set -e;` and nothing else: one per empty command of every object's rule.
  t.is(shells.length, 1, shells.join('\n'));
  t.regex(shells[0]!, /touch out/);

  // The test before this one rebuilt nginx's kernel in the kept tree, whose .cmd files record its commands: zoffset.h is made from nm's output.
  const trees = join(defaultCacheDir(), 'kernel-trees');
  let recorded: string | undefined;
  for (const slot of await readdir(trees)) {
    const config = await readFile(join(trees, slot, 'tree', '.config'), 'utf8').catch(() => '');
    if (createHash('sha256').update(config).digest('hex') === nginx.kernel!.configSha256) recorded = await readFile(join(trees, slot, 'tree', 'arch/x86/boot/.zoffset.h.cmd'), 'utf8');
  }
  t.truthy(recorded, "a kept tree last built nginx's kernel");
  t.regex(recorded!, /:= nm --target=elf64-x86-64 /, 'nm is told the format: it loads no bfd plugin (LLVMgold) per object');
});

test.serial("the build split: a kernel that differs from nginx's only in leaf options (signalfd, POSIX message queues) compiles a few files in nginx's kept build tree; from an empty tree, ccache answers nearly every compile; both give the same bytes", async (t) => {
  const kernelOf = async (goal: 'kernel' | 'kernel-config'): Promise<KernelResult> => {
    const run = createBuild({ recipe: 'nginx', format: 'initramfs', kernelFeatures: ['signalfd', 'posix-mqueue'], goal });
    try {
      for (const step of run.steps) await run.runStep(step);
    } finally {
      await run.cleanup();
    }
    return run.kernelOutcome;
  };
  // This config is this test's own: an entry of it is removed before each build, so that it compiles.
  const kernels = join(defaultCacheDir(), 'kernels');
  const wanted = createHash('sha256').update((await kernelOf('kernel-config')).config.text).digest('hex');
  const forget = async (): Promise<void> => {
    for (const name of await readdir(kernels)) {
      const meta = JSON.parse(await readFile(join(kernels, name, 'meta.json'), 'utf8')) as { configSha256: string };
      if (meta.configSha256 === wanted) await removeTree(join(kernels, name));
    }
  };
  const sha = (file: string): string => execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]!;

  // The test before this one rebuilt nginx's kernel, in the kept tree: whatever that tree built before, it now holds nginx's config.
  const trees = join(defaultCacheDir(), 'kernel-trees');
  const treeConfigs = await Promise.all((await readdir(trees)).map((slot) => readFile(join(trees, slot, 'tree', '.config'), 'utf8').catch(() => '')));
  t.true(treeConfigs.some((text) => createHash('sha256').update(text).digest('hex') === nginx.kernel!.configSha256), "a kept tree last built nginx's kernel");

  await forget();
  const warm = await kernelOf('kernel');
  t.false(warm.built!.cached, 'compiled');
  t.regex(warm.config.text, /^CONFIG_SIGNALFD=y$/m);
  t.regex(warm.config.text, /^CONFIG_POSIX_MQUEUE=y$/m);
  t.true(warm.built!.keptTree, "started from the tree nginx's kernel was built in");
  const warmCompiled = (JSON.parse(await readFile(join(dirname(warm.built!.bzImage), 'meta.json'), 'utf8')) as { compiled: number }).compiled;
  t.true(warmCompiled > 0 && warmCompiled <= 150, `${warmCompiled} files compiled (of some 800 in a kernel): the two options' own, and what depends on the config as a whole`);
  const bytes = { bzImage: sha(warm.built!.bzImage), vmlinux: sha(warm.built!.vmlinux) };

  // Without a kept tree (a fresh machine's CI runner with a warm ccache): every file goes through ccache.
  await forget();
  await removeTree(join(defaultCacheDir(), 'kernel-trees'));
  const cold = await kernelOf('kernel');
  t.false(cold.built!.keptTree);
  const use = cold.built!.compilerCache;
  t.truthy(use, 'ccache was used and counted');
  const compiles = use!.hits + use!.misses;
  t.true(compiles > 500, `${compiles} compiles`);
  t.true(use!.misses <= compiles * 0.05, `${use!.misses} of ${compiles} compiles missed ccache`);
  t.deepEqual({ bzImage: sha(cold.built!.bzImage), vmlinux: sha(cold.built!.vmlinux) }, bytes, 'the same kernel, byte for byte, whichever way it was built');
});

test.serial('a second build with the same config is a cache hit; redis gets its own config', async (t) => {
  const again = await runCli(['kernel', 'build', 'nginx', '--format', 'initramfs', '--json']);
  t.is(again.code, 0, again.stderr);
  const json = JSON.parse(again.stdout) as { cached: boolean; configSha256: string; bzImage: string };
  t.true(json.cached);
  t.is(json.configSha256, nginx.kernel!.configSha256);
  const config = await runCli(['kernel', 'config', 'redis', '--json']);
  t.is(config.code, 0, config.stderr);
  const redis = JSON.parse(config.stdout) as { features: { name: string; from: string[] }[]; requested: { symbol: string; origin: string }[]; config: string };
  t.true(redis.features.some((f) => f.name === 'file-locking' && f.from.some((e) => e.includes('flock'))));
  t.is(redis.requested.find((r) => r.symbol === 'VIRTIO_NET')?.origin, 'platforms/kvm.net.config');
  t.regex(redis.config, /^CONFIG_FILE_LOCKING=y$/m);
  const text = await runCli(['kernel', 'config', 'nginx', '--format', 'initramfs']);
  t.regex(text.stdout, /^CONFIG_PVH=y +# platforms\/kvm\.config$/m);
  t.regex(text.stdout, /^# CONFIG_VT is not set +# trim\.config$/m);
  t.regex(text.stdout, /^# Linux 6\.1\.\d+ for kvm, root as initramfs /m);
  t.regex(text.stdout, /^CONFIG_BLK_DEV_INITRD=y +# formats\/initramfs\.config$/m);
  // An erofs root changes the kernel: the block layer, virtio-blk, erofs without what tinyx's images do not use. It is kvm's default format.
  const erofs = JSON.parse((await runCli(['kernel', 'config', 'nginx', '--json'])).stdout) as { format: string; requested: { symbol: string; origin: string }[]; config: string };
  t.is(erofs.format, 'erofs');
  t.is(erofs.requested.find((r) => r.symbol === 'VIRTIO_BLK')?.origin, 'platforms/kvm.block.config');
  t.regex(erofs.config, /^CONFIG_EROFS_FS=y$/m);
  t.regex(erofs.config, /^CONFIG_EROFS_FS_ZIP=y$/m, 'LZ4HC images: the LZ4 decompressor');
  t.regex(erofs.config, /^CONFIG_LZ4_DECOMPRESS=y$/m);
  for (const off of ['BLK_DEV_INITRD', 'EROFS_FS_ZIP_LZMA', 'EROFS_FS_XATTR']) t.regex(erofs.config, new RegExp(`^# CONFIG_${off} is not set$`, 'm'), off);
  // A recipe's kernel.disable: the options are left out even where a fragment or a feature (shmem: TMPFS) asked for them.
  const recipe = join(work, 'nginx-pruned.yaml');
  await copyFile('recipes/nginx.yaml', recipe);
  await setRecipeKernelDisable(recipe, [...(await loadRecipeFile(recipe)).kernel.disable, 'AIO', 'TMPFS']);
  const pruned = JSON.parse((await runCli(['kernel', 'config', recipe, '--format', 'initramfs', '--json'])).stdout) as { requested: { symbol: string; value: string; origin: string }[]; config: string };
  for (const off of ['AIO', 'TMPFS']) {
    t.regex(pruned.config, new RegExp(`^# CONFIG_${off} is not set$`, 'm'), off);
    t.like(pruned.requested.find((r) => r.symbol === off), { value: 'n', origin: "the recipe's kernel.disable" });
  }
  t.regex(pruned.config, /^CONFIG_SHMEM=y$/m, 'what was not named stays');
});

test.serial('the xen-pvh kernel carries the PVH entry ELF note (XEN_ELFNOTE_PHYS32_ENTRY) and Xen frontends', async (t) => {
  const out = join(work, 'xen-pvh');
  const result = await runCli(['kernel', 'build', 'nginx', '--platform', 'xen-pvh', '--out', out, '--json']);
  t.is(result.code, 0, result.stderr.slice(-3000));
  const notes = execFileSync('readelf', ['--notes', join(out, 'vmlinux')], { encoding: 'utf8' });
  // Type 0x12 (18) of owner "Xen" is XEN_ELFNOTE_PHYS32_ENTRY: where Xen (and QEMU) enter a PVH guest.
  t.regex(notes, /^\s+Xen\s+0x[0-9a-f]+\s+Unknown note type: \(0x00000012\)$/m);
  const config = parseKconfig(await readFile(join(out, 'kernel.config'), 'utf8'));
  for (const symbol of ['XEN', 'XEN_PVH', 'ACPI', 'HVC_XEN', 'XEN_NETDEV_FRONTEND']) t.is(config.get(symbol), 'y', symbol);
  t.is(config.get('VIRTIO_NET') ?? 'n', 'n');

  // The whole image (the kernel is a cache hit now) comes with its xl configuration.
  const image = join(work, 'xen-pvh-image');
  const built = await runCli(['build', 'nginx', '--platform', 'xen-pvh', '--out', image, '--json']);
  t.is(built.code, 0, built.stderr.slice(-3000));
  const manifest = JSON.parse(await readFile(join(image, 'manifest.json'), 'utf8')) as { artifacts: { xlConfig: string | null } };
  t.is(manifest.artifacts.xlConfig, 'nginx.xl.cfg');
  const xl = await readFile(join(image, 'nginx.xl.cfg'), 'utf8');
  t.true(xl.includes(`kernel = "${image}/vmlinux"`));
  t.true(xl.includes(`ramdisk = "${image}/initrd.cpio.gz"`));
  t.regex(xl, /^type = "pvh"$/m);
});

test.serial('a kernel source whose Kconfig drops a requested option: an error naming it, its fragment and its dependencies', async (t) => {
  // The kernel tree tinyx uses, seen through an OverlayFS in which XEN_PVH needs a symbol that does not exist.
  const tree = (JSON.parse((await runCli(['kernel', 'config', 'nginx', '--platform', 'xen-pvh', '--json'])).stdout) as { sourceDir: string }).sourceDir;
  const source = join(work, 'broken-source');
  for (const dir of ['upper', 'work', 'merged']) await mkdir(join(work, `broken-${dir}`));
  await mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${tree},upperdir=${join(work, 'broken-upper')},workdir=${join(work, 'broken-work')}`, join(work, 'broken-merged')]);
  t.teardown(() => unmountBelow(join(work, 'broken-merged')));
  await symlink(join(work, 'broken-merged'), source);
  const kconfig = join(source, 'arch/x86/xen/Kconfig');
  await writeFile(kconfig, (await readFile(kconfig, 'utf8')).replace('depends on XEN && XEN_PVHVM && ACPI', 'depends on XEN && XEN_PVHVM && ACPI && TINYX_NO_SUCH_OPTION'));
  const result = await runCli(['kernel', 'config', 'nginx', '--platform', 'xen-pvh', '--kernel-source', source]);
  t.is(result.code, 2, result.stderr);
  t.regex(result.stderr, /Kconfig dropped 1 requested option/);
  t.regex(result.stderr, /CONFIG_XEN_PVH=y \(from platforms\/xen-pvh\.config\) ended up unset: it depends on XEN && XEN_PVHVM && ACPI && TINYX_NO_SUCH_OPTION \(arch\/x86\/xen\/Kconfig\)/);
});

/** The kernel tree tinyx uses, seen through an OverlayFS of its own (a tree of another path: its own cache key, and no ccache hits). */
async function overlayTree(t: import('ava').ExecutionContext, name: string): Promise<string> {
  const tree = (JSON.parse((await runCli(['kernel', 'config', 'nginx', '--json'])).stdout) as { sourceDir: string }).sourceDir;
  for (const dir of ['upper', 'work', 'merged']) await mkdir(join(work, `${name}-${dir}`));
  const merged = join(work, `${name}-merged`);
  await mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${tree},upperdir=${join(work, `${name}-upper`)},workdir=${join(work, `${name}-work`)}`, merged]);
  t.teardown(() => unmountBelow(merged));
  return merged;
}

/** Processes whose command line names the directory (pgrep leaves itself out; exit 1 means none). */
function processesIn(dir: string): string {
  try {
    return execFileSync('pgrep', ['-af', '--', dir], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

const cacheDir = defaultCacheDir();
const kernelEntries = async (): Promise<string[]> => (await readdir(join(cacheDir, 'kernels')).catch(() => [] as string[])).sort();
/** The temporary trees a tinyx process (by its pid) left in the cache. */
const tempsOf = async (pid: number | undefined): Promise<string[]> => (await readdir(join(cacheDir, 'tmp')).catch(() => [] as string[])).filter((n) => n.includes(`-${pid}-`));

test.serial('a kernel tree that fails to compile: E_KERNEL_BUILD with the compiler\'s words and the file; nothing published, no make left', async (t) => {
  const source = await overlayTree(t, 'failing');
  await writeFile(join(source, 'kernel/bounds.c'), `${await readFile(join(source, 'kernel/bounds.c'), 'utf8')}\n#error tinyx fault: a source file that does not compile\n`);
  const before = await kernelEntries();
  const cli = startCli(['kernel', 'build', 'nginx', '--format', 'initramfs', '--kernel-source', source]);
  const result = await cli.done;
  t.is(result.code, 1, result.stderr.slice(-3000));
  t.regex(result.stderr, /tinyx: error: the kernel 6\.\d+\.\d+ did not build:/);
  t.regex(result.stderr, /kernel\/bounds\.c:\d+:\d+: error: #error tinyx fault: a source file that does not compile/, 'the compiler\'s error, not the lines of the jobs make finished after it');
  const log = result.stderr.match(/hint: the whole log: (\S+) \(kept until the next failed build\)/)?.[1];
  t.truthy(log);
  t.regex(await readFile(log!, 'utf8'), /#error tinyx fault/, 'the log is there to read');
  t.deepEqual(await kernelEntries(), before, 'no kernel entry published');
  t.is(processesIn(source), '', 'no make or compiler left');
  t.deepEqual(await tempsOf(cli.child.pid), [], 'no build tree left in the cache');
});

test.serial('Ctrl-C while the kernel compiles: exit 130, make and the compilers stopped, no tree or entry left', async (t) => {
  const source = await overlayTree(t, 'interrupted');
  const before = await kernelEntries();
  const cli = startCli(['kernel', 'build', 'nginx', '--format', 'initramfs', '--kernel-source', source]);
  // Well into the compile: the progress line of the first hundred files (the configuration and objtool come before).
  await cli.waitForLine(/^\[kernel\] 100 files compiled/, 900_000);
  t.regex(processesIn(source), /make/, 'make is running');
  cli.child.kill('SIGINT');
  const result = await cli.done;
  t.is(result.code, 130, result.stderr.slice(-3000));
  await new Promise((r) => setTimeout(r, 500));
  t.is(processesIn(source), '', 'no make or compiler left');
  t.deepEqual(await kernelEntries(), before, 'no kernel entry published');
  t.deepEqual(await tempsOf(cli.child.pid), [], 'no build tree left in the cache');
});
