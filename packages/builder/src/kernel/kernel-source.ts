import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { bundledDataDir } from '../bundled-data.js';
import type { Cache } from '../cache.js';
import { TinyxError } from '../errors.js';
import { removeTree } from '../mounts.js';
import { failingForSpace } from '../no-space.js';
import { run } from '@tinyx/image';

/** A kernel tree ready for out-of-tree builds (make O=...), and what identifies it in cache keys. */
export interface KernelSource {
  /** The top of the tree (where the Makefile is). */
  dir: string;
  /** "6.1.192", from the Makefile. */
  version: string;
  /** What the tree was made from: "linux-source-6.1 6.1.192-2", a tarball's sha256, or a directory. */
  id: string;
  cached: boolean;
}

/** Where Debian's linux-source package puts its tarball. */
const DEBIAN_SOURCE_DIR = '/usr/src';

/** One of tinyx's own kernel patches (kernel/patches/*.patch), applied in name order to every tree tinyx unpacks. */
export interface KernelPatch {
  name: string;
  path: string;
  sha256: string;
}

/** The patches in `dir` (default: the bundled kernel/patches), sorted by name. */
export async function kernelPatches(dir = join(bundledDataDir('kernel'), 'patches')): Promise<KernelPatch[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.patch')).sort();
  return Promise.all(names.map(async (name) => ({ name, path: join(dir, name), sha256: await sha256File(join(dir, name)) })));
}

/** What a set of patches adds to a source id: their names and one hash of their contents, so that an edited patch is a new tree. */
export function patchedId(id: string, patches: readonly KernelPatch[]): string {
  if (patches.length === 0) return id;
  const hash = createHash('sha256');
  for (const patch of patches) hash.update(`${patch.name}\0${patch.sha256}\n`);
  return `${id} + ${patches.map((p) => p.name).join(', ')} (${hash.digest('hex').slice(0, 12)})`;
}

/**
 * A kernel source known by its id before it is unpacked: the id is all a
 * cache lookup needs (the configuration's key and the kernel's), so a build
 * whose kernel is cached, here or in a --cache-from registry, never unpacks
 * 1.3 GB of source. `open` unpacks it (once: the tree is cached) when a
 * configuration or a kernel has to be made.
 */
export interface KernelSourceRef {
  /** What identifies the tree in cache keys (see KernelSource.id). */
  id: string;
  open(): Promise<KernelSource>;
}

/**
 * The kernel source: a user-given directory (used in place, built out of
 * tree, and not patched: it is the user's), a user-given tarball, or by
 * default the tarball of Debian's linux-source package. A tarball is
 * extracted once into the cache, and tinyx's patches (kernel/patches) are
 * applied to it there, when `open` is first called.
 */
export async function kernelSource(cache: Cache, given: string | undefined, signal?: AbortSignal): Promise<KernelSourceRef> {
  if (given) {
    const path = resolve(given);
    const info = await stat(path).catch(() => undefined);
    if (!info) throw new TinyxError('E_KERNEL_SOURCE', `--kernel-source ${given} does not exist`, { kind: 'user', hint: 'give a kernel tree (with its Makefile) or a .tar.xz/.tar.gz of one' });
    if (info.isDirectory()) {
      const version = await kernelVersion(path);
      // A tree the user may edit between builds: its id covers every file's size and mtime, so an edit is a new kernel.
      const tree: KernelSource = { dir: path, version, id: `dir:${path}:${version}:${await treeFingerprint(path)}`, cached: true };
      return { id: tree.id, open: async () => tree };
    }
    return extractable(cache, path, `tarball:${await sha256File(path)}`, await kernelPatches(), signal);
  }
  const tarball = await findDebianSource();
  const pkg = basename(tarball).replace(/\.tar\.\w+$/, '');
  const version = (await run('dpkg-query', ['-W', '-f=${Version}', pkg], { allowFailure: true })).stdout.trim() || `size ${(await stat(tarball)).size}`;
  return extractable(cache, tarball, `debian:${pkg} ${version}`, await kernelPatches(), signal);
}

/** A tarball's source: its id now, its tree when first opened (the same promise for every caller). */
function extractable(cache: Cache, tarball: string, tarballId: string, patches: readonly KernelPatch[], signal?: AbortSignal): KernelSourceRef {
  let opened: Promise<KernelSource> | undefined;
  return {
    id: patchedId(tarballId, patches),
    open: () => (opened ??= extractOnce(cache, tarball, tarballId, patches, signal)),
  };
}

async function findDebianSource(): Promise<string> {
  const names = (await readdir(DEBIAN_SOURCE_DIR).catch(() => [] as string[])).filter((n) => /^linux-source-[\d.]+\.tar\.(xz|bz2|gz)$/.test(n)).sort();
  const newest = names.pop();
  if (!newest) {
    throw new TinyxError('E_NO_KERNEL_SOURCE', `no linux-source tarball in ${DEBIAN_SOURCE_DIR}`, {
      kind: 'host',
      hint: 'install it with: apt-get install linux-source   (or run: tinyx doctor --fix; or give --kernel-source DIR|TARBALL)',
    });
  }
  return join(DEBIAN_SOURCE_DIR, newest);
}

/** Extracts a tarball into cache/kernel-src/<key>/src and patches it, once; later builds reuse the tree read-only. */
async function extractOnce(cache: Cache, tarball: string, tarballId: string, patches: readonly KernelPatch[], signal?: AbortSignal): Promise<KernelSource> {
  const id = patchedId(tarballId, patches);
  const key = cacheKeyOf(id);
  const hit = await cache.lookup('kernel-src', key);
  if (hit) {
    const meta = await cache.readMeta<{ top: string }>(hit);
    const dir = join(hit, 'src', meta.top);
    return { dir, version: await kernelVersion(dir), id, cached: true };
  }
  const temp = await cache.makeTemp('kernel-src');
  try {
    await mkdir(join(temp, 'src'));
    await failingForSpace('kernel', { label: 'the cache', path: cache.dir }, () => run('tar', ['-xf', tarball, '-C', join(temp, 'src')], { signal, hint: `is ${tarball} a kernel source tarball?` }));
    const [top, ...others] = await readdir(join(temp, 'src'));
    if (!top || others.length > 0) throw new TinyxError('E_KERNEL_SOURCE', `${tarball} does not hold one top directory`, { kind: 'user' });
    const version = await kernelVersion(join(temp, 'src', top));
    for (const patch of patches) await applyPatch(patch, join(temp, 'src', top), `${tarballId} (${version})`, signal);
    const dir = await cache.publish('kernel-src', key, temp, { id, version, top, tarball, patches: patches.map(({ name, sha256 }) => ({ name, sha256 })) });
    return { dir: join(dir, 'src', top), version, id, cached: false };
  } finally {
    await removeTree(temp);
  }
}

/** Applies one patch to a tree; one that does not apply exactly is an error naming it, never skipped. */
export async function applyPatch(patch: KernelPatch, tree: string, treeName: string, signal?: AbortSignal): Promise<void> {
  // --forward: an already applied patch is a failure, not a reversal; no fuzz: a patch that moved is refreshed by hand.
  const args = ['--batch', '--forward', '--fuzz=0', '--no-backup-if-mismatch', '-p1', '-d', tree, '-i', patch.path];
  const check = await run('patch', ['--dry-run', ...args], { allowFailure: true, signal });
  if (check.exitCode !== 0) {
    throw new TinyxError('E_KERNEL_PATCH', `the kernel patch ${patch.name} does not apply to ${treeName}:\n${(check.stdout + check.stderr).trim()}`, {
      kind: 'user',
      hint: `${patch.path} was made for another kernel version: refresh it for this tree, or give --kernel-source a tree of your own (tinyx does not patch a directory it is given)`,
    });
  }
  await run('patch', ['--silent', ...args], { signal });
}

function cacheKeyOf(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 24);
}

/** VERSION.PATCHLEVEL.SUBLEVEL from the tree's Makefile. */
export async function kernelVersion(dir: string): Promise<string> {
  const makefile = await readFile(join(dir, 'Makefile'), 'utf8').catch(() => '');
  // [ \t]*, not \s*: an empty EXTRAVERSION must not swallow the next line.
  const field = (name: string): string | undefined => makefile.match(new RegExp(`^${name}[ \\t]*=[ \\t]*(\\S*)`, 'm'))?.[1];
  const [version, patch, sub] = [field('VERSION'), field('PATCHLEVEL'), field('SUBLEVEL')];
  if (!version || patch === undefined) throw new TinyxError('E_KERNEL_SOURCE', `${dir} is not a kernel tree (no VERSION in its Makefile)`, { kind: 'user' });
  return `${version}.${patch}.${sub || 0}${field('EXTRAVERSION') ?? ''}`;
}

/** A hash of every file's path, size and mtime below `dir` (.git left out): changes when anything is edited. */
async function treeFingerprint(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (at: string): Promise<void> => {
    const entries = (await readdir(at, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (entry.name === '.git') continue;
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      else {
        const st = await lstat(path);
        hash.update(`${path}\0${st.size}\0${st.mtimeMs}\n`);
      }
    }
  };
  await walk(dir);
  return hash.digest('hex').slice(0, 16);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
