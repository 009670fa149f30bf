// Build figures: root filesystems cold and warm, and nginx's kernel per platform.
//
//   cold build   the app from an empty cache (debootstrap + apt + the rest)
//   warm build   again with base and app layer cached (median of 5)
//   sizes        initrd compressed (gzip, and xz) and unpacked, file count, and the Debian root it was cut from
//   kernels      nginx's kernel per platform: bzImage and vmlinux sizes, options, cold build and cache hit
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { build, createBuild, formatBytes } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { median, round } from './boot.js';

const WARM_RUNS = 5;
const PLATFORMS = ['kvm', 'xen-pvh', 'xen-pv'];

const seconds = async (fn) => {
  const t0 = performance.now();
  const value = await fn();
  return { value, s: (performance.now() - t0) / 1000 };
};
/** Apparent size of a directory tree in bytes (what the files hold, not the blocks). */
const treeBytes = (dir) => Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);

export async function rootFigures(apps) {
  const figures = {};
  for (const app of apps) {
    // Each app starts from an empty cache, so "cold" means debootstrap and apt included.
    const cache = await mkdtemp('/var/tmp/tinyx-bench-cache-');
    const out = await mkdtemp('/var/tmp/tinyx-bench-out-');
    try {
      const cold = await seconds(() => build({ recipe: app, cacheDir: cache, outDir: join(out, 'cold'), kernel: false }));
      const warm = [];
      let manifest = cold.value;
      for (let i = 0; i < WARM_RUNS; i++) {
        const run = await seconds(() => build({ recipe: app, cacheDir: cache, outDir: join(out, 'warm'), kernel: false }));
        warm.push(run.s);
        manifest = run.value;
      }
      const xz = await build({ recipe: app, cacheDir: cache, outDir: join(out, 'xz'), kernel: false, compression: 'xz' });
      // The full Debian root the image was cut from: the base plus the app layer (the only ones in this cache).
      const [base] = await readdir(join(cache, 'bases'));
      const [layer] = await readdir(join(cache, 'layers'));
      const debianRoot = treeBytes(join(cache, 'bases', base, 'root')) + treeBytes(join(cache, 'layers', layer, 'upper'));
      figures[app] = {
        coldBuildSeconds: round(cold.s),
        coldSteps: cold.value.build.seconds,
        warmBuildSeconds: round(median(warm)),
        warmRuns: warm.map(round),
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
export async function kernelFigures(shared) {
  const kernels = {};
  const rootOut = await mkdtemp('/var/tmp/tinyx-bench-out-');
  await build({ recipe: 'nginx', cacheDir: shared, outDir: rootOut, kernel: false });
  await removeTree(rootOut);
  for (const platform of PLATFORMS) {
    const cache = await mkdtemp('/var/tmp/tinyx-bench-kcache-');
    try {
      for (const kind of ['bases', 'layers', 'kernel-src']) {
        await mkdir(join(shared, kind), { recursive: true });
        await symlink(join(shared, kind), join(cache, kind));
      }
      const kernel = async () => {
        let stepSeconds = 0;
        const b = createBuild({
          recipe: 'nginx',
          cacheDir: cache,
          goal: 'kernel',
          platform,
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
      const cold = await seconds(kernel);
      const warm = await seconds(kernel);
      const built = cold.value.built;
      kernels[platform] = {
        version: built.version,
        bzImageBytes: (await stat(built.bzImage)).size,
        vmlinuxBytes: (await stat(built.vmlinux)).size,
        enabledOptions: cold.value.config.enabled,
        coldBuildSeconds: cold.value.stepSeconds,
        compileSeconds: built.buildSeconds,
        // The kernel step alone (features, config and build lookups), not the steps before it.
        cacheHitSeconds: warm.value.stepSeconds,
        cacheHit: warm.value.built.cached,
      };
      console.log(`kernel ${platform}: bzImage ${formatBytes(kernels[platform].bzImageBytes)}, cold ${cold.value.stepSeconds} s, cache hit ${warm.value.stepSeconds} s`);
    } finally {
      await removeTree(cache);
    }
  }
  return kernels;
}
