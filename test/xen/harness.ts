// `npm run test:xen`: Xen booted inside QEMU (TCG), the Xen tests run in its
// dom0, the results read back from the serial console. See README.md here.
//
//   node test/dist/xen/harness.js [--pvh DIR] [--pv DIR] [--erofs DIR] [--suites xl,backend,bench] [--only NAME,...] [--pool-type pvh|pv]
//        [--bench-count K] [--bench-runs N] [--memory MIB] [--timeout SECONDS] [--console FILE] [--verbose] [--json]
//
// Without --pvh/--pv/--erofs, nginx is built for xen-pvh and xen-pv, and for
// xen-pvh with an erofs root, with the builder
// (cache hits after the first time). Exit 0 when every test passed, 1 when one
// failed, 3 when the host lacks something, 130 when interrupted.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build, COMPRESSIONS, type Compression } from '@tinyx/builder';
import { debianPackageFor, testTierTools, type Platform } from '@tinyx/image';
import { Cache, defaultCacheDir, removeTree, run } from '@tinyx/builder/internals';
import { bootXen } from './boot-xen.js';
import { buildDom0 } from './dom0.js';
import { backendTestNames } from './backend-tests.js';
import { benchTestNames, DENSITY_VARIANTS, type DensityVariant } from './bench-dom0.js';
import type { GuestSpec, TestResult, XenTestConfig } from './in-dom0.js';
import { DOM0_PATHS, buildPayload } from './payload.js';

const PROJECT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/**
 * xenbr0 in dom0: the xen backend's default network (10.213.0.1/16, the
 * builder's XEN_DEFAULT_NETWORK), so the backend runs with its defaults. The
 * plain-xl guests take fixed addresses far above the backend's leases (.0.2 up).
 */
const BRIDGE = { name: 'xenbr0', gateway: '10.213.0.1', prefix: 16 };
/** The density series' guest memory (MiB): nginx serves in 32 MiB under QEMU; PV guests get some room above that. */
const BENCH_GUEST_MIB = 48;
const GUEST_ADDRESSES: Record<'pvh' | 'pv', string> = { pvh: '10.213.200.10', pv: '10.213.200.11' };
/** The suites a run can pick; `bench` (the benchmark: bench-dom0.ts) only when asked for. */
const SUITES = ['xl', 'backend', 'bench'] as const;
/** By default the backend suite only: it boots both guest types through xl too; `xl` (plain xl, the ground truth) on demand. */
const DEFAULT_SUITES = ['backend'];

const { values: args } = parseArgs({
  options: {
    pvh: { type: 'string' },
    pv: { type: 'string' },
    erofs: { type: 'string' },
    suites: { type: 'string', default: DEFAULT_SUITES.join(',') },
    'bench-count': { type: 'string', default: '32' },
    'bench-runs': { type: 'string', default: '3' },
    'bench-variants': { type: 'string', default: DENSITY_VARIANTS.join(',') },
    memory: { type: 'string' },
    only: { type: 'string' },
    'pool-type': { type: 'string', default: 'pvh' },
    timeout: { type: 'string', default: '1800' },
    console: { type: 'string', default: join(tmpdir(), 'tinyx-xen-console.log') },
    verbose: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const say = (line: string): void => {
  if (!args.json) console.log(line);
};

async function main(signal: AbortSignal): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('test:xen needs root (debootstrap, and the dom0 root is packed with its owners)');
    return 3;
  }
  const missing = await missingTools();
  if (missing.length > 0) {
    const packages = [...new Set(missing.flatMap((tool) => debianPackageFor(tool) ?? []))];
    const fixes = [...(packages.length > 0 ? [`apt-get install ${packages.join(' ')} (or tinyx doctor --fix --tests)`] : []), ...(missing.includes('npm') ? ['npm comes with Node.js'] : [])];
    console.error(`test:xen needs ${missing.join(', ')}: ${fixes.join('; ')}`);
    return 3;
  }
  const suites = args.suites.split(',').filter(Boolean);
  const unknown = suites.filter((name) => !(SUITES as readonly string[]).includes(name));
  if (unknown.length > 0 || suites.length === 0 || !['pvh', 'pv'].includes(args['pool-type'])) {
    console.error(`test:xen: --suites takes ${SUITES.join(',')} (a comma-separated choice), --pool-type pvh or pv`);
    return 2;
  }
  const benchCount = Number(args['bench-count']);
  const benchRuns = Number(args['bench-runs']);
  const variants = args['bench-variants'].split(',').filter(Boolean) as DensityVariant[];
  if (!(benchCount >= 1) || !(benchRuns >= 1) || variants.some((v) => !DENSITY_VARIANTS.includes(v))) {
    console.error(`test:xen: --bench-count and --bench-runs take a whole number from 1, --bench-variants ${DENSITY_VARIANTS.join(',')}`);
    return 2;
  }
  // The density series keeps K guests of 48 MiB running: Xen needs the memory for them beside dom0's 1536 MiB.
  const benchMemory = BENCH_GUEST_MIB * benchCount + 1536 + 512;
  const qemuMemory = args.memory ? Number(args.memory) : suites.includes('bench') ? Math.max(3072, benchMemory) : 3072;
  const cache = new Cache(defaultCacheDir());
  const started = performance.now();

  say('== dom0 (hypervisor, kernel, root) from Debian packages');
  const dom0 = await buildDom0({ cache, signal, onLine: args.verbose ? (line) => say(`   ${line}`) : undefined });
  say(`   ${dom0.cached ? 'cache hit' : 'built'} in ${dom0.seconds.toFixed(1)} s: Xen ${dom0.versions.xen}, Linux ${dom0.versions.linux} (${join(cache.dir, 'xen-dom0', dom0.key)})`);

  const temp = await cache.makeTemp('xen-run');
  try {
    const { erofs, ...images } = await imageDirs(temp, signal);
    // One copy per directory: a xen-pvh image can be booted as PV too (its kernel has XEN_PV).
    const labels = new Map<string, string>();
    for (const [type, dir] of Object.entries(images)) if (!labels.has(dir)) labels.set(dir, type);
    const inDom0 = (type: string): string => join(DOM0_PATHS.images, labels.get(images[type]!)!);
    const allGuests: GuestSpec[] = Object.entries(images).map(([type, dir]) => ({
      name: `nginx-${type}`,
      type: type as 'pvh' | 'pv',
      image: join(DOM0_PATHS.images, labels.get(dir)!),
      address: GUEST_ADDRESSES[type as 'pvh' | 'pv'],
      memoryMiB: 128,
    }));
    for (const guest of allGuests) say(`   ${guest.name}: ${images[guest.type]}`);
    if (erofs) say(`   nginx-erofs (pvh and pv): ${erofs}`);
    const erofsInDom0 = erofs ? join(DOM0_PATHS.images, 'erofs') : undefined;
    const guests = suites.includes('xl') ? allGuests : [];
    const poolType = args['pool-type'] as 'pvh' | 'pv';
    const config: XenTestConfig = {
      bridge: BRIDGE,
      guests,
      readySeconds: 180,
      ...(suites.includes('backend')
        ? {
            backend: {
              // Both hotplug choices under test: Xen's own scripts for the PVH guests, tinyx's lean ones for the PV guests;
              // the erofs image (xen-pvh, a read-only disk) booted both ways, through Xen's block script and the lean one.
              guests: [
                ...allGuests.map((g) => ({ type: g.type, image: g.image, hotplug: g.type === 'pv' ? ('lean' as const) : ('xen' as const) })),
                ...(erofsInDom0
                  ? [
                      { type: 'pvh' as const, image: erofsInDom0, hotplug: 'xen' as const, label: 'erofs-pvh' },
                      { type: 'pv' as const, image: erofsInDom0, hotplug: 'lean' as const, label: 'erofs-pv' },
                    ]
                  : []),
              ],
              pool: { type: poolType, image: inDom0(images[poolType] ? poolType : allGuests[0]!.type) },
              cli: DOM0_PATHS.cli,
            },
          }
        : {}),
      ...(suites.includes('bench')
        ? {
            bench: {
              density: { image: inDom0(images.pv ? 'pv' : allGuests[0]!.type), type: images.pv ? ('pv' as const) : allGuests[0]!.type, count: benchCount, memoryMiB: BENCH_GUEST_MIB, variants },
              // With an erofs image, its root as a read-only disk against the initramfs, on both guest types.
              boot: {
                images: [
                  ...allGuests.map((g) => ({ type: g.type, image: g.image })),
                  ...(erofsInDom0 ? (['pvh', 'pv'] as const).map((type) => ({ type, image: erofsInDom0, label: `${type}, erofs` })) : []),
                ],
                runs: benchRuns,
                memoryMiB: 64,
              },
            },
          }
        : {}),
      ...(args.only ? { only: args.only.split(',') } : {}),
    };

    say('== payload (Node.js, the project, the images, the tests)');
    const payloadStarted = performance.now();
    const payload = join(temp, 'payload.cpio');
    const { bytes } = await buildPayload(join(temp, 'stage'), payload, { projectDir: PROJECT_DIR, images: { ...Object.fromEntries([...labels].map(([dir, label]) => [label, dir])), ...(erofs ? { erofs } : {}) }, config, dom0Libraries: dom0.libraries, signal });
    await removeTree(join(temp, 'stage'));
    // The kernel unpacks concatenated newc archives in order: the payload's files land on top of the cached root.
    const initrd = join(temp, 'initrd.cpio');
    const out = createWriteStream(initrd);
    for (const part of [dom0.rootCpio, payload]) await pipeline(createReadStream(part), out, { end: false, signal });
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
    say(`   ${(bytes / 2 ** 20).toFixed(1)} MiB in ${((performance.now() - payloadStarted) / 1000).toFixed(1)} s`);
    const prepared = (performance.now() - started) / 1000;

    say(`== Xen in QEMU (TCG); console: ${args.console}`);
    await mkdir(dirname(args.console), { recursive: true });
    const boot = await bootXen({
      xen: dom0.xen,
      dom0Kernel: dom0.kernel,
      initrd,
      memoryMiB: qemuMemory,
      dom0Cmdline: `console=hvc0 panic=1 quiet tinyx.xenbr0=${BRIDGE.gateway}/${BRIDGE.prefix}`,
      consoleLog: args.console,
      timeoutSeconds: Number(args.timeout),
      dom0ReadySeconds: 240,
      signal,
      onLine: (line) => {
        if (args.verbose) say(`   | ${line}`);
      },
    });

    const failed = boot.results.filter((r) => !r.ok);
    const expected = ['xen', ...guests.map((g) => g.name), ...backendTestNames(config), ...benchTestNames(config.bench)].filter((name) => !config.only || name === 'xen' || config.only.includes(name));
    const missing = expected.filter((name) => !boot.results.some((r) => r.name === name));
    const ok = !boot.failure && boot.status === 0 && failed.length === 0 && missing.length === 0;
    const summary = { ok, failure: boot.failure, status: boot.status, dom0: { cached: dom0.cached, seconds: round(dom0.seconds), ...dom0.versions }, preparedSeconds: round(prepared), timings: boot.timings, results: boot.results, missing, consoleLog: args.console };
    if (args.json) console.log(JSON.stringify(summary, null, 2));
    else report(summary.timings, boot.results, missing, boot.failure);
    if (signal.aborted) return 130;
    return ok ? 0 : 1;
  } finally {
    await removeTree(temp);
  }
}

/**
 * The host programs the harness needs that are missing: the xen tier's
 * entries of the host-tools registry (what `tinyx doctor --fix --tests`
 * installs), and npm, which comes with Node.js.
 */
async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of [...testTierTools('xen'), 'npm']) {
    if ((await run('sh', ['-c', 'command -v "$1"', 'sh', tool], { allowFailure: true })).exitCode !== 0) missing.push(tool);
  }
  return missing;
}

/**
 * The images to boot, by guest type, and `erofs` (a xen-pvh image whose root
 * is an erofs disk, booted as PVH and as PV): the ones named on the command
 * line, or nginx built now (cache hits once built).
 */
async function imageDirs(temp: string, signal: AbortSignal): Promise<Record<string, string>> {
  if (args.pvh || args.pv || args.erofs) {
    return Object.fromEntries(Object.entries({ pvh: args.pvh, pv: args.pv, erofs: args.erofs }).filter((e): e is [string, string] => e[1] !== undefined).map(([k, v]) => [k, resolve(v)]));
  }
  const images: Record<string, string> = {};
  // The PV image is xz-compressed: its kernel (built for this tier only) has RD_XZ instead of RD_GZIP, so
  // the kernel's own xz decompressor unpacks a root in every PV boot below (libxc passes an xz ramdisk through).
  for (const [type, platform, compression] of [['pvh', 'xen-pvh', 'gzip'], ['pv', 'xen-pv', 'xz']] as [string, Platform, Compression][]) {
    say(`== nginx for ${platform} (${compression})`);
    images[type] = join(temp, `nginx-${type}`);
    const manifest = await build({ recipe: 'nginx', platform, outDir: images[type], compression, signal });
    if (manifest.kernel?.decompressor !== COMPRESSIONS[compression].kernelSymbol) throw new Error(`the ${platform} kernel has ${manifest.kernel?.decompressor}, not ${COMPRESSIONS[compression].kernelSymbol}`);
  }
  say('== nginx for xen-pvh (erofs)');
  images.erofs = join(temp, 'nginx-erofs');
  const erofs = await build({ recipe: 'nginx', platform: 'xen-pvh', format: 'erofs', outDir: images.erofs, signal });
  if (erofs.format !== 'erofs') throw new Error(`the erofs image's manifest says format ${erofs.format}`);
  return images;
}

function report(timings: Record<string, number | undefined>, results: TestResult[], missing: string[], failure: string | undefined): void {
  say(`   seconds from QEMU's start: ${Object.entries(timings).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  for (const result of results) {
    const ms = result.ms ? ` (${Object.entries(result.ms).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`).join(', ')})` : '';
    // Details can hold whole xl outputs (the parsers' fixtures): --json has them all, the report their start.
    const details = result.details ? ` ${JSON.stringify(result.details)}` : '';
    say(`${result.ok ? 'ok  ' : 'FAIL'} ${result.name} ${result.seconds} s${ms}${details.length > 800 ? `${details.slice(0, 800)}... (--json for all)` : details}`);
    if (result.retriedAfter) say(`     run again after a guest's triple fault (QEMU's emulated SVM, not tinyx): ${result.retriedAfter}`);
    if (!result.ok) {
      say(`     ${result.error}`);
      if (result.consoleTail) say(result.consoleTail.split('\n').map((l) => `     | ${l}`).join('\n'));
    }
  }
  for (const name of missing) say(`FAIL ${name}: no result`);
  if (failure) say(`FAIL ${failure}`);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => controller.abort(`interrupted (${sig})`));
process.exitCode = await main(controller.signal).catch((error: unknown) => {
  const e = error as Error & { hint?: string; kind?: string };
  console.error(`test:xen: ${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}`);
  if (process.env.TINYX_VERBOSE) console.error(e.stack);
  return e.kind === 'interrupted' || controller.signal.aborted ? 130 : e.kind === 'host' ? 3 : 1;
});
