import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { appendFile, copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, relative } from 'node:path';
import { Cache, cacheKey, processExists } from '../cache.js';
import { CommandFailedError, TinyxError } from '../errors.js';
import { findOnPath } from '@tinyx/image';
import { removeTree } from '../mounts.js';
import { failingForSpace } from '../no-space.js';
import { run } from '@tinyx/image';
import { checkConfig, findDependencies, mergeFragments, parseKconfig, renderKconfig, type ConfigCheck, type RequestedOption } from './kconfig.js';
import { kernelFragments, type KernelRequest } from './fragments.js';
import type { KernelSource, KernelSourceRef } from './kernel-source.js';
import { lookupShared, type SharedCache } from '../oci/shared-cache.js';

/** A kernel configuration, as olddefconfig made it from the fragments, and what became of each request. */
export interface KernelConfig {
  /** The final .config text. */
  text: string;
  sha256: string;
  requested: Map<string, RequestedOption>;
  /** Options asked to be off that something selects anyway (reported once). */
  stuckOn: ConfigCheck['stuckOn'];
  /** How many options are set (=y, =m or a value). */
  enabled: number;
  cached: boolean;
  /** The --cache-from registry the configuration was fetched from (then `cached` too). */
  fetchedFrom?: string | undefined;
}

export interface BuiltKernel {
  /** The bzImage. */
  bzImage: string;
  /** The uncompressed ELF with its PVH note, for direct boot. */
  vmlinux: string;
  /** The symbol table (`System.map`), which names the addresses a kernel without KALLSYMS prints. */
  systemMap: string;
  config: KernelConfig;
  version: string;
  cached: boolean;
  /** The --cache-from registry the kernel was fetched from (then `cached` too). */
  fetchedFrom?: string | undefined;
  /** Seconds the compile took (now, or when it was cached). */
  buildSeconds: number;
  /**
   * What ccache gave the compile: compiles answered from it (hits) and run
   * (misses), from its counters before and after (another build sharing the
   * cache meanwhile would add its own). Absent without ccache, and for a kernel
   * that came from the cache whole.
   */
  compilerCache?: { hits: number; misses: number } | undefined;
  /** Built in the kept build tree of its platform (only what the config changed was compiled), not in an empty one. */
  keptTree?: boolean;
}

export interface KernelProgress {
  /** Source files compiled so far. */
  compiled: number;
  /** How many a build of this tree compiled last time, when known. */
  expected: number | undefined;
}

/** Fixed build metadata, so that the same source and .config give the same kernel bytes. */
function reproducibleEnv(sourceDateEpoch: number): Record<string, string> {
  return {
    KBUILD_BUILD_TIMESTAMP: `@${sourceDateEpoch}`,
    KBUILD_BUILD_USER: 'tinyx',
    KBUILD_BUILD_HOST: 'tinyx',
    KBUILD_BUILD_VERSION: '1',
  };
}

/**
 * ccache, when the host has it, with its store in the tinyx cache: a source
 * file whose preprocessed text a configuration change leaves alone is
 * compiled once. The build directory is the platform's kept tree or an empty
 * temporary one; the compiler is given absolute source paths and paths relative to it for the
 * rest, so the directory itself is left out of the hash. No base_dir: it
 * would turn the source paths relative, and __FILE__ (which the kernel's
 * -fmacro-prefix-map shortens only when absolute) would then differ from a
 * build without ccache. With it as is, the kernel's bytes do not depend on ccache.
 */
async function compilerCache(cache: Cache): Promise<{ makeArgs: string[]; env: Record<string, string> } | undefined> {
  if (process.env.TINYX_CCACHE === '0' || !(await findOnPath('ccache'))) return undefined;
  return {
    // HOSTCC too: the build's own tools (fixdep, objtool, Kconfig's conf, relocs, ...) are built again in every empty tree.
    makeArgs: ['CC=ccache gcc', 'HOSTCC=ccache gcc'],
    env: {
      CCACHE_DIR: join(cache.dir, 'ccache'),
      CCACHE_NOHASHDIR: 'true',
      CCACHE_MAXSIZE: '2G',
      // The generated headers are written just before the compile; their times say nothing of their content.
      CCACHE_SLOPPINESS: 'include_file_mtime,include_file_ctime,time_macros',
    },
  };
}

/**
 * Kbuild runs nm on every object it compiles (scripts/check-local-export).
 * Told the format, binutils' nm reads the object; not told, it first loads
 * every plugin in bfd-plugins, and with LLVM's there (Debian's `llvm`
 * brings LLVMgold) that is 0.1 s for each of about 800 objects: 40 s of a
 * 2-core build whose compiles all come from ccache. The output is the same.
 * tinyx's kernels are x86_64 (kernel/platforms).
 */
const toolArgs: readonly string[] = process.arch === 'x64' ? ['NM=nm --target=elf64-x86-64'] : [];

/**
 * The key of a configuration: the source and the merged request. Looked up
 * before any Kconfig runs, so that a cache hit costs no `make`.
 */
export function kernelConfigKey(sourceId: string, requested: ReadonlyMap<string, RequestedOption>): string {
  // Origins are left out: the same options asked by another fragment make the same .config.
  return cacheKey('kernel-config', { source: sourceId, requested: renderKconfig(requested) });
}

/**
 * What a kernel entry holds, bumped when that changes so that no image is
 * made from an entry without it: 2 added System.map.
 */
const KERNEL_ENTRY = 2;

/** The key of a built kernel: the source and the final .config, so recipes whose configs match share a kernel. */
export function kernelBuildKey(sourceId: string, finalConfig: string): string {
  return cacheKey('kernel', { source: sourceId, config: sha256(finalConfig), entry: KERNEL_ENTRY });
}

/**
 * tinyconfig + fragments, then olddefconfig, then the check that every option
 * asked for is set as asked. A dropped option is an error naming the option,
 * its fragment and its unmet `depends on`. Cached by source + fragments, so a
 * cache hit runs no Kconfig at all (and the source is not even unpacked);
 * with a shared cache, an entry missing here is fetched from its registry,
 * and one made or found here is sent to it.
 */
export async function configureKernel(
  cache: Cache,
  source: KernelSourceRef,
  request: KernelRequest,
  options: { signal?: AbortSignal | undefined; shared?: SharedCache | undefined },
): Promise<KernelConfig> {
  const fragments = await kernelFragments(request);
  const requested = mergeFragments(fragments);
  const key = kernelConfigKey(source.id, requested);
  const hit = await lookupShared(cache, 'kernel-configs', key, options.shared);
  if (hit) {
    const meta = await cache.readMeta<{ stuckOn: ConfigCheck['stuckOn'] }>(hit.dir);
    const text = await readFile(join(hit.dir, 'config'), 'utf8');
    return { text, sha256: sha256(text), requested, stuckOn: meta.stuckOn, enabled: countEnabled(text), cached: true, fetchedFrom: hit.from };
  }
  const tree = await source.open();
  const base = await sourceTinyConfig(cache, source, options.signal);
  const temp = await cache.makeTemp('kconfig');
  try {
    await copyFile(base, join(temp, '.config'));
    await appendFile(join(temp, '.config'), `\n# tinyx fragments\n${renderKconfig(requested)}`);
    await run('make', ['-C', tree.dir, `O=${temp}`, 'olddefconfig'], { signal: options.signal });
    const text = await readFile(join(temp, '.config'), 'utf8');
    const check = checkConfig(requested, parseKconfig(text));
    if (check.dropped.length > 0) throw await droppedOptionsError(tree, check.dropped);
    const entry = await cache.makeTemp('kernel-config');
    try {
      await copyFile(join(temp, '.config'), join(entry, 'config'));
      await cache.publish('kernel-configs', key, entry, { source: source.id, stuckOn: check.stuckOn });
    } finally {
      await removeTree(entry);
    }
    await options.shared?.offer(cache, 'kernel-configs', key);
    return { text, sha256: sha256(text), requested, stuckOn: check.stuckOn, enabled: countEnabled(text), cached: false };
  } finally {
    await removeTree(temp);
  }
}

/** The cache key of a source's tinyconfig. */
export function tinyConfigKey(sourceId: string): string {
  return cacheKey('kernel-tinyconfig', { source: sourceId });
}

/**
 * The path of `make tinyconfig`'s .config for a source, made once and kept
 * with the configurations (`kernel-configs/`, local only); the minimizer's
 * candidates are the options beyond it. It runs Kconfig three times
 * (allnoconfig, the merge of kernel/configs/tiny.config and the arch's, then
 * olddefconfig): about 19 s on two cores, for a result that depends on the
 * source alone (and the compiler, as the configurations' keys already
 * assume). Every configuration starts from a copy, as it would have started
 * from `make tinyconfig` in its own directory.
 */
export async function sourceTinyConfig(cache: Cache, source: KernelSourceRef, signal: AbortSignal | undefined): Promise<string> {
  const key = tinyConfigKey(source.id);
  const hit = await cache.lookup('kernel-configs', key);
  if (hit) return join(hit, 'config');
  const tree = await source.open();
  const temp = await cache.makeTemp('tinyconfig');
  try {
    await mkdir(join(temp, 'build'));
    await mkdir(join(temp, 'entry'));
    await run('make', ['-C', tree.dir, `O=${join(temp, 'build')}`, 'tinyconfig'], { signal });
    await copyFile(join(temp, 'build', '.config'), join(temp, 'entry', 'config'));
    return join(await cache.publish('kernel-configs', key, join(temp, 'entry'), { source: source.id, tinyconfig: true }), 'config');
  } finally {
    await removeTree(temp);
  }
}

/** The text of a source's tinyconfig (sourceTinyConfig) in a cache directory: the options `tinyx kernel minimize` leaves alone. */
export async function tinyConfigText(cacheDir: string, source: KernelSourceRef, signal?: AbortSignal): Promise<string> {
  return readFile(await sourceTinyConfig(new Cache(cacheDir), source, signal), 'utf8');
}

async function droppedOptionsError(tree: KernelSource, dropped: ConfigCheck['dropped']): Promise<TinyxError> {
  const deps = findDependencies(await readKconfigFiles(tree.dir), dropped.map((d) => d.symbol));
  const lines = dropped.map((d) => {
    const dep = deps.get(d.symbol);
    const why = dep ? (dep.dependsOn.length > 0 ? `it depends on ${dep.dependsOn.join(' && ')} (${dep.file})` : `see ${dep.file}`) : 'no such option in this kernel';
    return `  CONFIG_${d.symbol}=${d.wanted} (from ${d.origin}) ended up ${d.got === 'n' ? 'unset' : `=${d.got}`}: ${why}`;
  });
  return new TinyxError('E_KERNEL_CONFIG', `Kconfig dropped ${dropped.length} requested option${dropped.length > 1 ? 's' : ''} of kernel ${tree.version}:\n${lines.join('\n')}`, {
    kind: 'user',
    hint: 'add what they depend on to the same fragment, or drop them; `tinyx kernel config` shows where every option came from',
  });
}

/** Every Kconfig file of a tree, by path relative to it. */
export async function readKconfigFiles(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) {
        if (!entry.name.startsWith('.')) await walk(path);
      } else if (entry.name.startsWith('Kconfig')) files.set(relative(dir, path), await readFile(path, 'utf8'));
    }
  };
  await walk(dir);
  return files;
}

/**
 * `make bzImage` out of tree, cached by source + final .config: two recipes
 * whose configs match share one kernel, and the same config is built once.
 * The compiler's output goes to a log; progress counts the files compiled.
 */
export async function buildKernel(
  cache: Cache,
  source: KernelSourceRef,
  config: KernelConfig,
  options: {
    signal?: AbortSignal | undefined;
    /** Where a kernel missing here is fetched from, and where one made or found here is sent (see SharedCache). */
    shared?: SharedCache | undefined;
    sourceDateEpoch: number;
    onProgress?: (progress: KernelProgress) => void;
    /** Which kept build tree to start from (the platform): kernels of one platform share most objects. */
    tree?: string | undefined;
  },
): Promise<BuiltKernel> {
  const key = kernelBuildKey(source.id, config.text);
  const hit = await lookupShared(cache, 'kernels', key, options.shared);
  if (hit) {
    const { dir } = hit;
    const meta = await cache.readMeta<{ seconds: number; version?: string }>(dir);
    const version = meta.version ?? (await source.open()).version;
    return { bzImage: join(dir, 'bzImage'), vmlinux: join(dir, 'vmlinux'), systemMap: join(dir, 'System.map'), config, version, cached: true, fetchedFrom: hit.from, buildSeconds: meta.seconds };
  }
  const tree = await source.open();
  const temp = await cache.makeTemp('kernel');
  const kept = options.tree ? await takeKeptTree(cache, source.id, options.tree) : undefined;
  const build = kept?.dir ?? join(temp, 'build');
  const warm = kept?.warm ?? false;
  const entry = join(temp, 'entry');
  let built = false;
  if (!kept) await mkdir(build);
  await mkdir(entry);
  // A kept tree compiles only what the config changed: no count to expect.
  const expected = warm ? undefined : await expectedCompileCount(cache, source.id);
  const logFile = join(temp, 'build.log');
  const log = createWriteStream(logFile);
  const complaints: string[] = [];
  try {
    const started = performance.now();
    let compiled = 0;
    await writeFile(join(build, '.config'), config.text);
    const ccache = await compilerCache(cache);
    const countedBefore = ccache ? await ccacheCounters(ccache.env, options.signal) : undefined;
    const make = (args: string[]) =>
      failingForSpace('kernel', { label: 'the cache', path: cache.dir }, () => run('make', ['-C', tree.dir, `O=${build}`, ...toolArgs, ...(ccache?.makeArgs ?? []), ...args], {
        signal: options.signal,
        env: { ...reproducibleEnv(options.sourceDateEpoch), ...ccache?.env },
        onLine: (line) => {
          log.write(`${line}\n`);
          // With -j, make finishes the other jobs after a compiler error: their lines would push the error out of the tail.
          if (complaints.length < 20 && /(^|\s)(error|fatal error):|\*\*\* \[|Error \d+/.test(line)) complaints.push(line);
          if (/^\s+CC\s/.test(line)) options.onProgress?.({ compiled: ++compiled, expected });
        },
      }));
    try {
      // olddefconfig again is a no-op for a config made by configureKernel, and sets up the tree's generated headers.
      await make(['olddefconfig']);
      await make([`-j${cpus().length}`, 'bzImage']);
    } catch (error) {
      if (error instanceof CommandFailedError) {
        // The build tree goes with the temporary directory; its log is kept where the next failed build puts its own.
        await new Promise((resolve) => log.end(resolve));
        const kept = join(cache.dir, 'logs', 'kernel-build.log');
        await mkdir(join(cache.dir, 'logs'), { recursive: true });
        await copyFile(logFile, kept);
        const said = complaints.length > 0 ? complaints.map((l) => `  | ${l}`).join('\n') : lastCompilerLines(error.outputTail);
        throw new TinyxError('E_KERNEL_BUILD', `the kernel ${tree.version} did not build:\n${said}`, { hint: `the whole log: ${kept} (kept until the next failed build)`, cause: error });
      }
      throw error;
    }
    const seconds = Math.round(performance.now() - started) / 1000;
    const countedAfter = ccache && countedBefore ? await ccacheCounters(ccache.env, options.signal) : undefined;
    const compilerCacheUse = countedBefore && countedAfter ? { hits: countedAfter.hits - countedBefore.hits, misses: countedAfter.misses - countedBefore.misses } : undefined;
    await copyFile(join(build, 'arch/x86/boot/bzImage'), join(entry, 'bzImage'));
    // The symbol table is for debuggers; QEMU and Xen load the rest (the PVH note survives stripping).
    await run('objcopy', ['--strip-all', join(build, 'vmlinux'), join(entry, 'vmlinux')], { signal: options.signal });
    await copyFile(join(build, '.config'), join(entry, 'config'));
    // The symbols the stripped vmlinux no longer has: the boot profiler names initcalls with them.
    await copyFile(join(build, 'System.map'), join(entry, 'System.map'));
    const dir = await cache.publish('kernels', key, entry, { source: source.id, version: tree.version, configSha256: config.sha256, compiled, seconds, keptTree: warm, ...(compilerCacheUse ? { compilerCache: compilerCacheUse } : {}) });
    built = true;
    await options.shared?.offer(cache, 'kernels', key);
    return { bzImage: join(dir, 'bzImage'), vmlinux: join(dir, 'vmlinux'), systemMap: join(dir, 'System.map'), config, version: tree.version, cached: false, buildSeconds: seconds, compilerCache: compilerCacheUse, keptTree: warm };
  } finally {
    log.end();
    // A tree whose build failed or was interrupted is in a state nobody knows: the next build starts afresh.
    await kept?.release(built);
    await removeTree(temp);
  }
}

/**
 * Kept build trees: after a kernel builds, its build tree is kept, one per
 * source and platform, and the next kernel of that platform is built in it.
 * Kbuild then compiles only the objects whose text the new config changes
 * (fixdep records, for each object, the options it depends on), and links.
 * The tree stays where it is (`kernel-trees/<key>/tree`): Kbuild builds its
 * tools (objtool) with the tree's absolute path, and in a moved tree it
 * builds them again, and so every object. A build holds the tree through a
 * lock directory naming its pid (taken with mkdir, atomic; a dead holder's
 * lock is taken over); a second build meanwhile uses an empty tree of its own
 * (ccache still serves it). A tree whose build failed or was interrupted is
 * removed. The kernel's bytes do not depend on the tree (same source, same
 * config, fixed build metadata): the build split test compares a kernel built
 * in the kept tree with the same one built from an empty tree.
 */
async function takeKeptTree(cache: Cache, sourceId: string, tree: string): Promise<{ dir: string; warm: boolean; release(keep: boolean): Promise<void> } | undefined> {
  const slot = join(cache.dir, 'kernel-trees', cacheKey('kernel-tree', { source: sourceId, tree }));
  const lock = join(slot, 'lock');
  await mkdir(slot, { recursive: true });
  let abandoned = false;
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) return undefined;
      const holder = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => ''));
      // Held by a live build (or one that is writing its pid right now): not ours.
      if (!holder || processExists(holder)) return undefined;
      // Its holder died without releasing it (killed): the tree may hold half-written objects.
      abandoned = true;
      await removeTree(lock);
    }
  }
  await writeFile(join(lock, 'pid'), String(process.pid));
  const dir = join(slot, 'tree');
  const warm = !abandoned && (await stat(join(dir, '.config')).then(() => true, () => false));
  if (!warm) {
    await removeTree(dir);
    await mkdir(dir);
  }
  return {
    dir,
    warm,
    release: async (keep) => {
      // Not kept: the whole slot goes (a build that finds it gone makes it again).
      await removeTree(keep ? lock : slot);
    },
  };
}

/** What ccache gave a build, as the build's summary and `tinyx kernel build` say it. */
export function compilerCacheSummary(use: { hits: number; misses: number }): string {
  return `${use.hits} of ${use.hits + use.misses} compiles from ccache`;
}

/** ccache's hit and miss counters (`ccache --print-stats`, tab-separated); undefined when it cannot say. */
async function ccacheCounters(env: Record<string, string>, signal: AbortSignal | undefined): Promise<{ hits: number; misses: number } | undefined> {
  const result = await run('ccache', ['--print-stats'], { env, signal, allowFailure: true });
  if (result.exitCode !== 0) return undefined;
  const counters = new Map(result.stdout.split('\n').map((line) => line.split('\t') as [string, string]).map(([k, v]) => [k, Number(v)]));
  const hits = (counters.get('direct_cache_hit') ?? NaN) + (counters.get('preprocessed_cache_hit') ?? NaN);
  const misses = counters.get('cache_miss') ?? NaN;
  return Number.isFinite(hits) && Number.isFinite(misses) ? { hits, misses } : undefined;
}

/** How many files an earlier build of the same tree compiled: the denominator of the progress. */
async function expectedCompileCount(cache: Cache, sourceId: string): Promise<number | undefined> {
  const dir = join(cache.dir, 'kernels');
  let best: number | undefined;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const meta = await cache.readMeta<{ source?: string; compiled?: number }>(join(dir, name)).catch(() => undefined);
    if (meta?.source === sourceId && meta.compiled) best = Math.max(best ?? 0, meta.compiled);
  }
  return best;
}

/** The compiler's complaint without make's own noise. */
function lastCompilerLines(tail: string): string {
  const lines = tail.split('\n').filter((l) => !/^make(\[\d+\])?: /.test(l) && l.trim());
  return lines.slice(-15).map((l) => `  | ${l}`).join('\n');
}

function countEnabled(text: string): number {
  return text.split('\n').filter((l) => /^CONFIG_\w+=/.test(l)).length;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
