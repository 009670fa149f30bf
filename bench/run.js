#!/usr/bin/env node
// `npm run bench`: build figures for the README, measured here and now. Never a test:
// the tests assert correctness, this reports numbers (bench/results.json, and the
// table between the bench markers in README.md).
//
//   cold build   nginx from an empty cache (debootstrap + apt + the rest)
//   warm build   nginx again with base and app layer cached (median of 5)
//   sizes        initrd compressed and unpacked, file count, and the Debian root it was cut from
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, formatBytes } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';

const repo = fileURLToPath(new URL('..', import.meta.url));
const WARM_RUNS = 5;
const APPS = ['nginx', 'redis'];

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
    const cold = await seconds(() => build({ recipe: app, cacheDir: cache, outDir: join(out, 'cold') }));
    const warm = [];
    let manifest = cold.value;
    for (let i = 0; i < WARM_RUNS; i++) {
      const run = await seconds(() => build({ recipe: app, cacheDir: cache, outDir: join(out, 'warm') }));
      warm.push(run.s);
      manifest = run.value;
    }
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
      `| ${app} | ${a.coldBuildSeconds} s | ${a.warmBuildSeconds} s | ${mib(a.initrdBytes)} | ${mib(a.initrdUncompressedBytes)} | ${a.files} | ${a.packages} | ${mib(a.debianRootBytes)} (${a.ratio}x) |`,
  );
  return [
    `Measured ${r.date.slice(0, 10)} on ${r.machine} by \`npm run bench\` (bench/results.json).`,
    '',
    '| app | cold build | warm rebuild (median of 5) | initrd (gzip) | unpacked | files | packages | Debian root it was cut from |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}

function machine() {
  const os = execFileSync('sh', ['-c', '. /etc/os-release && echo "$PRETTY_NAME"'], { encoding: 'utf8' }).trim();
  return `${os}, ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

function round(x, digits = 2) {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}
