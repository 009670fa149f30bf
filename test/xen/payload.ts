import { copyFile, cp, lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { parseObjdumpPrivateHeaders, run } from '@tinyx/builder/internals';
import { DOM0_INIT, PAYLOAD_ENTRY } from './dom0-init.js';

/**
 * What one run adds to dom0, as a second cpio appended to the cached dom0
 * root (the kernel unpacks concatenated archives in order): a Node.js runtime,
 * the built project, the image directories to boot, the configuration of the
 * tests, dom0's /init, and the entry point it runs.
 */
export interface PayloadOptions {
  /** The repository's root: its package.json, packages/*, node_modules, test/dist. */
  projectDir: string;
  /** The image directories, by label ("pvh", "pv"); copied to /opt/tinyx-xen/images/<label>. */
  images: Record<string, string>;
  /** Written to /opt/tinyx-xen/config.json for the tests in dom0 (in-dom0.ts reads it). */
  config: object;
  /** Sonames dom0's root already has (from its cache entry): node's libraries are added only when missing. */
  dom0Libraries: ReadonlySet<string>;
  signal?: AbortSignal | undefined;
}

/** Where things are inside dom0. */
export const DOM0_PATHS = {
  project: '/opt/tinyx',
  images: '/opt/tinyx-xen/images',
  config: '/opt/tinyx-xen/config.json',
  node: '/usr/local/bin/node',
  tests: '/opt/tinyx/test/dist/xen/in-dom0.js',
  cli: '/opt/tinyx/packages/cli/bin/tinyx.js',
} as const;

/**
 * Every domain the tests create gets \`tsc_mode = "native"\` (the xen backend
 * reads TINYX_XEN_XL_EXTRA): with Xen's default mode on this emulated CPU
 * (no invariant TSC), Xen traps and emulates the guest's rdtsc, and under
 * nested TCG that occasionally triple-faults a PVH guest at the rdtsc of its
 * early boot (seen once in about ten PVH boots in a benchmark run). Linux
 * guests keep time with Xen's pvclock, so the native TSC costs them nothing.
 */
export const XL_EXTRA_EXPORT = `export TINYX_XEN_XL_EXTRA='tsc_mode = "native"'`;

/** Host directories searched for node's libraries, in the dynamic linker's order. */
const HOST_LIBRARY_DIRS = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib'];

/** Stages the payload in `stage` (an empty directory) and packs it as an uncompressed newc cpio at `out`. */
export async function buildPayload(stage: string, out: string, options: PayloadOptions): Promise<{ bytes: number }> {
  const { signal } = options;
  const inStage = (path: string): string => join(stage, path);

  // Node.js: the host's own binary, and whichever of its libraries dom0 lacks.
  const node = process.execPath;
  await mkdir(dirname(inStage(DOM0_PATHS.node)), { recursive: true });
  await copyFile(node, inStage(DOM0_PATHS.node));
  for (const library of await missingLibraries(node, options.dom0Libraries, signal)) {
    await mkdir(inStage('/usr/lib/x86_64-linux-gnu'), { recursive: true });
    await copyFile(library, inStage(join('/usr/lib/x86_64-linux-gnu', basename(library))));
  }

  await stageProject(options.projectDir, inStage(DOM0_PATHS.project), signal);

  for (const [label, dir] of Object.entries(options.images)) {
    const target = inStage(join(DOM0_PATHS.images, label));
    await mkdir(target, { recursive: true });
    for (const name of await readdir(dir)) {
      if ((await lstat(join(dir, name))).isFile()) await copyFile(join(dir, name), join(target, name));
    }
  }

  await writeFile(inStage('/init'), DOM0_INIT, { mode: 0o755 });
  await writeFile(inStage(DOM0_PATHS.config), `${JSON.stringify(options.config, null, 2)}\n`);
  await writeFile(
    inStage(PAYLOAD_ENTRY),
    `#!/bin/sh\n# The Xen tests, run by dom0's /init; their results go to the console as framed lines.\n${XL_EXTRA_EXPORT}\ncd ${DOM0_PATHS.project}\nexec ${DOM0_PATHS.node} ${DOM0_PATHS.tests} ${DOM0_PATHS.config}\n`,
    { mode: 0o755 },
  );

  await run('sh', ['-c', 'cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null --reproducible -o -H newc --quiet > "$2"', 'sh', stage, out], { signal });
  const { size } = await lstat(out);
  return { bytes: size };
}

/**
 * The built project, as it runs: package.json files, each workspace's dist/,
 * the compiled Xen tests, and the production dependencies (`npm ls --omit=dev`,
 * 13 MiB, where the whole node_modules with TypeScript and ava is ten times
 * that). The workspace links in node_modules/@tinyx stay links.
 */
async function stageProject(projectDir: string, target: string, signal: AbortSignal | undefined): Promise<void> {
  await mkdir(target, { recursive: true });
  await copyFile(join(projectDir, 'package.json'), join(target, 'package.json'));
  for (const name of await readdir(join(projectDir, 'packages'))) {
    const from = join(projectDir, 'packages', name);
    await mkdir(join(target, 'packages', name), { recursive: true });
    await copyFile(join(from, 'package.json'), join(target, 'packages', name, 'package.json'));
    await cp(join(from, 'dist'), join(target, 'packages', name, 'dist'), { recursive: true, filter: (path) => !path.endsWith('.map') });
    // The CLI's entry point (packages/cli/bin/tinyx.js): the tests run `tinyx` in dom0 too.
    if (await lstat(join(from, 'bin')).then(() => true, () => false)) await cp(join(from, 'bin'), join(target, 'packages', name, 'bin'), { recursive: true });
  }
  await cp(join(projectDir, 'test/dist/xen'), join(target, 'test/dist/xen'), { recursive: true, filter: (path) => !path.endsWith('.map') });

  const listed = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: projectDir, signal });
  const topLevel = new Set<string>();
  for (const line of listed.stdout.split('\n')) {
    const path = relative(projectDir, line.trim());
    // node_modules/x or node_modules/@scope/x; nested node_modules come with their parent.
    const match = path.match(/^node_modules\/((?:@[^/]+\/)?[^/]+)/);
    if (match) topLevel.add(match[0]);
  }
  for (const path of topLevel) {
    await cp(join(projectDir, path), join(target, path), { recursive: true, verbatimSymlinks: true });
  }
}

/** The libraries `binary` needs (NEEDED, recursively) that dom0 does not have, as host paths. */
async function missingLibraries(binary: string, present: ReadonlySet<string>, signal: AbortSignal | undefined): Promise<string[]> {
  const missing: string[] = [];
  const seen = new Set<string>();
  const queue = [binary];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const { needed } = parseObjdumpPrivateHeaders((await run('objdump', ['-p', file], { signal })).stdout);
    for (const soname of needed) {
      if (seen.has(soname)) continue;
      seen.add(soname);
      if (present.has(soname)) continue;
      const found = await findHostLibrary(soname);
      if (!found) throw new Error(`${binary} needs ${soname}, which neither dom0 nor the host has`);
      missing.push(found);
      queue.push(found);
    }
  }
  return missing;
}

async function findHostLibrary(soname: string): Promise<string | undefined> {
  for (const dir of HOST_LIBRARY_DIRS) {
    const path = join(dir, soname);
    if (await lstat(path).then(() => true, () => false)) return path;
  }
  return undefined;
}

/** The sonames in a root's library directories (recorded in the dom0 cache entry). */
export async function librariesIn(root: string): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of HOST_LIBRARY_DIRS) {
    for (const name of await readdir(join(root, dir)).catch(() => [] as string[])) if (name.includes('.so')) names.add(name);
  }
  return [...names].sort();
}
