import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BUSYBOX_PATH, IMAGE_MADE_PATHS, assembleRoot, type AssembledRoot } from './assemble/assemble-root.js';
import { buildBusybox, type BuiltBusybox } from './assemble/busybox.js';
import { INIT_APPLETS } from './assemble/init-script.js';
import { compileRelay, type LoopbackRelay } from './assemble/relay.js';
import { createBase, hostBaseSpec, type BaseRoot, type BaseSpec } from './base/create-base.js';
import { loadBlacklist, type Blacklist } from './blacklist.js';
import { Cache, defaultCacheDir } from './cache.js';
import { checkOutputDir, makeStagingDir, replaceOutputDir } from './emit/output-dir.js';
import { asNoSpaceError, type WritePlace } from './no-space.js';
import { readDpkgStatus, readPackageFileList } from './dpkg/status.js';
import { TinyxError, throwIfAborted } from './errors.js';
import { checkBuildHost } from './host-check.js';
import { installPackages, type AppLayer } from './install/install-packages.js';
import { composeManifest, type Manifest } from './manifest.js';
import { mount, removeTree } from './mounts.js';
import { OUTPUT_FORMATS, packImage, type OutputFormat, type PackedImage } from './pack/formats.js';
import { COMPRESSIONS, type Compression } from './pack/compressions.js';
import { buildKernel, compilerCacheSummary, configureKernel, type BuiltKernel, type KernelConfig } from './kernel/build-kernel.js';
import type { KernelRequest } from './kernel/fragments.js';
import { isKernelFeature, KERNEL_FEATURES, type KernelFeature } from './kernel-features.js';
import { imageKernelFeatures } from './kernel/image-features.js';
import { kernelSource, type KernelSourceRef } from './kernel/kernel-source.js';
import { SharedCache } from './oci/shared-cache.js';

/** The kernel step's outcome: what was asked, what Kconfig made of it, and the built files (none for 'kernel-config'). */
export interface KernelResult {
  /** The kernel source, by its id; `open()` unpacks it (a kernel and configuration from the cache did not need it). */
  source: KernelSourceRef;
  request: KernelRequest;
  config: KernelConfig;
  built: BuiltKernel | undefined;
}
import { loadRecipe, recipeFromPackage } from './recipe/load-recipe.js';
import type { Recipe } from './recipe/recipe.js';
import { KCONFIG_SYMBOL } from './recipe/recipe-fields.js';
import type { DerivedFrom } from './recipe/recipe-from-unit.js';
import { UNIT_DIRS, recipeFromInstalledUnit, type UnitRecipeRequest } from './recipe/package-unit.js';
import type { RecipeSearchOptions } from './recipe/recipe-search-path.js';
import { locateEntrypoint, planImage, type ImagePlan } from './resolve/plan-image.js';
import { planInstallMade, type InstallMadePlan } from './resolve/plan-install-made.js';
import { DirectoryRootView } from './resolve/root-view.js';
import { resolveInRoot } from './resolve/root-path.js';
import { traceApp, type TraceResult } from './trace/trace-app.js';
import { verifyRoot, type VerifyResult } from './trace/verify-root.js';
import type { InstalledPackage } from './dpkg/status.js';
import { DEFAULT_PLATFORM, PLATFORMS, ROOT_FORMATS, SYSTEM_MAP, isPlatform, bootCmdline, imageXlConfig, run, type Platform } from '@tinyx/image';

export type { Platform };

export interface BuildOptions {
  /**
   * A recipe name ("nginx": NAME.yaml in the first directory of the recipe
   * search path that has one; see `recipeSearch`), a recipe file path, or a
   * recipe object (see recipeFromPackage), or `{ fromUnit }`: the recipe the
   * package's systemd unit amounts to, derived once the package is installed.
   */
  recipe: string | Recipe | { fromUnit: UnitRecipeRequest };
  /**
   * Where recipe names are looked up, in order: `recipeSearch.dirs`,
   * $TINYX_RECIPES (directories separated by ":"), ./tinyx/ and ./recipes/ of
   * the working directory, then the recipes that ship with tinyx.
   */
  recipeSearch?: RecipeSearchOptions;
  /** The image directory to write; default ./out/<name>. */
  outDir?: string;
  /** Default $TINYX_CACHE or ~/.cache/tinyx. */
  cacheDir?: string;
  /** Debian mirror for the base; default the host's own apt source. */
  mirror?: string;
  /** Debian suite for the base; default the host's own. */
  suite?: string;
  format?: OutputFormat;
  /** How the initramfs is compressed; default gzip. */
  compression?: Compression;
  platform?: Platform;
  /** The mtime of every file in the image; default $SOURCE_DATE_EPOCH, else 0. */
  sourceDateEpoch?: number;
  /** Build the image's kernel (default true); false gives a root filesystem only. */
  kernel?: boolean;
  /**
   * The trace pass (default true): the app run in the full install root under
   * strace, and what it used added to the image (reason `traced`), its
   * system calls to the kernel's features, its port to an empty readiness.
   */
  trace?: boolean;
  /** Verify before emitting (default true): the image's own /init run in its root must pass the readiness probe and the check. */
  verify?: boolean;
  /**
   * An app the trace saw listening only at loopback addresses (its package's
   * configuration: redis, memcached, mariadb) is reached through the VM's own
   * address: /init starts tinyx-relay, which forwards each such port to it
   * (default true). In a one-app VM nothing else runs to be a local client,
   * and the VM's network is reached only through what the toolstack publishes,
   * as a container's. False keeps such an app local (and unreachable).
   */
  relayLoopback?: boolean;
  /**
   * Kernel features beyond what the app needs: images built with the same
   * superset share one kernel (one build, one cache entry) whatever each app
   * needs of it.
   */
  kernelFeatures?: readonly KernelFeature[];
  /**
   * Kconfig options to leave out beyond the recipe's kernel.disable, by
   * symbol without CONFIG_ (what `tinyx kernel minimize` tries).
   */
  kernelDisable?: readonly string[];
  /** A kernel tarball (unpacked and patched with kernel/patches, as Debian's linux-source is) or a tree (built as it is, unpatched) instead of Debian's linux-source. */
  kernelSource?: string;
  /**
   * Registry repositories (`REGISTRY/REPOSITORY`, no tag) to fetch the
   * kernel and its configuration from when the local cache lacks them,
   * in order: a runner with an empty disk then compiles no kernel. See
   * SharedCache.
   */
  cacheFrom?: readonly string[];
  /** A repository to send the kernel and its configuration to (made or found locally), unless it holds them. */
  cacheTo?: string;
  /** The cacheFrom and cacheTo registries speak plain HTTP (localhost, one's own network). */
  cacheInsecure?: boolean;
  /**
   * What to make: the whole image directory (default), or only the kernel
   * ('kernel'), or only its configuration ('kernel-config'), for `tinyx kernel`;
   * or only the recipe derived from a package's unit ('recipe'), for `tinyx recipe init`.
   */
  goal?: 'image' | 'kernel' | 'kernel-config' | 'recipe';
  blacklistsDir?: string;
  signal?: AbortSignal;
  /** Progress: steps starting and ending, and the output lines of long commands. */
  onEvent?: (event: BuildEvent) => void;
}

export type StepId = 'load' | 'base' | 'install' | 'trace' | 'resolve' | 'assemble' | 'verify' | 'kernel' | 'pack' | 'emit';

export type BuildEvent =
  | { type: 'step-start'; step: StepId; title: string }
  | { type: 'step-end'; step: StepId; title: string; seconds: number; cached: boolean; summary: string | undefined }
  | { type: 'output'; step: StepId; line: string }
  /** Something the user should see whatever the verbosity: a damaged cache entry rebuilt, what a killed build left removed. */
  | { type: 'notice'; step: StepId; line: string }
  /** Countable progress of a long step: the kernel's files compiled so far (`total` from an earlier build of the same tree). */
  | { type: 'progress'; step: StepId; done: number; total: number | undefined; unit: string };

export interface StepResult {
  cached?: boolean;
  /** One line for the progress display: "nginx 1.22.1, 31 packages". */
  summary?: string;
}

/** What a step made, and what the progress display shows of it (a step that only derives a recipe makes nothing to keep). */
interface StepOutcome<T> extends StepResult {
  result?: T;
}

/** Each step's typed result, kept by the build under the step's id. */
interface StageResults {
  load: { blacklist: Blacklist; baseSpec: BaseSpec };
  base: BaseRoot;
  install: AppLayer;
  trace: TraceResult;
  resolve: { plan: ImagePlan; made: InstallMadePlan };
  assemble: AssembledRoot;
  verify: VerifyResult;
  kernel: KernelResult;
  pack: PackedImage;
  emit: Manifest;
}

/** BuildOptions with every default filled in: worked out once, when the build is made. */
interface ResolvedOptions {
  goal: NonNullable<BuildOptions['goal']>;
  format: OutputFormat;
  /** The root filesystem's compression as the kernel must unpack it: the format's default unless asked; null for none. */
  compression: Compression | null;
  platform: Platform;
  kernel: boolean;
  trace: boolean;
  verify: boolean;
  kernelFeatures: readonly KernelFeature[];
  sourceDateEpoch: number;
}

function resolveOptions(options: BuildOptions): ResolvedOptions {
  const platform = options.platform ?? DEFAULT_PLATFORM;
  // An unknown platform is refused by the load step; until then, the default format of the default platform.
  // A compression asked for alone is the initramfs's: the other formats are not compressed.
  const format = options.format ?? (options.compression !== undefined ? 'initramfs' : (isPlatform(platform) ? PLATFORMS[platform] : PLATFORMS[DEFAULT_PLATFORM]).defaultFormat);
  // An unknown format is refused by the load step, with the formats named; until then, no default to look up.
  const chosen = options.compression ?? (Object.hasOwn(OUTPUT_FORMATS, format) ? OUTPUT_FORMATS[format].defaultCompression : null);
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  return {
    goal: options.goal ?? 'image',
    format,
    compression: chosen === 'none' || chosen === null ? null : chosen,
    platform,
    kernel: options.kernel !== false,
    trace: options.trace !== false,
    verify: options.verify !== false,
    kernelFeatures: options.kernelFeatures ?? [],
    sourceDateEpoch: options.sourceDateEpoch ?? (fromEnv && /^\d+$/.test(fromEnv) ? Number(fromEnv) : 0),
  };
}

/** One named step of the pipeline; the CLI shows each as a task, a script can run them in a loop. */
export interface BuildStep {
  id: StepId;
  title: string;
  run(): Promise<StepResult>;
}

const ARCH_TRIPLETS: Record<string, string> = {
  amd64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  i386: 'i386-linux-gnu',
  armhf: 'arm-linux-gnueabihf',
  ppc64el: 'powerpc64le-linux-gnu',
  s390x: 's390x-linux-gnu',
  riscv64: 'riscv64-linux-gnu',
};

/**
 * One build: the ordered steps over one context. `build()` runs them in a
 * loop; the CLI runs each as a listr2 task. `cleanup()` must run on every
 * path (it unmounts and removes temporary trees); `manifest` is the result.
 */
export class Build {
  readonly steps: BuildStep[];
  readonly cache: Cache;
  private readonly options: BuildOptions;
  private readonly signal: AbortSignal | undefined;
  private readonly seconds: Record<string, number> = {};
  private readonly cachedSteps: string[] = [];
  private readonly cleanups: (() => Promise<void>)[] = [];
  private current: StepId = 'load';

  /** What each step made, read back with need(), which names a step that has not run (trace and verify can be skipped: read as `done.trace`). */
  private readonly done: Partial<StageResults> = {};
  /** The options with every default filled in, once. */
  private readonly resolved: ResolvedOptions;
  /** The recipe as it stands: loaded, then derived from the package's unit (--package), then given the traced port as readiness. */
  private recipeNow?: Recipe;
  /** Set for a recipe derived from the package's systemd unit: what it took from where. */
  private derived?: DerivedFrom;
  private installRoot?: InstallRoot;
  private staging?: string;
  /** The registries of --cache-from and --cache-to, when given (opened by load). */
  private shared: SharedCache | undefined;
  /** The loopback ports /init relays the VM's address to (see BuildOptions.relayLoopback). */
  private relay: LoopbackRelay[] = [];
  /** The image's BusyBox, once the assemble step has it. */
  private busybox: BuiltBusybox | undefined;
  /** The image directory, known once the recipe is loaded. */
  outDir?: string;

  constructor(options: BuildOptions) {
    this.options = options;
    this.signal = options.signal;
    this.cache = new Cache(resolve(options.cacheDir ?? defaultCacheDir()), (entry, problem) =>
      this.notice(`cache: ${entry} was damaged (${problem}); removed, building it again`),
    );
    this.resolved = resolveOptions(options);
    const { goal } = this.resolved;
    // Each step's result is kept under its id, typed by StageResults.
    const step = <K extends StepId>(id: K, title: string, run: () => Promise<StepOutcome<StageResults[K]>>): BuildStep => ({
      id,
      title,
      run: async () => {
        const { result, ...shown } = await run();
        if (result !== undefined) this.done[id] = result;
        return shown;
      },
    });
    const all: BuildStep[] = [
      step('load', 'Load the recipe and check the host', () => this.load()),
      step('base', 'Bootstrap the Debian base', () => this.bootstrapBase()),
      step('install', 'Install the packages', () => this.install()),
      step('trace', 'Trace the app in the full install', () => this.trace()),
      step('resolve', 'Resolve the runtime closure', () => this.resolveClosure()),
      step('assemble', 'Assemble the root filesystem', () => this.assemble()),
      step('verify', "Verify the app starts in the image's root", () => this.verify()),
      step('kernel', goal === 'kernel-config' ? 'Configure the kernel' : 'Build the kernel', () => this.kernel()),
      step('pack', 'Pack the image', () => this.pack()),
      step('emit', 'Write the image directory', () => this.emit()),
    ];
    const wanted: Record<ResolvedOptions['goal'], StepId[]> = {
      image: all.map((step) => step.id).filter((id) => id !== 'kernel' || this.resolved.kernel),
      // The trace runs for a kernel too: the system calls it saw are features of the image's kernel.
      kernel: ['load', 'base', 'install', 'trace', 'resolve', 'kernel'],
      'kernel-config': ['load', 'base', 'install', 'trace', 'resolve', 'kernel'],
      // A recipe from a unit takes its readiness port from the trace.
      recipe: ['load', 'base', 'install', 'trace', 'resolve'],
    };
    const skipped = new Set<StepId>([...(this.resolved.trace ? [] : (['trace'] as const)), ...(this.resolved.verify ? [] : (['verify'] as const))]);
    this.steps = all.filter((step) => wanted[goal].includes(step.id) && !skipped.has(step.id));
  }

  /** Runs one step: timing, progress events, and a cancellation check before it starts. */
  async runStep(step: BuildStep): Promise<StepResult> {
    throwIfAborted(this.signal);
    this.current = step.id;
    this.options.onEvent?.({ type: 'step-start', step: step.id, title: step.title });
    const started = performance.now();
    const result = await step.run().catch(async (error: unknown) => {
      throw await asNoSpaceError(error, step.id, this.writePlaces());
    });
    const seconds = Math.round((performance.now() - started) / 10) / 100;
    this.seconds[step.id] = seconds;
    if (result.cached) this.cachedSteps.push(step.id);
    this.options.onEvent?.({ type: 'step-end', step: step.id, title: step.title, seconds, cached: !!result.cached, summary: result.summary });
    return result;
  }

  /** Where the build writes: for the message when one of them fills up. */
  private writePlaces(): WritePlace[] {
    const places: WritePlace[] = [{ label: 'the cache', path: this.cache.dir }];
    if (this.outDir) places.push({ label: "the output's directory", path: dirname(this.outDir) });
    return places;
  }

  /** Undoes every mount and removes every temporary tree, newest first. Safe to call twice. */
  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    while (this.cleanups.length > 0) {
      try {
        await this.cleanups.pop()!();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  /** The image's manifest, once the emit step has run. */
  get manifest(): Manifest {
    return this.need('emit');
  }

  /** A step's result; a step that has not run (a bug in the step list) is named. */
  private need<K extends StepId>(id: K): StageResults[K] {
    const result = this.done[id];
    if (result === undefined) throw new TinyxError('E_INTERNAL', `the ${id} step has not run`);
    return result as StageResults[K];
  }

  /** The recipe as it stands (see recipeNow). */
  private get recipe(): Recipe {
    if (!this.recipeNow) throw new TinyxError('E_INTERNAL', 'the recipe is not loaded');
    return this.recipeNow;
  }

  /** The image directory (load resolves it). */
  private get out(): string {
    if (!this.outDir) throw new TinyxError('E_INTERNAL', 'the output directory is not known before load');
    return this.outDir;
  }

  private output = (line: string): void => {
    this.options.onEvent?.({ type: 'output', step: this.current, line });
  };

  private notice = (line: string): void => {
    this.options.onEvent?.({ type: 'notice', step: this.current, line });
  };

  private async load(): Promise<StepOutcome<StageResults['load']>> {
    const { options } = this;
    const asked = options.recipe;
    // A unit's recipe is known only once the package is installed: until then, its name and packages.
    const recipe = typeof asked === 'string' ? await loadRecipe(asked, options.recipeSearch) : 'fromUnit' in asked ? unitRecipePlaceholder(asked.fromUnit) : asked;
    this.recipeNow = recipe;
    const blacklist = await loadBlacklist(options.blacklistsDir);
    const { format } = this.resolved;
    if (!Object.hasOwn(OUTPUT_FORMATS, format)) {
      throw new TinyxError('E_FORMAT', `unknown output format "${format}"`, { kind: 'user', hint: `formats: ${Object.keys(OUTPUT_FORMATS).join(', ')}` });
    }
    for (const symbol of options.kernelDisable ?? []) {
      if (!KCONFIG_SYMBOL.test(symbol)) throw new TinyxError('E_KERNEL_CONFIG', `kernelDisable: "${symbol}" is not a Kconfig symbol`, { kind: 'user', hint: 'name options as a .config does, without CONFIG_: TMPFS, SIGNALFD' });
    }
    for (const feature of options.kernelFeatures ?? []) {
      if (!isKernelFeature(feature)) throw new TinyxError('E_FEATURE', `unknown kernel feature "${feature}"`, { kind: 'user', hint: `features: ${Object.keys(KERNEL_FEATURES).join(', ')}` });
    }
    const compression = options.compression;
    if (compression !== undefined && !Object.hasOwn(COMPRESSIONS, compression)) {
      throw new TinyxError('E_FORMAT', `unknown compression "${compression}"`, { kind: 'user', hint: `compressions: ${Object.keys(COMPRESSIONS).join(', ')}` });
    }
    if (compression !== undefined && compression !== 'none' && OUTPUT_FORMATS[format].defaultCompression === null) {
      throw new TinyxError('E_FORMAT', `--compression ${compression}: --format ${format} is not compressed`, { kind: 'user', hint: `drop --compression, or use --format initramfs --compression ${compression}` });
    }
    // What builds killed before they could clean up left in the cache (unmounted, removed).
    for (const name of await this.cache.sweepStale()) this.notice(`cache: removed tmp/${name}, left by a build that no longer runs`);
    await checkBuildHost({ kernel: this.steps.some((step) => step.id === 'kernel'), kernelSource: options.kernelSource, compression });
    // The references are checked now, before any work; the registries are first asked in the kernel step.
    this.shared = await SharedCache.open({ from: options.cacheFrom, to: options.cacheTo, insecure: options.cacheInsecure, signal: this.signal, note: this.notice });
    const baseSpec = await hostBaseSpec({ mirror: options.mirror, suite: options.suite });
    const { suite, architecture } = baseSpec;
    this.outDir = resolve(options.outDir ?? join('out', recipe.name));
    // Refused before any work: the output path must be new, empty or an image tinyx wrote.
    if (this.resolved.goal === 'image') await checkOutputDir(this.outDir);
    return { result: { blacklist, baseSpec }, summary: `${recipe.name}: ${recipe.packages.join(' ')} (${suite}, ${architecture})` };
  }

  private async bootstrapBase(): Promise<StepOutcome<BaseRoot>> {
    const { baseSpec } = this.need('load');
    const base = await createBase(this.cache, baseSpec, { signal: this.signal, onLine: this.output });
    return { result: base, cached: base.cached, summary: `${baseSpec.suite} minbase from ${baseSpec.mirror}` };
  }

  private async install(): Promise<StepOutcome<AppLayer>> {
    const { packages, source } = this.recipe;
    const layer = await installPackages(this.cache, this.need('base'), packages, { recipeFile: source, signal: this.signal, onLine: this.output });
    return { result: layer, cached: layer.cached, summary: packages.join(' ') };
  }

  /**
   * The install root, mounted once: a read-only view of base + app layer (two
   * lower directories and no upper), its dpkg status and file lists, and the
   * recipe derived from the package's unit when that was asked for.
   */
  private async openInstallRoot(): Promise<InstallRoot> {
    if (this.installRoot) return this.installRoot;
    const temp = await this.cache.makeTemp('root');
    this.cleanups.push(() => removeTree(temp));
    const root = join(temp, 'root');
    await mkdir(root);
    await mount(['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${this.need('install').upper}:${this.need('base').root}`, root], this.signal);

    const installed = await readDpkgStatus(join(root, 'var/lib/dpkg/status'));
    const fileLists = new Map<string, string[]>();
    const listedBy = new Map<string, string>();
    for (const pkg of installed) {
      const list = await readPackageFileList(join(root, 'var/lib/dpkg/info'), pkg);
      fileLists.set(pkg.name, list);
      for (const path of list) listedBy.set(path, pkg.name);
    }
    const view = new DirectoryRootView(root, this.signal);
    const asked = this.options.recipe;
    if (typeof asked === 'object' && 'fromUnit' in asked) {
      const pkg = installed.find((p) => p.name === asked.fromUnit.package.replace(/:.*$/, ''));
      const derived = await recipeFromInstalledUnit(view, asked.fromUnit, pkg ? (fileLists.get(pkg.name) ?? []) : [], (unit) => this.wantedBy(root, view, unit));
      this.recipeNow = derived.recipe;
      this.derived = derived.derivedFrom;
      this.output(`recipe from ${derived.derivedFrom.unit}: ${derived.recipe.entrypoint.cmd.join(' ')} (as ${derived.recipe.entrypoint.user})`);
      for (const f of derived.derivedFrom.fields) this.output(`  ${f.key}=${f.value} -> ${f.became}`);
      for (const n of derived.derivedFrom.notCarried) this.output(`  ${n.key}=${n.value}: not carried over (${n.why})`);
    }
    this.installRoot = { root, view, installed, fileLists, listedBy };
    return this.installRoot;
  }

  /**
   * The units `unit` wants in the install root, as systemd would see them at
   * boot: its `.wants` directories, and those the installed packages'
   * generators make (postgresql-common's makes postgresql.service want
   * postgresql@15-main). Each generator runs chrooted in the read-only root,
   * in a mount namespace of its own with a tmpfs on its /run for its output.
   */
  private async wantedBy(root: string, view: DirectoryRootView, unit: string): Promise<string[]> {
    const wanted: string[] = [];
    for (const dir of UNIT_DIRS) wanted.push(...(await view.readDir(`${dir}/${unit}.wants`).catch(() => [] as string[])));
    // By name: /lib is /usr/lib in a merged-/usr root, and a generator is run once.
    const generators = new Map<string, string>();
    for (const dir of ['/usr/lib/systemd/system-generators', '/lib/systemd/system-generators']) {
      for (const name of await view.readDir(dir).catch(() => [] as string[])) if (!generators.has(name)) generators.set(name, `${dir}/${name}`);
    }
    for (const generator of generators.values()) {
      const script = 'mount -t tmpfs tinyx-generator "$1/run" && mkdir "$1/run/n" "$1/run/e" "$1/run/l" && chroot "$1" "$2" /run/n /run/e /run/l >&2 && for d in n e l; do ls "$1/run/$d/$3.wants" 2>/dev/null || true; done';
      const result = await run('unshare', ['--mount', '--fork', 'sh', '-c', script, 'sh', root, generator, unit], { signal: this.signal, allowFailure: true });
      if (result.exitCode !== 0) this.output(`generator ${generator} failed in the install root (exit ${result.exitCode}): ${result.stderr.split('\n').pop() ?? ''}`);
      else wanted.push(...result.stdout.split('\n').filter(Boolean));
    }
    return [...new Set(wanted)];
  }

  /** The trace pass: what the app really uses, from a run in the full install root (see traceApp). */
  private async trace(): Promise<StepOutcome<TraceResult>> {
    const { view, fileLists, listedBy } = await this.openInstallRoot();
    const { recipe } = this;
    // A --cmd that names nothing installed is the user's error, said as such before anything runs.
    await locateEntrypoint(view, recipe, fileLists);
    const scratch = await this.cache.makeTemp('trace');
    let traced: TraceResult;
    try {
      traced = await traceApp({
        lowerDirs: [this.need('install').upper, this.need('base').root],
        view,
        scratch,
        recipe,
        provided: IMAGE_MADE_PATHS,
        packaged: (path) => listedBy.has(path),
        signal: this.signal,
        onLine: this.output,
      });
    } finally {
      await removeTree(scratch);
    }
    // No readiness probe: the port the app listened on is one.
    const [first] = traced.listening;
    if (recipe.readiness === null && first !== undefined) {
      const port = traced.listening.find((p) => !traced.loopbackOnly.some((l) => l.port === p)) ?? first;
      this.recipeNow = { ...recipe, readiness: { tcp: { port } } };
      this.derived?.fields.push({ key: 'trace', value: `listened on ${traced.listening.join(', ')}`, became: `readiness tcp ${port}` });
      this.output(`readiness: tcp ${port}, the port it listened on`);
    }
    for (const p of traced.paths) this.output(`  ${p.path}: ${p.reason}`);
    const where = traced.loopbackOnly.map((p) => `${p.address}:${p.port}`).join(', ');
    if (traced.loopbackOnly.length > 0 && traced.loopbackOnly.length === traced.listening.length && this.options.relayLoopback !== false) {
      // It serves nothing beyond loopback: the VM's address is relayed to it (a port it also has at loopback beside a public one is an admin port, and stays local).
      this.relay = traced.loopbackOnly;
      this.notice(
        `${recipe.name} listens only at ${where} (its configuration): the image relays the VM's own address to it (tinyx-relay), so whoever reaches the VM's port ${traced.loopbackOnly.map((p) => p.port).join(', ')} reaches it, as a container's port; --no-relay-loopback keeps it local`,
      );
    } else if (traced.loopbackOnly.length > 0) {
      this.notice(`${recipe.name} listens on ${where} at a loopback address only (its configuration says so): nothing outside the VM can reach it there; a recipe fixup can change the address`);
    }
    const summary = `${traced.outcome.replace(/ \(probe:.*$/, '')}; ${traced.paths.length} paths used, ${traced.features.size} kernel features`;
    if (this.resolved.goal === 'recipe') return { result: traced, summary: `from ${this.derived?.unit ?? recipe.source}: ${this.recipe.entrypoint.cmd.join(' ')}; ${summary}` };
    return { result: traced, summary };
  }

  private async resolveClosure(): Promise<StepOutcome<StageResults['resolve']>> {
    const { view, installed, fileLists } = await this.openInstallRoot();
    // Only the recipe is wanted (tinyx recipe init): opening the install root derived it.
    if (this.resolved.goal === 'recipe') return { summary: `from ${this.derived?.unit ?? this.recipe.source}: ${this.recipe.entrypoint.cmd.join(' ')}` };
    const { baseSpec, blacklist } = this.need('load');
    const multiarch = ARCH_TRIPLETS[baseSpec.architecture];
    if (!multiarch) throw new TinyxError('E_ARCH', `unsupported architecture ${baseSpec.architecture}`);
    const tracedRun = this.done.trace;
    const traced = tracedRun?.paths ?? [];
    const plan = await planImage({
      view,
      recipe: this.recipe,
      installed,
      fileLists,
      blacklist,
      multiarch,
      alwaysInclude: [{ path: BUSYBOX_PATH, reason: "BusyBox, /init's shell and tools" }],
      traced: traced.filter((p) => p.kind === 'file'),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    // What the maintainer scripts made for the kept packages, read from the app layer itself.
    const base = this.need('base');
    const made = await planInstallMade({
      layer: new DirectoryRootView(this.need('install').upper, this.signal),
      view,
      installed,
      fileLists,
      closure: plan.closure,
      planned: plan,
      blacklist,
      base: {
        passwd: await readFile(join(base.root, 'etc/passwd'), 'utf8'),
        group: await readFile(join(base.root, 'etc/group'), 'utf8'),
      },
      ...(this.signal ? { signal: this.signal } : {}),
    });
    // The directories the app listed (nginx's conf.d) and the accounts it switched to, as the trace saw them.
    for (const dir of traced.filter((p) => p.kind === 'dir')) {
      const resolved = await resolveInRoot(view, dir.path);
      if (resolved.node?.kind !== 'dir' || made.directories.some((d) => d.path === resolved.path)) continue;
      const { mode, uid, gid } = resolved.node;
      made.directories.push({ path: resolved.path, mode, uid, gid, reason: dir.reason });
      for (const link of resolved.links) if (!plan.symlinks.has(link.path)) made.symlinks.push({ ...link, reason: `on the way to ${dir.path} (traced)` });
    }
    made.users.push(...(tracedRun?.users ?? []));
    const remade = new Set((tracedRun?.secrets ?? []).map((secret) => secret.path));
    made.leftOut = [...made.leftOut.filter((l) => !remade.has(l.path)), ...(tracedRun?.leftOut ?? [])];
    made.groups.push(...(tracedRun?.groups ?? []));
    const elves = [...plan.files.values()].filter((f) => f.elf).length;
    const entries = made.files.length + made.symlinks.length + made.directories.length;
    return { result: { plan, made }, summary: `${plan.files.size} files (${elves} ELF) from ${plan.packages.length} packages; ${entries} entries and ${made.users.length} accounts the install made` };
  }

  private async assemble(): Promise<StepOutcome<AssembledRoot>> {
    let relay: { binary: Uint8Array; ports: LoopbackRelay[] } | undefined;
    if (this.relay.length > 0) {
      const scratch = await this.cache.makeTemp('relay');
      try {
        relay = { binary: await compileRelay(scratch, this.signal), ports: this.relay };
      } finally {
        await removeTree(scratch);
      }
    }
    const { plan, made } = this.need('resolve');
    const { root } = await this.openInstallRoot();
    const { baseSpec } = this.need('load');
    const busybox = await buildBusybox(this.cache, { root: this.need('base').root, spec: baseSpec, multiarch: ARCH_TRIPLETS[baseSpec.architecture]! }, INIT_APPLETS, {
      signal: this.signal,
      onLine: this.output,
      onBuild: (source) => this.notice(`building the image's BusyBox (/init's ${INIT_APPLETS.length} applets) from Debian's ${source}, once: it is cached`),
    });
    if (busybox.instead) this.notice(`the mirror no longer serves the source of the base's busybox-static (${busybox.instead}): the image's BusyBox is built from the mirror's newest, ${busybox.source}`);
    this.busybox = busybox;
    const readOnlyRoot = ROOT_FORMATS[this.resolved.format].readOnlyRoot;
    const assembled = await assembleRoot(root, this.recipe, plan, made, this.done.trace?.secrets, {
      relay,
      readOnlyRoot,
      busybox: { path: busybox.path, reason: `BusyBox with /init's ${busybox.applets.length} applets, built from ${busybox.source} (musl, static)` },
      ...(this.done.trace ? { wroteIn: this.done.trace.wroteIn } : {}),
    });
    const bytes = assembled.files.reduce((sum, f) => sum + f.size, 0);
    const traced = assembled.writable?.filter((w) => w.reason).map((w) => w.path) ?? [];
    const ours = `BusyBox ${formatBytes(busybox.bytes)}${busybox.cached ? ' (cached)' : ' (built)'}`;
    return { result: assembled, summary: `${assembled.entries.length} entries, ${formatBytes(bytes)} of files (${ours})${traced.length ? `; writable, as the trace saw the app write there: ${traced.join(', ')}` : ''}` };
  }

  /** Verify before emitting: the cut root, written out, must start the app and pass its probe and check (see verifyRoot). */
  private async verify(): Promise<StepOutcome<VerifyResult>> {
    const { view, listedBy } = await this.openInstallRoot();
    const { plan } = this.need('resolve');
    // By the path dpkg lists, or by the resolved path the plan knows (/usr/lib/... for a listed /lib/...).
    const owner = (path: string): string | undefined => listedBy.get(path) ?? plan.files.get(path)?.package;
    const scratch = await this.cache.makeTemp('verify');
    let verified: VerifyResult;
    try {
      verified = await verifyRoot({ entries: this.need('assemble').entries, scratch, recipe: this.recipe, view, owner, relay: this.relay, readOnlyRoot: ROOT_FORMATS[this.resolved.format].readOnlyRoot, signal: this.signal });
    } finally {
      await removeTree(scratch);
    }
    return { result: verified, summary: `${verified.outcome}${verified.check ? `; check: ${verified.check}` : ''}` };
  }

  /** The kernel: its features (declared + inferred), its configuration, and unless only that is wanted, the build. */
  private async kernel(): Promise<StepOutcome<KernelResult>> {
    const { root } = await this.openInstallRoot();
    const needed = await imageKernelFeatures(root, this.need('resolve').plan, this.recipe.kernel.features, this.done.trace?.features, this.signal);
    const extra = this.resolved.kernelFeatures.filter((f) => !needed.has(f)).map((f): [KernelFeature, string[]] => [f, ['asked for the build (kernelFeatures)']]);
    const features = new Map([...needed, ...extra].sort(([a], [b]) => (a < b ? -1 : 1)));
    const { platform, compression } = this.resolved;
    const source = await kernelSource(this.cache, this.options.kernelSource, this.signal);
    const request: KernelRequest = { platform, features, format: this.resolved.format, decompressor: compression ? COMPRESSIONS[compression].kernelSymbol : null, disable: this.recipe.kernel.disable, alsoDisable: this.options.kernelDisable };
    const config = await configureKernel(this.cache, source, request, { signal: this.signal, shared: this.shared });
    if (this.resolved.goal === 'kernel-config') {
      return { result: { source, request, config, built: undefined }, cached: config.cached, summary: `${config.enabled} options for ${platform}` };
    }
    const built = await buildKernel(this.cache, source, config, {
      signal: this.signal,
      shared: this.shared,
      tree: platform,
      sourceDateEpoch: this.resolved.sourceDateEpoch,
      onProgress: ({ compiled, expected }) => this.options.onEvent?.({ type: 'progress', step: 'kernel', done: compiled, total: expected, unit: 'files compiled' }),
    });
    if (this.resolved.goal !== 'kernel') {
      const staging = await this.stagingDir();
      await copyFile(built.bzImage, join(staging, 'vmlinuz'));
      if (hasVmlinux(platform)) await copyFile(built.vmlinux, join(staging, 'vmlinux'));
      await copyFile(built.systemMap, join(staging, SYSTEM_MAP));
      await writeFile(join(staging, 'kernel.config'), config.text);
    }
    const size = (await stat(built.bzImage)).size;
    // Said once, when the configuration is first made; the manifest keeps it (kernel.couldNotDisable).
    const stuck = !config.cached && config.stuckOn.length > 0 ? `; could not switch off ${config.stuckOn.map((s) => s.symbol).join(', ')}` : '';
    const reused = built.fetchedFrom ? `; from ${built.fetchedFrom}` : built.compilerCache ? `; ${compilerCacheSummary(built.compilerCache)}` : '';
    return { result: { source, request, config, built }, cached: built.cached, summary: `Linux ${built.version} for ${platform}: bzImage ${formatBytes(size)}, ${config.enabled} options${stuck}${reused}` };
  }

  /** For `tinyx recipe init`: the recipe derived from the package's unit, and what it took from where. */
  get derivedRecipe(): { recipe: Recipe; derivedFrom: DerivedFrom } {
    if (!this.derived) throw new TinyxError('E_INTERNAL', 'no recipe was derived from a unit');
    return { recipe: this.recipe, derivedFrom: this.derived };
  }

  /** What `tinyx kernel` shows: the source, the request with each option's origin, the final config, the built files. */
  get kernelOutcome(): KernelResult {
    return this.need('kernel');
  }

  /** The new image directory, built beside the old one and swapped in by emit (made once, removed by cleanup). */
  private async stagingDir(): Promise<string> {
    if (this.staging) return this.staging;
    const staging = await makeStagingDir(this.out, this.notice);
    this.cleanups.push(() => removeTree(staging));
    this.staging = staging;
    return staging;
  }

  private async pack(): Promise<StepOutcome<PackedImage>> {
    const staging = await this.stagingDir();
    const packed = await packImage(this.need('assemble').entries, this.resolved.format, staging, {
      mtime: this.resolved.sourceDateEpoch,
      compression: this.options.compression,
      store: this.cache.compressedStore(),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    // A disk (erofs) is read page by page, never unpacked: its files' bytes are what it holds (as the CLI's summary says).
    const files = this.need('assemble').files.reduce((sum, f) => sum + f.size, 0);
    const inside = ROOT_FORMATS[this.resolved.format].boots === 'disk' ? `${formatBytes(files)} of files` : `${formatBytes(packed.uncompressedBytes)} unpacked`;
    return { result: packed, cached: packed.cached, summary: `${packed.fileName}: ${formatBytes(packed.bytes)} (${inside})` };
  }

  private async emit(): Promise<StepOutcome<Manifest>> {
    const { recipe, out } = this;
    const { platform, format, sourceDateEpoch } = this.resolved;
    const { plan, made } = this.need('resolve');
    const packed = this.need('pack');
    const staging = await this.stagingDir();
    const kernel = this.done.kernel;
    const built = kernel?.built;
    const kernelFiles = built
      ? { result: kernel, built, bytes: (await stat(built.bzImage)).size, vmlinuxBytes: hasVmlinux(platform) ? (await stat(built.vmlinux)).size : null }
      : undefined;
    // Xen images get their xl configuration, with the paths the image will have once swapped in.
    const xlConfig = kernelFiles && PLATFORMS[platform].xlConfig ? `${recipe.name}.xl.cfg` : null;
    const rootFormat = ROOT_FORMATS[format];
    const cmdline = bootCmdline(rootFormat, PLATFORMS[platform]);
    if (xlConfig) await writeFile(join(staging, xlConfig), imageXlConfig({ name: recipe.name, platform, dir: out, rootfs: packed.fileName, rootAs: rootFormat.boots ?? 'initrd', cmdline }));
    const { baseSpec } = this.need('load');
    const manifest = composeManifest({
      recipe,
      derivedFrom: this.derived,
      platform,
      format,
      cmdline,
      plan,
      made,
      assembled: this.need('assemble'),
      packed,
      trace: this.done.trace,
      verify: this.done.verify,
      relay: this.relay,
      kernel: kernelFiles,
      xlConfig,
      build: {
        tinyx: await tinyxVersion(),
        sourceDateEpoch,
        suite: baseSpec.suite,
        mirror: baseSpec.mirror,
        architecture: baseSpec.architecture,
        seconds: { ...this.seconds },
        cached: [...this.cachedSteps],
        tools: await this.toolVersions(),
        finishedAt: new Date().toISOString(),
      },
    });
    await writeFile(join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

    // Swap the new directory in (checked again: only tinyx's own output is ever replaced).
    const { leftBehind } = await replaceOutputDir(staging, out);
    return { result: manifest, summary: leftBehind ? `${out} (the old image's directory kept files tinyx did not write: ${leftBehind})` : out };
  }

  private async toolVersions(): Promise<Record<string, string>> {
    const firstLine = async (cmd: string, args: string[]): Promise<string> =>
      (await run(cmd, args, { allowFailure: true }).catch(() => ({ stdout: 'unknown' }))).stdout.split('\n')[0] ?? 'unknown';
    const base = await this.cache.readMeta<{ debootstrap?: string }>(dirname(this.need('base').root)).catch(() => ({ debootstrap: undefined }));
    return {
      node: process.version,
      debootstrap: base.debootstrap ?? 'unknown',
      objdump: await firstLine('objdump', ['--version']),
      busybox: this.busybox ? `${this.busybox.source}, ${this.busybox.applets.length} applets, static (${this.busybox.compiler}, musl)` : 'unknown',
      ...(this.done.kernel ? { gcc: await firstLine('gcc', ['--version']), make: await firstLine('make', ['--version']) } : {}),
    };
  }
}

/** The install root as the trace, resolve and verify steps read it. */
interface InstallRoot {
  root: string;
  view: DirectoryRootView;
  installed: InstalledPackage[];
  fileLists: Map<string, string[]>;
  /** The package dpkg lists each path under (as listed, not resolved). */
  listedBy: Map<string, string>;
}

/** The name and packages of a recipe still to be derived from a unit: enough for the load and install steps. */
function unitRecipePlaceholder(request: UnitRecipeRequest): Recipe {
  const recipe = recipeFromPackage({ package: request.package, cmd: '/bin/false', name: request.name });
  return { ...recipe, entrypoint: { ...recipe.entrypoint, cmd: [] }, source: `--package ${request.package} (its systemd unit)` };
}

export function createBuild(options: BuildOptions): Build {
  return new Build(options);
}

/**
 * Builds an image directory from a recipe and returns its manifest.
 *
 * ```ts
 * import { build } from '@tinyx/builder';
 * const manifest = await build({ recipe: 'nginx', onEvent: (e) => console.log(e) });
 * console.log(manifest.sizes.initrd);
 * ```
 */
export async function build(options: BuildOptions): Promise<Manifest> {
  const run = createBuild(options);
  try {
    for (const step of run.steps) await run.runStep(step);
  } finally {
    await run.cleanup();
  }
  return run.manifest;
}

let cachedVersion: string | undefined;
async function tinyxVersion(): Promise<string> {
  cachedVersion ??= (JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cachedVersion;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}


/** Whether the platform's image carries the ELF kernel beside the bzImage (PLATFORMS). */
function hasVmlinux(platform: Platform): boolean {
  return (PLATFORMS[platform].kernelArtifacts as readonly string[]).includes('vmlinux');
}
