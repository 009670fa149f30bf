#!/usr/bin/env node
// `npm run bench [-- SECTION...]`: the figures for the README, measured here and
// now. Never a test: the tests assert correctness, this reports numbers
// (bench/results.json, and the tables between the bench markers in README.md).
// Compiled by `tsc -b` to bench/dist/run.js, which `npm run bench` runs.
//
//   build      root filesystems: cold and warm builds, sizes        (bench/build.ts)
//   kernels    nginx's kernel per platform, cold and cache hit, and a second app's kernel in the
//              kept build tree and from an empty tree with a warm ccache (bench/build.ts)
//   boot       tinyx nginx and redis under QEMU: boot time, smallest memory,
//              pause/unpause, save/restore                          (bench/boot.ts)
//   baselines  the same app as a Debian VM, and Debian's kernel with the tinyx root (bench/baselines.ts)
//   density    50 nginx VMs at once                                 (bench/density.ts)
//   lightness  nginx's root as gzip initramfs and erofs disk: size, boot, smallest memory,
//              100 VMs' host memory, idle CPU with and without the TSC clock (bench/lightness.ts)
//   phases     where nginx's boot goes: the boot profiler's phases and costliest steps, initramfs
//              and erofs, next to the quiet boots' totals                (bench/phases.ts)
//   corpus     twenty Debian services from `--package NAME` alone, booted and asked by a
//              client of their protocol (issue #11)                 (bench/corpus.ts)
//   xen        Xen 4.17 inside QEMU: the Nth domain's creation time (Xen's vif script, the lean
//              one, the pool), PVH vs PV boot, save/restore          (test/xen, its bench suite)
//
// With no section named, all run (about an hour here). A run of some sections
// keeps the others' figures from bench/results.json; `render` only rewrites the
// README's tables from it.
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, defaultCacheDir, type Compression, type OutputFormat } from '@tinyx/builder';
import { run } from '@tinyx/image';
import { detectAccel, freePort, getBackend } from '@tinyx/toolstack';
import { bootTimes, imageSizes, interleavedBootTimes, pauseAndSave, rawBootTimes, rawQemus, round, smallestMemory } from './boot.js';
import { kernelFigures, rootFigures } from './build.js';
import { density, restoreKsm } from './density.js';
import { corpus, renderCorpus } from './corpus.js';
import { isSectionName, readResults, SECTION_NAMES, type AppBaselines, type AppBoot, type BenchResults, type SectionFigures, type SectionName, type StoredSection, type StoredSections } from './results.js';
import { renderXen, xenFigures } from './xen.js';
import { formatFigures, renderLightness } from './lightness.js';
import { interrupt } from './interrupt.js';
import { bootPhases, renderPhases } from './phases.js';

/** The repository: this file runs as bench/dist/run.js. */
const repo = fileURLToPath(new URL('../..', import.meta.url));
const APPS = ['nginx', 'redis'];
/** The builder's own cache ($TINYX_CACHE, else ~/.cache/tinyx): its kernel sources are shared with the kernels section. */
const sharedCache = defaultCacheDir();
/** Where the benchmark keeps its images, state files and baseline VMs between runs. */
const work = process.env.TINYX_BENCH_DIR || '/var/tmp/tinyx-bench';

// `render` alone measures nothing: it rewrites the README's tables from bench/results.json.
const wanted = process.argv.slice(2);
for (const name of wanted) if (name !== 'render' && !isSectionName(name)) throw new Error(`no bench section "${name}" (sections: ${SECTION_NAMES.join(', ')}, or render)`);
const sections: readonly SectionName[] = wanted.includes('render') ? [] : wanted.length ? wanted.filter(isSectionName) : SECTION_NAMES;

// In the source tree (bench/), not next to the compiled files (bench/dist/).
const resultsPath = join(repo, 'bench/results.json');
// The host's description replaces the stored one in place (the sections keep their order in the file).
const results: BenchResults = { ...(await readResults(resultsPath)), machine: machine(), accel: await detectAccel() };
await mkdir(work, { recursive: true });

/**
 * The image of an app, built (kernel included) with the shared cache: a cache hit after the first run.
 * An initramfs unless asked otherwise, whatever the platform's default: the baselines boot its initrd
 * with Debian's kernel, and the boot and density series compare with earlier runs; the lightness
 * section measures both formats.
 */
const images: Record<string, Promise<string>> = {};
async function image(app: string, compression?: Compression, format: OutputFormat = 'initramfs'): Promise<string> {
  const name = [app, compression, format === 'initramfs' ? undefined : format].filter(Boolean).join('-');
  images[name] ??= (async () => {
    const outDir = join(work, 'images', name);
    await build({ recipe: app, outDir, format, ...(compression ? { compression } : {}), signal: interrupt.signal });
    return outDir;
  })();
  return images[name];
}

/** The section running now: a Ctrl-C or SIGTERM lets it unwind before the bench exits. */
let running: Promise<unknown> | undefined;

// Ctrl-C or SIGTERM: the running section's builds are stopped (they clean up: unmount their root, remove their
// temporary trees, and the section's own finally blocks run), the VMs this run started are destroyed (they run
// detached from it), the baselines' QEMUs killed, the host's KSM settings put back if a density run changed
// them, then exit 130, with no section's figures stored. A section that does not unwind in two minutes is not
// waited for longer.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\nbench: ${sig}, stopping this run's builds and destroying its VMs`);
    interrupt.abort(`interrupted by ${sig}`);
    const qemu = getBackend('qemu');
    for (const child of rawQemus) child.kill('SIGKILL');
    const unwound = new Promise((resolve) => {
      void (running ?? Promise.resolve()).then(resolve);
      setTimeout(resolve, 120_000);
    });
    void Promise.allSettled([...qemu.started().map((vm) => vm.destroy()), restoreKsm(), unwound]).then(() => process.exit(130));
  });
}

/** This run: its start, and the commit it measures (a dirty tree says so). */
const thisRun = { run: new Date().toISOString(), commit: (await run('git', ['describe', '--always', '--dirty'], { cwd: repo, allowFailure: true })).stdout.trim() || 'unknown' };

async function section<K extends SectionName>(name: K, fn: () => Promise<SectionFigures[K]>): Promise<void> {
  if (!sections.includes(name) || interrupt.signal.aborted) return;
  console.log(`== ${name}`);
  const t0 = performance.now();
  const work = fn();
  running = work.catch(() => undefined);
  // Interrupted: nothing of this section is stored and nothing after it runs; the signal's handler exits.
  const interrupted = (): Promise<never> => new Promise<never>(() => undefined);
  let figures: SectionFigures[K];
  try {
    figures = await work;
  } catch (error) {
    if (!interrupt.signal.aborted) throw error;
    return interrupted();
  }
  if (interrupt.signal.aborted) return interrupted();
  // Seen as the one section K (a write through StoredSections[K] would have to fit every section at once).
  const all: StoredSections = results;
  const stored: { [S in K]?: StoredSection<S> } = all;
  stored[name] = { date: new Date().toISOString(), seconds: Math.round((performance.now() - t0) / 1000), ...thisRun, ...figures };
  // Written after each section, so that a long run interrupted later keeps what it measured.
  await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
}

await section('build', async () => ({ apps: await rootFigures(APPS) }));
await section('kernels', async () => ({ platforms: await kernelFigures(sharedCache) }));

await section('boot', async () => {
  const apps: Record<string, AppBoot> = {};
  for (const app of APPS) {
    const dir = await image(app);
    const sizes = await imageSizes(dir);
    const microvm = await bootTimes(app, dir);
    console.log(`${app} microvm: ready line ${microvm.readyLineMs.median} ms, first answer ${microvm.firstAnswerMs.median} ms`);
    // q35 boots the bzImage like the baselines do (Debian's kernel has no PVH entry): the like-for-like figure.
    const q35 = await bootTimes(app, dir, { guest: 'q35' });
    console.log(`${app} q35: first answer ${q35.firstAnswerMs.median} ms`);
    const smallest = await smallestMemory(app, dir);
    console.log(`${app}: serves 200 requests with ${smallest.memoryMiB} MiB`);
    const pauseSave = await pauseAndSave(app, dir, work);
    console.log(`${app}: pause ${pauseSave.pauseMs.median} ms, unpause ${pauseSave.unpauseMs.median} ms, save ${pauseSave.saveMs.median} ms, restore ${pauseSave.restoreToAnswerMs.median} ms`);
    apps[app] = { sizes, microvm, q35, smallestMemory: smallest, pauseSave };
  }
  // The initrd's compression is a trade: unpacking gzip costs boot time, an uncompressed one memory.
  const raw = await image('nginx', 'none');
  const rawFigures = { sizes: await imageSizes(raw), microvm: await bootTimes('nginx', raw), smallestMemory: await smallestMemory('nginx', raw) };
  console.log(`nginx, initrd uncompressed: first answer ${rawFigures.microvm.firstAnswerMs.median} ms, ${rawFigures.smallestMemory.memoryMiB} MiB`);
  return { apps, nginxUncompressed: rawFigures };
});

await section('baselines', async () => {
  const { prepareDebianVm, debianVmQemuArgs, prepareStockKernelTinyxRoot, stockKernelQemuArgs } = await import('./baselines.js');
  const accel = results.accel.accel;
  const apps: Record<string, AppBaselines> = {};
  for (const app of APPS) {
    const port = app === 'redis' ? 6379 : 80;
    const debian = await prepareDebianVm({ cacheDir: work, app });
    const hostPort = await freePort();
    const debianArgs = debianVmQemuArgs({ ...debian, memoryMiB: 512, hostPort, guestPort: port, consoleFile: join(work, `debian-${app}.console`), accel });
    // As many boots as tinyx gets (RUNS): medians of equal samples.
    const debianBoot = await rawBootTimes(app, debianArgs, hostPort);
    console.log(`${app} Debian VM: first answer ${debianBoot.median} ms`);
    const dir = await image(app);
    const stock = await prepareStockKernelTinyxRoot({ cacheDir: work, imageDir: dir });
    const stockPort = await freePort();
    const stockArgs = stockKernelQemuArgs({ ...stock, memoryMiB: 256, hostPort: stockPort, guestPort: port, consoleFile: join(work, `stock-${app}.console`), accel });
    const stockBoot = await rawBootTimes(app, stockArgs, stockPort);
    console.log(`${app} Debian kernel + tinyx root: first answer ${stockBoot.median} ms`);
    apps[app] = {
      debianVm: { firstAnswerMs: debianBoot, kernelVersion: debian.kernelVersion, rootBytes: debian.rootBytes, diskBytes: debian.diskBytes, memoryMiB: 512 },
      stockKernelTinyxRoot: { firstAnswerMs: stockBoot, kernelVersion: stock.kernelVersion, memoryMiB: 256 },
    };
  }
  return { apps };
});

await section('density', async () => {
  const dir = await image('nginx');
  // Guest memory: what nginx was measured to need, plus 4 MiB. What a guest has touched stays
  // resident in QEMU, so the guest's size is most of a VM's cost; the TCG translation cache
  // (1 GiB of address space by default, tens of MiB touched) is bounded to 8 MiB.
  const memoryMiB = (results.boot?.apps?.nginx?.smallestMemory?.memoryMiB ?? 32) + 4;
  const run = await density('nginx', dir, { count: 50, memoryMiB, tcgCacheMiB: 8 });
  console.log(`density: ${run.serving}/${run.count} serving, first ready ${run.firstReadyMs} ms, last ${run.lastReadyMs} ms, PSS ${run.pssPerVmMiB.median} MiB per VM`);
  return { runs: [run] };
});

await section('lightness', async () => {
  const formats = [];
  const names = ['initramfs', 'erofs'] as const;
  const dirs = [];
  for (const format of names) dirs.push(await image('nginx', undefined, format));
  const boots = await interleavedBootTimes('nginx', dirs);
  for (const [i, format] of names.entries()) formats.push(await formatFigures('nginx', format, dirs[i]!, boots[i]!));
  return { formats };
});

await section('phases', async () => {
  const images = [];
  for (const format of ['initramfs', 'erofs'] as const) images.push({ format, dir: await image('nginx', undefined, format) });
  return bootPhases('nginx', images);
});

// TINYX_BENCH_CORPUS=nginx,redis-server measures only those (the others' rows are kept).
await section('corpus', async () => {
  const only = process.env.TINYX_BENCH_CORPUS?.split(',');
  const measured = await corpus(work, only);
  if (!only || !results.corpus) return measured;
  const rows = results.corpus.rows.map((r) => measured.rows.find((m) => m.package === r.package) ?? r);
  return { commit: measured.commit, ...(measured.format ? { format: measured.format } : {}), rows, served: rows.filter((r) => r.serves).length, total: rows.length };
});

await section('xen', async () => {
  const dirs = { 'xen-pvh': join(work, 'images', 'nginx-xen-pvh'), 'xen-pv': join(work, 'images', 'nginx-xen-pv') };
  for (const platform of ['xen-pvh', 'xen-pv'] as const) await build({ recipe: 'nginx', platform, format: 'initramfs', outDir: dirs[platform], signal: interrupt.signal });
  const erofs = join(work, 'images', 'nginx-xen-pvh-erofs');
  await build({ recipe: 'nginx', platform: 'xen-pvh', format: 'erofs', outDir: erofs, signal: interrupt.signal });
  // TINYX_BENCH_XEN_ONLY=bench-boot runs that part again (the others' latest results are kept);
  // TINYX_BENCH_XEN_FROM_CONSOLE=1 summarises the earlier runs' console logs again instead of running Xen.
  const env = process.env;
  return xenFigures({ repo, pvh: dirs['xen-pvh'], pv: dirs['xen-pv'], erofs, commit: thisRun.commit, count: Number(env.TINYX_BENCH_XEN_COUNT || 32), runs: 3, consoleLog: join(work, 'xen-console.log'), only: env.TINYX_BENCH_XEN_ONLY, fromConsole: env.TINYX_BENCH_XEN_FROM_CONSOLE === '1' });
});

await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
const table = renderTables(results);
console.log(`\n${table}`);
const readmePath = join(repo, 'README.md');
const readme = await readFile(readmePath, 'utf8');
const updated = readme.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, `<!-- bench:start -->\n${table}\n<!-- bench:end -->`);
if (updated !== readme) await writeFile(readmePath, updated);

/** A section's date, and its commit where it was recorded: each table says which run made it. */
function when(section: { date: string; commit?: string }): string {
  return `${section.date.slice(0, 10)}${section.commit ? `, commit ${section.commit}` : ''}`;
}

function renderTables(r: BenchResults): string {
  const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(2)} MiB`;
  const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const out = [`Measured on ${r.machine}, QEMU with ${r.accel.accel} (${r.accel.reason}), by \`npm run bench\` (all figures in bench/results.json).`];
  if (r.boot) {
    out.push('', `### Boot (${when(r.boot)}; medians of ${r.boot.apps.nginx?.microvm.firstAnswerMs.runs.length ?? '?'} runs)`, '');
    out.push('Boot time is from QEMU\'s start to the console\'s ready line (the app listens) and to the first answer to a real request from the host (HTTP 200; redis PONG). The smallest memory is the least guest RAM at which the app boots and answers 200 requests.', '');
    out.push('| app | image (bzImage + initrd) | microvm: ready line | microvm: first answer | q35: first answer | smallest memory | pause / unpause | save / restore to answer |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [app, a] of Object.entries(r.boot.apps)) {
      out.push(
        `| ${app} | ${mib(a.sizes.totalBytes)} (${mib(a.sizes.bzImageBytes)} + ${mib(a.sizes.initrdBytes)}) | ${s(a.microvm.readyLineMs.median)} | **${s(a.microvm.firstAnswerMs.median)}** | ${s(a.q35.firstAnswerMs.median)} | **${a.smallestMemory.memoryMiB} MiB** | ${a.pauseSave.pauseMs.median} ms / ${a.pauseSave.unpauseMs.median} ms | ${a.pauseSave.saveMs.median} ms / ${a.pauseSave.restoreToAnswerMs.median} ms |`,
      );
    }
  }
  if (r.boot?.nginxUncompressed && r.boot.apps.nginx) {
    const u = r.boot.nginxUncompressed;
    const g = r.boot.apps.nginx;
    out.push('', `nginx with \`--compression none\` (no gzip to unpack): first answer **${s(u.microvm.firstAnswerMs.median)}** (gzip: ${s(g.microvm.firstAnswerMs.median)}), smallest memory ${u.smallestMemory.memoryMiB} MiB (gzip: ${g.smallestMemory.memoryMiB} MiB), image ${mib(u.sizes.totalBytes)}.`);
  }
  if (r.baselines) {
    // The tinyx columns are the boot section's: said when they come from another run than Debian's.
    const oneRun = r.boot !== undefined && r.boot.run !== undefined && r.boot.run === r.baselines.run;
    const made = oneRun || !r.boot ? when(r.baselines) : `Debian ${when(r.baselines)}; tinyx ${when(r.boot)}: two runs`;
    out.push('', `### Against Debian (${made}; same QEMU, same accelerator)`, '');
    out.push('Like for like, both on q35 (Debian\'s kernel has no PVH entry, so it cannot boot on microvm); the last column sets the Debian VM against tinyx on its own machine, microvm, and says so.', '');
    out.push('| app | Debian VM (cloud kernel, full root on virtio disk, systemd; q35) | Debian kernel + tinyx root (q35) | tinyx on q35 | tinyx on microvm | Debian VM / tinyx, both q35 | Debian kernel / tinyx kernel (same root, q35) | Debian VM (q35) / tinyx on microvm |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [app, b] of Object.entries(r.baselines.apps)) {
      const t = r.boot?.apps?.[app];
      const micro = t?.microvm.firstAnswerMs.median;
      const q35 = t?.q35.firstAnswerMs.median;
      out.push(
        `| ${app} | ${s(b.debianVm.firstAnswerMs.median)} (root ${mib(b.debianVm.rootBytes)}) | ${s(b.stockKernelTinyxRoot.firstAnswerMs.median)} | ${q35 ? s(q35) : '?'} | ${micro ? s(micro) : '?'} | **${q35 ? round(b.debianVm.firstAnswerMs.median / q35, 1) : '?'}x** | **${q35 ? round(b.stockKernelTinyxRoot.firstAnswerMs.median / q35, 1) : '?'}x** | ${micro ? round(b.debianVm.firstAnswerMs.median / micro, 1) : '?'}x (across machines) |`,
      );
    }
  }
  if (r.density) {
    out.push('', `### Density (${when(r.density)})`, '');
    out.push('All started at once; first and last ready are from that moment. Host memory is the PSS of each QEMU process (shared pages split between the VMs sharing them), measured with all of them serving.', '');
    out.push('| VMs | guest memory | TCG cache | all started | first ready | last ready | ready / serving | host memory per VM (PSS, median) | MemAvailable drop per VM |');
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const d of r.density.runs) {
      out.push(`| ${d.count} | ${d.memoryMiB} MiB | ${d.tcgCacheMiB ?? 'default'} MiB | ${s(d.startedAllMs)} | ${s(d.firstReadyMs)} | ${s(d.lastReadyMs)} | ${d.ready ?? d.count} / ${d.serving} | **${d.pssPerVmMiB.median} MiB** | ${d.memAvailableDropPerVmMiB} MiB |`);
      for (const f of d.failures ?? []) out.push(`|  |  |  |  |  |  | failed: ${f.replace(/\|/g, '/')} |  |  |`);
    }
  }
  if (r.lightness) out.push('', ...renderLightness(r.lightness, when(r.lightness)));
  if (r.phases) out.push('', ...renderPhases(r.phases, when(r.phases)));
  if (r.corpus) out.push('', ...renderCorpus(r.corpus));
  if (r.xen) out.push('', ...renderXen(r.xen));
  if (r.build) {
    out.push('', `### Root filesystems (${when(r.build)}; \`--no-kernel\`; cold = empty cache, debootstrap and apt included)`, '');
    out.push('| app | cold build | warm rebuild (median of 5) | initrd (gzip) | initrd (xz) | unpacked | files | packages | Debian root it was cut from |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [app, a] of Object.entries(r.build.apps)) {
      out.push(`| ${app} | ${a.coldBuildSeconds} s | ${a.warmBuildSeconds} s | ${mib(a.initrdBytes)} | ${mib(a.initrdXzBytes)} | ${mib(a.initrdUncompressedBytes)} | ${a.files} | ${a.packages} | ${mib(a.debianRootBytes)} (${a.ratio}x) |`);
    }
  }
  if (r.kernels) {
    out.push('', `### nginx's kernel per platform (${when(r.kernels)}; cold = the kernel step from an extracted source: features, tinyconfig + fragments + olddefconfig, compile; cache hit = the same step with configuration and kernel cached)`, '');
    out.push("A second app's kernel: nginx's configuration with one more leaf feature, as another app's differs (posix-mqueue in the kept build tree; signalfd from an empty tree, ccache warm from nginx's build).", '');
    out.push("| platform | Linux | bzImage | vmlinux (stripped) | options set | cold build | cache hit | second app, kept tree | second app, empty tree + ccache |");
    out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [platform, k] of Object.entries(r.kernels.platforms)) {
      const second = k.secondApp
        ? [`**${k.secondApp.keptTree.seconds} s** (${k.secondApp.keptTree.compiled} files compiled)`, `**${k.secondApp.emptyTreeWarmCcache.seconds} s** (${k.secondApp.emptyTreeWarmCcache.ccacheMisses} of ${k.secondApp.emptyTreeWarmCcache.ccacheHits + k.secondApp.emptyTreeWarmCcache.ccacheMisses} compiles missed ccache)`]
        : ['not measured', 'not measured'];
      out.push(`| ${platform} | ${k.version} | ${mib(k.bzImageBytes)} (${k.bzImageBytes} B) | ${mib(k.vmlinuxBytes)} | ${k.enabledOptions} | ${k.coldBuildSeconds} s | ${k.cacheHitSeconds} s${k.cacheHit ? '' : ' (miss!)'} | ${second.join(' | ')} |`);
    }
  }
  return out.join('\n');
}

function machine(): string {
  const os = execFileSync('sh', ['-c', '. /etc/os-release && echo "$PRETTY_NAME"'], { encoding: 'utf8' }).trim();
  return `${os}, ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}
