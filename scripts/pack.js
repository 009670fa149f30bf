#!/usr/bin/env node
// The workspace packages' prepack and postpack (npm runs them on `npm pack`
// and `npm publish`, in the package's directory):
//
//   node ../../scripts/pack.js prepare [NAME...]   before packing
//   node ../../scripts/pack.js clean               after packing
//
// prepare refuses a dist/ file whose source is gone (tsc -b never deletes
// one, and it would ship), then copies each NAME (recipes, blacklists,
// kernel, LICENSE, README.md) from the repository's top level into the
// package, so the tarball carries them; the builder finds them there once
// installed (packages/builder/src/bundled-data.ts), while a checkout reads the
// top-level ones and never these copies. The copies are listed in
// .tinyx-pack.json, and clean removes exactly those: a path in the package
// that is not listed there is not tinyx's copy and is never overwritten or
// removed.
import { cp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const pkg = process.cwd();
const MARKER = join(pkg, '.tinyx-pack.json');
const [action, ...names] = process.argv.slice(2);

async function readMarker() {
  try {
    return JSON.parse(await readFile(MARKER, 'utf8')).copied ?? [];
  } catch (error) {
    if (error.code === 'ENOENT') return [];
    throw error;
  }
}

async function exists(path) {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function* walk(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else yield path;
  }
}

/** dist/a/b.js, .d.ts and their maps come from src/a/b.ts; one without it is left over from a removed source. */
async function orphansInDist() {
  const orphans = [];
  if (!(await exists(join(pkg, 'dist')))) throw new Error(`${relative(repo, pkg)}/dist does not exist: run tsc -b first`);
  for await (const file of walk(join(pkg, 'dist'))) {
    const stem = relative(join(pkg, 'dist'), file).replace(/(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/, '');
    if (!(await exists(join(pkg, 'src', `${stem}.ts`)))) orphans.push(relative(repo, file));
  }
  return orphans;
}

async function clean() {
  for (const name of await readMarker()) await rm(join(pkg, name), { recursive: true, force: true });
  await rm(MARKER, { force: true });
}

if (action === 'prepare') {
  const orphans = await orphansInDist();
  if (orphans.length > 0) {
    console.error(`pack: ${orphans.length} file(s) in dist/ have no source in src/ any more and would ship:\n  ${orphans.join('\n  ')}\nremove them (or the whole dist/ and run tsc -b) and pack again`);
    process.exit(1);
  }
  const ours = await readMarker();
  for (const name of names) {
    if (!ours.includes(name) && (await exists(join(pkg, name)))) {
      console.error(`pack: ${relative(repo, join(pkg, name))} exists and is not a copy this script made; move it away and pack again`);
      process.exit(1);
    }
  }
  await clean();
  // The marker first: an interrupted copy is still known to be ours.
  await writeFile(MARKER, `${JSON.stringify({ copied: names }, null, 2)}\n`);
  for (const name of names) await cp(join(repo, name), join(pkg, name), { recursive: true, errorOnExist: true, force: false });
} else if (action === 'clean') {
  await clean();
} else {
  console.error('usage: node ../../scripts/pack.js prepare [NAME...] | clean');
  process.exit(2);
}
