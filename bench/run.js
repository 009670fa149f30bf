#!/usr/bin/env node
// `npm run bench`: build figures for the README, measured here and now. Never a test:
// the tests assert correctness, this reports numbers (bench/results.json, and the
// table between the bench markers in README.md).
//
//   cold build   nginx from an empty cache (debootstrap + apt + the rest)
//   warm build   nginx again with base and app layer cached (median of 5)
//   sizes        initrd compressed (gzip, and xz) and unpacked, file count, and the Debian root it was cut from
//   kernels      nginx's kernel per platform: bzImage and vmlinux sizes, options, cold build and cache hit
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, createBuild, formatBytes } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';

const repo = fileURLToPath(new URL('..', import.meta.url));
const WARM_RUNS = 5;
const APPS = ['nginx', 'redis'];
const PLATFORMS = ['kvm', 'xen-pvh', 'xen-pv'];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const seconds = async (fn) => {
  const t0 = performance.now();
  const value = await fn();
  return { value, s: (performance.now() - t0) / 1000 };
};
/** Apparent size of a directory tree in bytes (what the files hold, not the blocks). */
const treeBytes = (dir) => Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);

const results = { date: new Date().toISOString(), machine: machine(), apps: {} };
for (const app of APPS) {
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
    results.apps[app] = {
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

// Kernels: nginx's, per platform, built cold in a cache that shares the base,
// the app layer and the extracted source with the default one but has no kernels.
results.kernels = {};
{
  const shared = process.env.TINYX_CACHE || join(process.env.XDG_CACHE_HOME || join(process.env.HOME, '.cache'), 'tinyx');
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
      results.kernels[platform] = {
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
      console.log(`kernel ${platform}: bzImage ${formatBytes(results.kernels[platform].bzImageBytes)}, cold ${cold.value.stepSeconds} s, cache hit ${warm.value.stepSeconds} s`);
    } finally {
      await removeTree(cache);
    }
  }
}

await writeFile(join(repo, 'bench/results.json'), `${JSON.stringify(results, null, 2)}\n`);
const table = renderTable(results);
console.log(`\n${table}`);
const readmePath = join(repo, 'README.md');
const readme = await readFile(readmePath, 'utf8');
const updated = readme.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, `<!-- bench:start -->\n${table}\n<!-- bench:end -->`);
if (updated !== readme) await writeFile(readmePath, updated);

function renderTable(r) {
  const mib = (b) => `${(b / 1024 / 1024).toFixed(2)} MiB`;
  const rows = Object.entries(r.apps).map(
    ([app, a]) =>
      `| ${app} | ${a.coldBuildSeconds} s | ${a.warmBuildSeconds} s | ${mib(a.initrdBytes)} | ${mib(a.initrdXzBytes)} | ${mib(a.initrdUncompressedBytes)} | ${a.files} | ${a.packages} | ${mib(a.debianRootBytes)} (${a.ratio}x) |`,
  );
  const kernelRows = Object.entries(r.kernels ?? {}).map(
    ([platform, k]) =>
      `| ${platform} | ${k.version} | ${mib(k.bzImageBytes)} (${k.bzImageBytes} B) | ${mib(k.vmlinuxBytes)} | ${k.enabledOptions} | ${k.coldBuildSeconds} s | ${k.cacheHitSeconds} s${k.cacheHit ? '' : ' (miss!)'} |`,
  );
  return [
    `Measured ${r.date.slice(0, 10)} on ${r.machine} by \`npm run bench\` (bench/results.json).`,
    '',
    'Root filesystems (`--no-kernel`); cold = empty cache, debootstrap and apt included:',
    '',
    '| app | cold build | warm rebuild (median of 5) | initrd (gzip) | initrd (xz) | unpacked | files | packages | Debian root it was cut from |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    "nginx's kernel per platform; cold = the kernel step from an extracted source (features, tinyconfig + fragments + olddefconfig, compile); cache hit = the same step when the configuration and kernel are cached:",
    '',
    '| platform | Linux | bzImage | vmlinux (stripped) | options set | cold build | cache hit |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...kernelRows,
  ].join('\n');
}

function machine() {
  const os = execFileSync('sh', ['-c', '. /etc/os-release && echo "$PRETTY_NAME"'], { encoding: 'utf8' }).trim();
  return `${os}, ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

function round(x, digits = 2) {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}
