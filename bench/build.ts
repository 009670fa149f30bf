// Build figures: root filesystems cold and warm, and nginx's kernel per platform.
//
//   cold build   the app from an empty cache (debootstrap + apt + the rest)
//   warm build   again with base and app layer cached (median of 5)
//   sizes        initrd compressed (gzip, and xz) and unpacked, file count, and the Debian root it was cut from
//   kernels      nginx's kernel per platform: bzImage and vmlinux sizes, options, cold build and cache hit
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, stat, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { build, createBuild, formatBytes, type KernelFeature, type KernelResult, type Platform } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { interrupt } from './interrupt.js';
import { median, round } from './boot.js';

const WARM_RUNS = 5;
const PLATFORMS: readonly Platform[] = ['kvm', 'xen-pvh', 'xen-pv'];

/** One app's root filesystem: build times (s) and sizes (bytes). */
export interface RootFigures {
  coldBuildSeconds: number;
  /** Seconds per build step of the cold build. */
  coldSteps: Record<string, number>;
  warmBuildSeconds: number;
  warmRuns: number[];
  warmSteps: Record<string, number>;
  initrdBytes: number;
  initrdUncompressedBytes: number;
  initrdXzBytes: number;
  files: number;
  packages: number;
  debianRootBytes: number;
  /** The Debian root over the unpacked initrd. */
  ratio: number;
}

/** nginx's kernel for one platform. */
export interface KernelFigures {
  version: string;
  bzImageBytes: number;
  vmlinuxBytes: number;
  enabledOptions: number;
  coldBuildSeconds: number;
  compileSeconds: number;
  cacheHitSeconds: number;
  cacheHit: boolean;
  /**
   * A second app's kernel after nginx's: nginx's config plus leaf features (as another app's
   * would differ), built in the platform's kept tree, and (another leaf feature) from an empty
   * tree with ccache warm. The kernel step's seconds and the files compiled. Absent in runs before them.
   */
  secondApp?: {
    keptTree: { features: string[]; seconds: number; compiled: number };
    emptyTreeWarmCcache: { features: string[]; seconds: number; compiled: number; ccacheHits: number; ccacheMisses: number };
  };
}

const seconds = async <T>(fn: () => Promise<T>): Promise<{ value: T; s: number }> => {
  const t0 = performance.now();
  const value = await fn();
  return { value, s: (performance.now() - t0) / 1000 };
};
/** Apparent size of a directory tree in bytes (what the files hold, not the blocks). */
const treeBytes = (dir: string): number => Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);

/** The one entry of a cache directory (`bases`, `layers`) of a cache that one app was built in. */
async function onlyEntry(dir: string): Promise<string> {
  const [entry] = await readdir(dir);
  if (entry === undefined) throw new Error(`${dir} is empty: the build left no cache entry there`);
  return entry;
}

export async function rootFigures(apps: readonly string[]): Promise<Record<string, RootFigures>> {
  const figures: Record<string, RootFigures> = {};
  for (const app of apps) {
    // Each app starts from an empty cache, so "cold" means debootstrap and apt included.
    const cache = await mkdtemp('/var/tmp/tinyx-bench-cache-');
    const out = await mkdtemp('/var/tmp/tinyx-bench-out-');
    try {
      const cold = await seconds(() => build({ recipe: app, cacheDir: cache, outDir: join(out, 'cold'), kernel: false, signal: interrupt.signal }));
      const warm: number[] = [];
      let manifest = cold.value;
      for (let i = 0; i < WARM_RUNS; i++) {
        const run = await seconds(() => build({ recipe: app, cacheDir: cache, outDir: join(out, 'warm'), kernel: false, signal: interrupt.signal }));
        warm.push(run.s);
        manifest = run.value;
      }
      const xz = await build({ recipe: app, cacheDir: cache, outDir: join(out, 'xz'), kernel: false, compression: 'xz', signal: interrupt.signal });
      // The full Debian root the image was cut from: the base plus the app layer (the only ones in this cache).
      const base = await onlyEntry(join(cache, 'bases'));
      const layer = await onlyEntry(join(cache, 'layers'));
      const debianRoot = treeBytes(join(cache, 'bases', base, 'root')) + treeBytes(join(cache, 'layers', layer, 'upper'));
      figures[app] = {
        coldBuildSeconds: round(cold.s),
        coldSteps: cold.value.build.seconds,
        warmBuildSeconds: round(median(warm)),
        warmRuns: warm.map((s) => round(s)),
        warmSteps: manifest.build.seconds,
        initrdBytes: manifest.sizes.initrd,
        initrdUncompressedBytes: manifest.sizes.initrdUncompressed,
        initrdXzBytes: xz.sizes.initrd,
        files: manifest.files.length,
        packages: manifest.packages.length,
        debianRootBytes: debianRoot,
        ratio: round(debianRoot / manifest.sizes.initrdUncompressed, 1),
      };
      console.log(`${app}: cold ${round(cold.s)} s, warm ${round(median(warm))} s, initrd ${formatBytes(manifest.sizes.initrd)}`);
    } finally {
      await removeTree(cache);
      await removeTree(out);
    }
  }
  return figures;
}

/**
 * nginx's kernel per platform, built cold in a cache that shares the base,
 * the app layer and the extracted source with `shared` but has no kernels
 * and an empty ccache: cold means every file compiled.
 */
export async function kernelFigures(shared: string): Promise<Record<string, KernelFigures>> {
  const kernels: Record<string, KernelFigures> = {};
  const rootOut = await mkdtemp('/var/tmp/tinyx-bench-out-');
  await build({ recipe: 'nginx', cacheDir: shared, outDir: rootOut, kernel: false, signal: interrupt.signal });
  await removeTree(rootOut);
  for (const platform of PLATFORMS) {
    const cache = await mkdtemp('/var/tmp/tinyx-bench-kcache-');
    try {
      for (const kind of ['bases', 'layers', 'kernel-src']) {
        await mkdir(join(shared, kind), { recursive: true });
        await symlink(join(shared, kind), join(cache, kind));
      }
      const kernel = async (kernelFeatures: KernelFeature[] = []): Promise<KernelResult & { stepSeconds: number }> => {
        let stepSeconds = 0;
        const b = createBuild({
          recipe: 'nginx',
          cacheDir: cache,
          goal: 'kernel',
          platform,
          kernelFeatures,
          signal: interrupt.signal,
          onEvent: (e) => {
            if (e.type === 'step-end' && e.step === 'kernel') stepSeconds = e.seconds;
          },
        });
        try {
          for (const step of b.steps) await b.runStep(step);
        } finally {
          await b.cleanup();
        }
        return { ...b.kernelOutcome, stepSeconds };
      };
      const cold = await seconds(() => kernel());
      const warm = await seconds(() => kernel());
      // A second app: leaf features more, in the kept tree; then another, from an empty tree (a fresh runner with a warm ccache).
      const compiledBy = async (k: KernelResult): Promise<number> => (JSON.parse(await readFile(join(dirname(k.built!.bzImage), 'meta.json'), 'utf8')) as { compiled: number }).compiled;
      const inTree = await kernel(['posix-mqueue']);
      await removeTree(join(cache, 'kernel-trees'));
      const fromEmpty = await kernel(['signalfd']);
      // goal 'kernel' builds the files ('kernel-config' alone leaves `built` undefined).
      const built = cold.value.built;
      const rebuilt = warm.value.built;
      if (!built || !rebuilt) throw new Error(`the kernel step for ${platform} built no kernel`);
      kernels[platform] = {
        version: built.version,
        bzImageBytes: (await stat(built.bzImage)).size,
        vmlinuxBytes: (await stat(built.vmlinux)).size,
        enabledOptions: cold.value.config.enabled,
        coldBuildSeconds: cold.value.stepSeconds,
        compileSeconds: built.buildSeconds,
        // The kernel step alone (features, config and build lookups), not the steps before it.
        cacheHitSeconds: warm.value.stepSeconds,
        cacheHit: rebuilt.cached,
        secondApp: {
          keptTree: { features: ['posix-mqueue'], seconds: inTree.stepSeconds, compiled: await compiledBy(inTree) },
          emptyTreeWarmCcache: {
            features: ['signalfd'],
            seconds: fromEmpty.stepSeconds,
            compiled: await compiledBy(fromEmpty),
            ccacheHits: fromEmpty.built?.compilerCache?.hits ?? NaN,
            ccacheMisses: fromEmpty.built?.compilerCache?.misses ?? NaN,
          },
        },
      };
      console.log(`kernel ${platform}: bzImage ${formatBytes(kernels[platform].bzImageBytes)}, cold ${cold.value.stepSeconds} s, cache hit ${warm.value.stepSeconds} s, a second app's in the kept tree ${inTree.stepSeconds} s, from an empty tree ${fromEmpty.stepSeconds} s`);
    } finally {
      await removeTree(cache);
    }
  }
  return kernels;
}
