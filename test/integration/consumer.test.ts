// tinyx as a user who never clones this repository has it: the four packages
// packed with npm, installed from their tarballs into an empty project in the
// temporary directory (no workspace, no node_modules of the checkout above
// it), and used from there: `npx tinyx build nginx --no-kernel`, and the
// README's build script, type-checked by tsc against the installed types,
// building redis. Both images must be the same bytes as the same builds run
// from the checkout.
//
// "The same bytes" means: the root filesystem (rootfs.erofs, kvm's default
// format, which has no compressed-archive cache to share) is byte-identical, and the manifest's files (path, size, mode, owner, sha256,
// why), packages and normalized recipe are equal, except `recipe.source`: it
// records where the recipe file was read, recipes/nginx.yaml in the checkout
// and node_modules/@tinyx/builder/recipes/nginx.yaml in the project, and the
// test checks exactly that. The manifest's build timings, cache hits and
// finishedAt differ between any two builds.
//
// Everything shares the build cache ($TINYX_CACHE), so after the checkout's
// builds the project's are cache hits; no kernel is built.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, realpath, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { build, type Manifest } from '@tinyx/builder';
import { DATA_DIR_NAMES, kernelFragments, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { REPO_ROOT, runCli } from '../helpers/cli.js';
import { sha256File } from '../helpers/image.js';

const test = integrationTest();
const PACKAGES = ['image', 'builder', 'toolstack', 'cli'] as const;
const SOURCE_DATE_EPOCH = 0;

const work = await realpath(await mkdtemp(join(tmpdir(), 'tinyx-it-consumer-')));
const project = join(work, 'project');
test.after.always(() => removeTree(work));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment of a command run as the user would run it: without what
 * `npm run` exported for the checkout (npm_config_local_prefix, npm_package_*,
 * INIT_CWD), which would tie the child's npm to the checkout; NODE_PATH never
 * reaches into it. The registry, npm cache and user config stay. npx may run
 * only what the project installed (npm_config_yes=false, as `npx --no`): a
 * missing bin must fail here, not be fetched from the registry under its name.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = /^npm_config_(registry|cache|userconfig|globalconfig|proxy|https_proxy|noproxy|cafile|strict_ssl)$/i;
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !(/^npm_/i.test(key) && !keep.test(key)) && key !== 'INIT_CWD' && key !== 'NODE_PATH'));
  return { ...env, CI: '1', npm_config_yes: 'false', SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH), ...extra };
}

function sh(cwd: string, file: string, args: string[], extra: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: userEnv(extra), maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

function must(result: Result, what: string): Result {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}):\n${result.stderr.slice(-3000)}\n${result.stdout.slice(-2000)}`);
  return result;
}

/** Every file below a directory, relative to it, with its sha256. */
async function treeDigest(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[relative(dir, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return out;
}

/** The ```ts block under a README heading ("From a build script", "Booting from a script"): the consumer test checks the examples users copy. */
async function readmeScript(heading = 'From a build script'): Promise<string> {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith(heading));
  const block = section && /^```ts\n([\s\S]*?)^```$/m.exec(section)?.[1];
  if (!block) throw new Error(`README.md: no \`\`\`ts block under "## ${heading}"`);
  return block;
}

const seconds = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`;

interface Packed {
  name: string;
  filename: string;
  files: { path: string }[];
}
const packed: Packed[] = [];

test.before('pack the four packages and install the tarballs into an empty project', async (t) => {
  // Nothing above the project may hold a node_modules or a package.json that Node or npm would find.
  for (let dir = dirname(project); ; dir = dirname(dir)) {
    for (const name of ['node_modules', 'package.json']) {
      if (existsSync(join(dir, name))) throw new Error(`${join(dir, name)} exists above the project: the test could reach packages that are not the tarballs' (set TMPDIR elsewhere)`);
    }
    if (dir === dirname(dir)) break;
  }
  const tarballs = join(work, 'tarballs');
  await mkdir(tarballs);
  let started = Date.now();
  for (const name of PACKAGES) {
    const result = must(await sh(join(REPO_ROOT, 'packages', name), 'npm', ['pack', '--json', '--pack-destination', tarballs]), `npm pack in packages/${name}`);
    packed.push(...(JSON.parse(result.stdout) as Packed[]));
  }
  t.log(`npm pack ×${PACKAGES.length}: ${seconds(started)}`);

  await mkdir(project);
  await writeFile(join(project, 'package.json'), `${JSON.stringify({ name: 'tinyx-consumer', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`);
  const devDependencies = (JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies;
  started = Date.now();
  must(
    await sh(project, 'npm', [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      ...packed.map((p) => join(tarballs, p.filename)),
      // The compiler of the checkout's own major version, and Node's types, for the build script.
      `typescript@${devDependencies.typescript}`,
      `@types/node@${devDependencies['@types/node']}`,
    ]),
    'npm install of the tarballs',
  );
  t.log(`npm install: ${seconds(started)}`);
});

test('the tarballs hold what runs and the data, nothing of development, and the checkout keeps no copy', async (t) => {
  t.deepEqual(
    packed.map((p) => p.name),
    ['@tinyx/image', '@tinyx/builder', '@tinyx/toolstack', '@tinyx/cli'],
  );
  const shipped = /^(package\.json|README\.md|LICENSE|dist\/.+\.(js|d\.ts)|bin\/tinyx\.js|(recipes|blacklists|kernel|helpers)\/.+)$/;
  for (const p of packed) {
    const files = p.files.map((f) => f.path);
    t.deepEqual(
      files.filter((f) => !shipped.test(f)),
      [],
      `${p.name}: development files in the tarball`,
    );
    t.true(files.includes('dist/index.d.ts') || p.name === '@tinyx/cli', `${p.name}: its types`);
    t.true(files.includes('LICENSE') && files.includes('README.md'), `${p.name}: LICENSE and README.md`);
    if (p.name !== '@tinyx/builder') t.false(files.some((f) => /^(recipes|blacklists|kernel|helpers)\//.test(f)), `${p.name}: data only in the builder`);
  }
  // Installed, the builder's data are the checkout's, file for file and byte for byte.
  for (const dir of DATA_DIR_NAMES) {
    t.deepEqual(await treeDigest(join(project, 'node_modules/@tinyx/builder', dir)), await treeDigest(join(REPO_ROOT, dir)), dir);
  }
  // postpack took the copies out of the checkout again.
  for (const name of PACKAGES) {
    for (const leftover of [...DATA_DIR_NAMES, 'LICENSE', 'README.md', '.tinyx-pack.json']) {
      t.false(existsSync(join(REPO_ROOT, 'packages', name, leftover)), `packages/${name}/${leftover} left behind`);
    }
  }
  // The installed builder reads its own copies, not the checkout's: the data directories, and the kernel fragments read from there.
  const probe = `
    const [b, i] = [await import('@tinyx/builder'), await import('@tinyx/builder/internals')];
    const fragments = await i.kernelFragments({ platform: 'xen-pvh', features: new Map([['net', ['test']]]), format: 'initramfs', decompressor: null });
    console.log(JSON.stringify({ dirs: [b.BUNDLED_RECIPES_DIR, i.BUNDLED_BLACKLISTS_DIR, i.BUNDLED_KERNEL_DIR, i.BUNDLED_HELPERS_DIR], fragments }));`;
  const installed = JSON.parse(must(await sh(project, process.execPath, ['--input-type=module', '-e', probe]), 'import @tinyx/builder/internals').stdout) as { dirs: string[]; fragments: unknown };
  t.deepEqual(
    installed.dirs,
    DATA_DIR_NAMES.map((dir) => join(project, 'node_modules/@tinyx/builder', dir)),
  );
  t.deepEqual(installed.fragments, await kernelFragments({ platform: 'xen-pvh', features: new Map([['net', ['test']]]), format: 'initramfs', decompressor: null }));
});

test('the command through npx, both names: --help shows the search path, an unknown name lists it and hints at a real file', async (t) => {
  const help = must(await sh(project, 'npx', ['@tinyx/cli', 'build', '--help']), 'npx @tinyx/cli build --help');
  t.regex(help.stdout.replace(/\s+/g, ' '), /--recipes DIR in order, each directory of \$TINYX_RECIPES .* then the recipes that come with tinyx \(node_modules\/@tinyx\/builder\/recipes\)/);
  const unknown = await sh(project, 'npx', ['tinyx', 'build', 'ngnix', '--no-kernel']);
  t.is(unknown.code, 2, unknown.stderr);
  t.regex(unknown.stderr, /no recipe named "ngnix"; did you mean "nginx"\?\n  searched, in order:\n    node_modules\/@tinyx\/builder\/recipes \(tinyx's own\): nginx, redis\n/);
  t.regex(unknown.stderr, /hint: write recipes\/ngnix\.yaml \(for an example, see node_modules\/@tinyx\/builder\/recipes\/nginx\.yaml\)/);
  t.true(existsSync(join(project, 'node_modules/@tinyx/builder/recipes/nginx.yaml')), 'the hint names a file that exists');
});

test('npx tinyx build nginx --no-kernel in the project: the same bytes as the checkout build', async (t) => {
  let started = Date.now();
  const ours = await runCli(['build', 'nginx', '--no-kernel', '--out', join(work, 'checkout-nginx'), '--json'], { env: { SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH) } });
  t.is(ours.code, 0, ours.stderr);
  t.log(`checkout build: ${seconds(started)}`);
  started = Date.now();
  const theirs = await sh(project, 'npx', ['tinyx', 'build', 'nginx', '--no-kernel', '--out', 'out/nginx', '--json']);
  t.is(theirs.code, 0, theirs.stderr);
  t.log(`project build (npx tinyx): ${seconds(started)}`);
  const a = (JSON.parse(ours.stdout) as { manifest: Manifest }).manifest;
  const b = (JSON.parse(theirs.stdout) as { manifest: Manifest }).manifest;
  t.deepEqual(b.build.cached, ['base', 'install'], 'one shared cache: the project build reuses the base and the app layer');
  await sameImage(t, 'nginx', { manifest: a, dir: join(work, 'checkout-nginx') }, { manifest: b, dir: join(project, 'out/nginx') });
});

test("a recipe of the project's own in ./recipes, built by the installed command", async (t) => {
  // nginx's recipe under another name: its packages are nginx's, so every step but assemble is a cache hit.
  const nginx = await readFile(join(project, 'node_modules/@tinyx/builder/recipes/nginx.yaml'), 'utf8');
  await mkdir(join(project, 'recipes'), { recursive: true });
  await writeFile(join(project, 'recipes/web.yaml'), nginx.replace(/^name: nginx$/m, 'name: web'));
  const result = await sh(project, 'npx', ['tinyx', 'build', 'web', '--no-kernel', '--json']);
  t.is(result.code, 0, result.stderr);
  const manifest = (JSON.parse(result.stdout) as { imageDir: string; manifest: Manifest }).manifest;
  t.is(manifest.name, 'web');
  t.is(manifest.recipe.source, 'recipes/web.yaml');
  t.true(existsSync(join(project, 'out/web/rootfs.erofs')), "kvm's default format");
});

test("the README's build script, type-checked by tsc against the installed types, builds redis: the same bytes as build() in the checkout", async (t) => {
  const script = await readmeScript();
  t.regex(script, /import \{ build \} from '@tinyx\/builder'/);
  t.regex(script, /recipe: 'redis'/);
  t.regex(script, /outDir: 'out\/redis'/);
  await writeFile(join(project, 'build.ts'), script);
  await writeFile(
    join(project, 'tsconfig.json'),
    `${JSON.stringify({ compilerOptions: { module: 'nodenext', target: 'es2022', strict: true, types: ['node'], skipLibCheck: false }, files: ['build.ts'] }, null, 2)}\n`,
  );
  let started = Date.now();
  must(await sh(project, 'npx', ['tsc', '-p', '.']), 'tsc on the README build script');
  t.log(`tsc: ${seconds(started)}`);
  // The types are real, not any: a misspelt option is a compile error naming it (the .d.ts files were checked above).
  await writeFile(join(project, 'wrong.ts'), script.replace("outDir: 'out/redis'", "outDir: 'out/redis', kernal: false"));
  const wrong = await sh(project, 'npx', ['tsc', '--noEmit', '--module', 'nodenext', '--target', 'es2022', '--strict', '--types', 'node', '--skipLibCheck', 'wrong.ts']);
  t.not(wrong.code, 0);
  t.regex(wrong.stdout, /wrong\.ts\(\d+,\d+\): error TS\d+: .*'kernal' does not exist in type 'BuildOptions'/);

  started = Date.now();
  const ours = await build({ recipe: 'redis', outDir: join(work, 'checkout-redis'), kernel: false, sourceDateEpoch: SOURCE_DATE_EPOCH });
  t.log(`checkout build(): ${seconds(started)}`);
  started = Date.now();
  const run = await sh(project, process.execPath, ['build.js']);
  t.is(run.code, 0, run.stderr);
  t.log(`project build.js: ${seconds(started)}`);
  // The checkout built the same image first, but an erofs image has no archive cache: packed again.
  t.regex(run.stdout, /^pack \d+(\.\d+)? false$/m, 'its progress events arrived');
  const theirs = JSON.parse(await readFile(join(project, 'out/redis/manifest.json'), 'utf8')) as Manifest;
  await sameImage(t, 'redis', { manifest: ours, dir: join(work, 'checkout-redis') }, { manifest: theirs, dir: join(project, 'out/redis') });
});

test("the README's boot script type-checks against the installed toolstack: the machine contract, not any", async (t) => {
  const script = await readmeScript('Booting from a script');
  t.regex(script, /import \{ getBackend \} from '@tinyx\/toolstack'/);
  await writeFile(join(project, 'boot.ts'), script);
  const check = (file: string): Promise<Result> => sh(project, 'npx', ['tsc', '--noEmit', '--module', 'nodenext', '--target', 'es2022', '--strict', '--types', 'node', file]);
  must(await check('boot.ts'), 'tsc on the README boot script');
  // Booting it is run.test.ts's (QEMU) and the xen tier's; here a wrong option must be a compile error naming it.
  await writeFile(join(project, 'boot-wrong.ts'), script.replace('qemu: { tcgCacheMiB: 16 }', 'qemu: { tcgCacheMib: 16 }'));
  const wrong = await check('boot-wrong.ts');
  t.not(wrong.code, 0);
  t.regex(wrong.stdout, /boot-wrong\.ts\(\d+,\d+\): error TS\d+: .*'tcgCacheMib' does not exist in type 'QemuCreateOptions'/);
});

/** Two builds of one recipe, the checkout's and the project's, are the same image (see the top of the file for what may differ). */
async function sameImage(t: import('ava').ExecutionContext, name: string, ours: { manifest: Manifest; dir: string }, theirs: { manifest: Manifest; dir: string }): Promise<void> {
  const [a, b] = [ours.manifest, theirs.manifest];
  t.is(b.artifacts.rootfs, 'rootfs.erofs');
  t.is(b.format, 'erofs', "kvm's default format");
  t.is(await sha256File(join(theirs.dir, b.artifacts.rootfs)), await sha256File(join(ours.dir, a.artifacts.rootfs)), `${name}: the root filesystem archive`);
  t.is(a.recipe.source, join('recipes', `${name}.yaml`));
  t.is(b.recipe.source, join('node_modules/@tinyx/builder/recipes', `${name}.yaml`));
  t.deepEqual({ ...b.recipe, source: '' }, { ...a.recipe, source: '' });
  t.deepEqual(b.files, a.files);
  t.deepEqual(b.symlinks, a.symlinks);
  t.deepEqual(b.packages, a.packages);
  t.deepEqual(b.sizes, a.sizes);
  t.is(b.build.sourceDateEpoch, SOURCE_DATE_EPOCH);
  t.is(b.build.tinyx, a.build.tinyx);
}
