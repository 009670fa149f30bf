#!/usr/bin/env node
// Records what the real planner reads from a real install root, as test fixtures:
// every lstat, readDir, read and `objdump -p` it makes while planning an image.
// The unit tests replay them (test/unit/plan-image.test.ts), so the planner is
// tested on real Debian data without root, mounts or a network.
//
// Usage (as root, after `tinyx build nginx` filled the cache):
//   node scripts/capture-plan-fixture.js <layer-upper-dir> <base-root-dir> <out-dir>
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipe } from '@tinyx/builder';
import {
  DirectoryRootView,
  loadBlacklist,
  makeBlacklist,
  mount,
  planImage,
  readDpkgStatus,
  readPackageFileList,
  removeTree,
} from '@tinyx/builder/internals';

const [upper, base, out] = process.argv.slice(2);
if (!upper || !base || !out) throw new Error('usage: capture-plan-fixture.js <layer-upper> <base-root> <out-dir>');

// The packages whose metadata the fixture keeps: nginx's closure and two that the blacklist cuts.
const KEEP = ['nginx', 'nginx-common', 'libc6', 'libssl3', 'zlib1g', 'libcrypt1', 'libpcre2-8-0', 'busybox-static', 'iproute2', 'debconf', 'libgcc-s1', 'gcc-12-base'];

const temp = await mkdtemp(join(tmpdir(), 'tinyx-capture-'));
const root = join(temp, 'root');
await mkdir(root);
try {
  await mount(['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${upper}:${base}`, root]);
  const real = new DirectoryRootView(root);
  const calls = { lstat: {}, readDir: {}, read: {}, objdump: {} };
  const view = {
    lstat: async (p) => (calls.lstat[p] = (await real.lstat(p)) ?? null) ?? undefined,
    readDir: async (p) => (calls.readDir[p] = await real.readDir(p)),
    read: async (p, offset, length) => {
      const bytes = await real.read(p, offset, length);
      (calls.read[p] ??= {})[`${offset}+${length}`] = Buffer.from(bytes).toString('base64');
      return bytes;
    },
    objdump: async (p) => (calls.objdump[p] = await real.objdump(p)),
  };
  const installed = (await readDpkgStatus(join(root, 'var/lib/dpkg/status'))).filter((p) => KEEP.includes(p.name));
  const fileLists = new Map();
  for (const pkg of installed) fileLists.set(pkg.name, await readPackageFileList(join(root, 'var/lib/dpkg/info'), pkg));
  const recipe = await loadRecipe('nginx');
  const common = { view, installed, fileLists, multiarch: 'x86_64-linux-gnu', alwaysInclude: [{ path: '/bin/busybox', reason: 'BusyBox' }] };
  // The bundled blacklist, an empty one (so iproute2's and debconf's files are read too), and a missing entrypoint.
  await planImage({ ...common, recipe, blacklist: await loadBlacklist() });
  await planImage({ ...common, recipe, blacklist: makeBlacklist([], []) });
  await planImage({ ...common, recipe: { ...recipe, entrypoint: { ...recipe.entrypoint, cmd: ['/var/www/html/index.nginx-debian.html'] } }, blacklist: await loadBlacklist() }).catch(() => undefined);

  await mkdir(join(out, 'objdump'), { recursive: true });
  const objdumpFiles = {};
  for (const [path, text] of Object.entries(calls.objdump)) {
    const name = `${path.split('/').pop()}.txt`;
    objdumpFiles[path] = `objdump/${name}`;
    // Keep the text as objdump printed it, minus the temporary mount point in its first line.
    await writeFile(join(out, 'objdump', name), text.replaceAll(root, ''));
  }
  const statusText = (await readFile(join(root, 'var/lib/dpkg/status'), 'utf8'))
    .split('\n\n')
    .filter((para) => KEEP.includes(para.match(/^Package: (.*)$/m)?.[1]))
    .join('\n\n');
  await writeFile(join(out, 'status'), `${statusText.trim()}\n`);
  await writeFile(join(out, 'lists.json'), `${JSON.stringify(Object.fromEntries(fileLists), null, 1)}\n`);
  await writeFile(join(out, 'root.json'), `${JSON.stringify({ lstat: calls.lstat, readDir: calls.readDir, read: calls.read, objdump: objdumpFiles }, null, 1)}\n`);
  console.log(`recorded ${Object.keys(calls.lstat).length} lstat, ${Object.keys(calls.read).length} files read, ${Object.keys(calls.objdump).length} objdump outputs into ${out}`);
} finally {
  await removeTree(temp);
}
