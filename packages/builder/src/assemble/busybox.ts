import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { DEBIAN_ARCHIVE_KEYRING, requireTools, run } from '@tinyx/image';
import type { BaseSpec } from '../base/create-base.js';
import { cacheKey, type Cache } from '../cache.js';
import { TinyxError } from '../errors.js';
import { removeTree } from '../mounts.js';

/**
 * The image's BusyBox: Debian's source of the base's busybox-static, built
 * with only the applets /init runs, static against musl. busybox-static has
 * some 400 applets in 1.98 MB (glibc, static); this one has /init's 13 in
 * about 330 KB, with Debian's configuration otherwise (its patches, its shell
 * features, FEATURE_SH_STANDALONE: a command is an applet after a fork, no exec).
 *
 *   1. the source package of the base's busybox-static, from the base's mirror
 *      and suite (`apt-get source`, which checks it against the signed index);
 *   2. Debian's static configuration (debian/config/pkg/static) with every
 *      applet outside the list turned off (`busybox` itself stays, for
 *      --list), and what musl lacks (EXTRA_COMPAT: glibc's regex API), then
 *      `make oldconfig`;
 *   3. `make` with musl-gcc, no timestamp (KCONFIG_NOTIMESTAMP): the same
 *      source, list and compiler give the same bytes.
 *
 * Cached by source version, applet list, these rules and the compiler.
 */

/** Bumped when the configuration rules or build flags below change. */
const RULES = 1;

/** Options of Debian's static configuration that musl cannot build (glibc's GNU regex API). */
const MUSL_OFF = ['EXTRA_COMPAT'];

/** The base's binary package whose source version is built. */
const BINARY_PACKAGE = 'busybox-static';

export interface BuiltBusybox {
  /** The static binary in the cache entry. */
  path: string;
  /** The source it was built from: "busybox 1:1.35.0-4+deb12u1". */
  source: string;
  applets: string[];
  /** `musl-gcc --version`'s first line (part of the cache key). */
  compiler: string;
  bytes: number;
  cached: boolean;
  /** The base's busybox-static version, when the mirror no longer served its source and the mirror's newest was built instead. */
  instead?: string | undefined;
}

/** The config symbols of each applet, read from the source's `//applet:` lines: IF_MKDIR(APPLET_NOFORK(mkdir, ...)). */
export function appletSymbols(sources: readonly string[]): Map<string, Set<string>> {
  const symbols = new Map<string, Set<string>>();
  const line = /^\/\/applet:IF_([A-Z0-9_]+)\((?:\s*IF_[A-Z0-9_]+\()*\s*APPLET\w*\(\s*([\w.[-]+)/gm;
  for (const text of sources) {
    for (const [, symbol, applet] of text.matchAll(line)) {
      const names = symbols.get(symbol!) ?? new Set<string>();
      names.add(applet!);
      symbols.set(symbol!, names);
    }
  }
  return symbols;
}

/**
 * Debian's configuration with every applet symbol none of whose applets is
 * wanted turned off, and `off` too; the rest as Debian has it. `make oldconfig`
 * then drops what depended on what was turned off.
 */
export function trimConfig(config: string, symbols: ReadonlyMap<string, ReadonlySet<string>>, wanted: readonly string[], off: readonly string[] = MUSL_OFF): string {
  const drop = new Set(off);
  for (const [symbol, applets] of symbols) if (![...applets].some((a) => wanted.includes(a))) drop.add(symbol);
  return config
    .split('\n')
    .map((line) => {
      const m = /^CONFIG_([A-Z0-9_]+)=y$/.exec(line);
      return m && drop.has(m[1]!) ? `# CONFIG_${m[1]} is not set` : line;
    })
    .join('\n');
}

/** The source package and version of the base's busybox-static, from its dpkg database. */
async function sourceOf(baseRoot: string): Promise<{ name: string; version: string }> {
  const { stdout } = await run('dpkg-query', [`--admindir=${join(baseRoot, 'var/lib/dpkg')}`, '-W', '-f', '${source:Package}\t${source:Version}', BINARY_PACKAGE], {
    hint: `the base has no ${BINARY_PACKAGE}: remove its cache entry (rm -r ${dirname(baseRoot)}) and the next build makes it again, with it`,
  });
  const [name, version] = stdout.trim().split('\t');
  if (!name || !version) throw new TinyxError('E_DPKG_STATUS', `${BINARY_PACKAGE} in ${baseRoot} has no source version (dpkg-query said ${JSON.stringify(stdout)})`);
  return { name, version };
}

/** All the .c files under dir, for their `//applet:` lines (quilt's .pc copies left out). */
async function cSources(dir: string): Promise<string[]> {
  const texts: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.c') || entry.parentPath.includes('/.pc')) continue;
    texts.push(await readFile(join(entry.parentPath, entry.name), 'latin1'));
  }
  return texts;
}

/**
 * The mirror's deb-src index for the base's suite, in a private apt state
 * (the host's apt configuration, such as a proxy, still applies): apt-get
 * checks what it downloads from there against the signed Sources.
 */
async function sourceIndex(work: string, base: BaseSpec, signal: AbortSignal | undefined): Promise<{ options: string[]; hint: string }> {
  const apt = join(work, 'apt');
  for (const dir of ['lists/partial', 'cache/archives/partial', 'parts']) await mkdir(join(apt, dir), { recursive: true });
  const keyring = base.keyring ?? DEBIAN_ARCHIVE_KEYRING;
  await writeFile(join(apt, 'sources.list'), `deb-src [signed-by=${keyring}] ${base.mirror} ${base.suite} main\n`);
  const options = [
    `Dir::Etc::SourceList=${join(apt, 'sources.list')}`,
    `Dir::Etc::SourceParts=${join(apt, 'parts')}`,
    `Dir::State::Lists=${join(apt, 'lists')}`,
    `Dir::Cache=${join(apt, 'cache')}`,
    'APT::Sandbox::User=root',
  ].flatMap((o) => ['-o', o]);
  const hint = `tinyx fetches BusyBox's source from ${base.mirror} (${base.suite}, deb-src); check that the mirror serves source packages`;
  await run('apt-get', [...options, 'update'], { signal, hint });
  return { options, hint };
}

/** The versions of source package `name` the index has, newest first (dpkg's order). */
async function indexedVersions(index: { options: string[]; hint: string }, name: string, signal: AbortSignal | undefined): Promise<string[]> {
  const { stdout } = await run('apt-cache', [...index.options, 'showsrc', '--only-source', name], { signal, allowFailure: true });
  const newest: string[] = [];
  for (const [, version] of stdout.matchAll(/^Version: (\S+)$/gm)) {
    if (newest.includes(version!)) continue;
    let at = 0;
    while (at < newest.length && (await run('dpkg', ['--compare-versions', version!, 'lt', newest[at]!], { signal, allowFailure: true })).exitCode === 0) at++;
    newest.splice(at, 0, version!);
  }
  return newest;
}

/** Downloads and unpacks `name=version` from the index (see sourceIndex). */
async function fetchSource(work: string, index: { options: string[]; hint: string }, source: { name: string; version: string }, signal: AbortSignal | undefined): Promise<string> {
  const { options, hint } = index;
  const downloads = join(work, 'download');
  await mkdir(downloads);
  await run('apt-get', [...options, 'source', '--download-only', '--only-source', `${source.name}=${source.version}`], { signal, cwd: downloads, hint });
  const dsc = (await readdir(downloads)).find((n) => n.endsWith('.dsc'));
  if (!dsc) throw new TinyxError('E_NETWORK', `apt-get source ${source.name}=${source.version} left no .dsc in ${downloads}`, { hint });
  const tree = join(work, 'src');
  await run('dpkg-source', ['--no-check', '-x', join(downloads, dsc), tree], { signal, cwd: work });
  return tree;
}

/** The kernel's user-space headers (linux/, asm/, asm-generic/) for musl-gcc, which looks only in musl's own include directory. */
async function kernelHeaders(work: string, multiarch: string): Promise<string> {
  const dir = join(work, 'kernel-headers');
  await mkdir(dir);
  await symlink('/usr/include/linux', join(dir, 'linux'));
  await symlink('/usr/include/asm-generic', join(dir, 'asm-generic'));
  await symlink(`/usr/include/${multiarch}/asm`, join(dir, 'asm'));
  return dir;
}

/** The image's BusyBox with exactly `applets`, from the cache or built now. */
export async function buildBusybox(
  cache: Cache,
  base: { root: string; spec: BaseSpec; multiarch: string },
  applets: readonly string[],
  options: {
    signal?: AbortSignal | undefined;
    onLine?: ((line: string) => void) | undefined;
    /** Told once when it is not in the cache and is built now (about 25 s), with the source. */
    onBuild?: ((source: string) => void) | undefined;
  } = {},
): Promise<BuiltBusybox> {
  const { signal } = options;
  await requireTools(['apt-get', 'apt-cache', 'dpkg', 'dpkg-source', 'make', 'gcc', 'musl-gcc', 'bzip2', 'xz']);
  const wanted = [...new Set(applets)].sort();
  let source = await sourceOf(base.root);
  const compiler = (await run('musl-gcc', ['--version'], { signal })).stdout.split('\n')[0] ?? '';
  const musl = (await run('dpkg-query', ['-W', '-f', '${Version}', 'musl-dev'], { allowFailure: true })).stdout.trim();
  const keyOf = (version: string): string => cacheKey('busybox', { source: { name: source.name, version }, applets: wanted, rules: RULES, off: MUSL_OFF, compiler, musl, arch: base.spec.architecture });
  let key = keyOf(source.version);
  let instead: string | undefined;
  const describe = (path: string, bytes: number, cached: boolean): BuiltBusybox => ({ path, source: `${source.name} ${source.version}`, applets: wanted, compiler, bytes, cached, ...(instead ? { instead } : {}) });
  const hit = await cache.lookup('busybox', key);
  if (hit) return describe(join(hit, 'busybox'), (await readFile(join(hit, 'busybox'))).length, true);

  const work = await cache.makeTemp('busybox');
  try {
    const index = await sourceIndex(work, base.spec, signal);
    const versions = await indexedVersions(index, source.name, signal);
    if (!versions.includes(source.version)) {
      // Debian's mirrors keep only a suite's current versions: after a point release the base's is gone.
      if (versions.length === 0) throw new TinyxError('E_NETWORK', `${base.spec.mirror} (${base.spec.suite}) has no source package ${source.name}`, { hint: index.hint });
      instead = source.version;
      source = { ...source, version: versions[0]! };
      key = keyOf(source.version);
      const newer = await cache.lookup('busybox', key);
      if (newer) return describe(join(newer, 'busybox'), (await readFile(join(newer, 'busybox'))).length, true);
    }
    options.onBuild?.(`${source.name} ${source.version}`);
    const tree = await fetchSource(work, index, source, signal);
    const debianConfig = await readFile(join(tree, 'debian/config/pkg/static'), 'utf8');
    await writeFile(join(tree, '.config'), trimConfig(debianConfig, appletSymbols(await cSources(tree)), [...wanted, 'busybox']));
    const headers = await kernelHeaders(work, base.multiarch);
    const env = { KCONFIG_NOTIMESTAMP: '1', SOURCE_DATE_EPOCH: '0' };
    const make = ['CC=musl-gcc', `EXTRA_CFLAGS=-isystem ${headers}`];
    // oldconfig asks about nothing new (every symbol is in Debian's file); its input answers any question with the default.
    await run('make', [...make, 'oldconfig'], { cwd: tree, env, signal, input: '\n'.repeat(200) });
    await run('make', [...make, `-j${availableParallelism()}`, 'busybox'], { cwd: tree, env, signal, ...(options.onLine ? { onLine: options.onLine } : {}) });
    const binary = join(tree, 'busybox');
    const listed = (await run(binary, ['--list'], { signal })).stdout.split('\n').filter((a) => a && a !== 'busybox');
    const missing = wanted.filter((a) => !listed.includes(a));
    const extra = listed.filter((a) => !wanted.includes(a));
    if (missing.length || extra.length) {
      throw new TinyxError('E_INTERNAL', `BusyBox ${source.version} built with the applets ${listed.join(' ')}: ${missing.length ? `missing ${missing.join(' ')}` : ''}${extra.length ? ` extra ${extra.join(' ')}` : ''}`, {
        hint: "tinyx's configuration rules (packages/builder/src/assemble/busybox.ts) do not fit this BusyBox source",
      });
    }
    const entry = join(work, 'entry');
    await mkdir(entry);
    const bytes = await readFile(binary);
    await writeFile(join(entry, 'busybox'), bytes, { mode: 0o755 });
    await writeFile(join(entry, 'config'), await readFile(join(tree, '.config')));
    const published = await cache.publish('busybox', key, entry, { source, applets: wanted, compiler, musl });
    return describe(join(published, 'busybox'), bytes.length, false);
  } finally {
    await removeTree(work);
  }
}
