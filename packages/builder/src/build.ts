import { randomBytes } from 'node:crypto';
import { copyFile, lstat, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { BUSYBOX_PATH, IMAGE_MADE_PATHS, assembleRoot, type AssembledRoot } from './assemble/assemble-root.js';
import { compileRelay, type LoopbackRelay } from './assemble/relay.js';
import { createBase, hostBaseSpec, type BaseRoot, type BaseSpec } from './base/create-base.js';
import { loadBlacklist, type Blacklist } from './blacklist.js';
import { Cache, defaultCacheDir, processExists } from './cache.js';
import { checkOutputDir, replaceOutputDir } from './emit/output-dir.js';
import { asNoSpaceError, type WritePlace } from './no-space.js';
import { readDpkgStatus, readPackageFileList } from './dpkg/status.js';
import { TinyxError, throwIfAborted } from './errors.js';
import { checkBuildHost } from './host-check.js';
import { installPackages, type AppLayer } from './install/install-packages.js';
import { MANIFEST_VERSION, type Manifest } from './manifest.js';
import { mount, removeTree } from './mounts.js';
import { OUTPUT_FORMATS, packImage, type OutputFormat } from './pack/formats.js';
import { COMPRESSIONS, type Compression } from './pack/compressions.js';
import { buildKernel, configureKernel, type BuiltKernel, type KernelConfig } from './kernel/build-kernel.js';
import type { KernelRequest } from './kernel/fragments.js';
import { isKernelFeature, KERNEL_FEATURES, type KernelFeature } from './kernel-features.js';
import { imageKernelFeatures } from './kernel/image-features.js';
import { prepareKernelSource, type KernelSource } from './kernel/kernel-source.js';

/** The kernel step's outcome: what was asked, what Kconfig made of it, and the built files (none for 'kernel-config'). */
export interface KernelResult {
  source: KernelSource;
  request: KernelRequest;
  config: KernelConfig;
  built: BuiltKernel | undefined;
}
import { loadRecipe, recipeFromPackage } from './recipe/load-recipe.js';
import type { Recipe } from './recipe/recipe.js';
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
import { DEFAULT_PLATFORM, IMAGE_CMDLINE, PLATFORMS, imageXlConfig, run, type Platform } from '@tinyx/image';

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
  /** A kernel tree or tarball instead of Debian's linux-source. */
  kernelSource?: string;
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

  private recipe?: Recipe;
  /** Set for a recipe derived from the package's systemd unit: what it took from where. */
  private derived?: DerivedFrom;
  private blacklist?: Blacklist;
  private baseSpec?: BaseSpec;
  private base?: BaseRoot;
  private layer?: AppLayer;
  private installRoot?: InstallRoot;
  private traced?: TraceResult;
  private verified?: VerifyResult;
  private plan?: ImagePlan;
  private made?: InstallMadePlan;
  private assembled?: AssembledRoot;
  private staging?: string;
  /** The loopback ports /init relays the VM's address to (see BuildOptions.relayLoopback). */
  private relay: LoopbackRelay[] = [];
  private packed?: Awaited<ReturnType<typeof packImage>>;
  private kernelResult?: KernelResult;
  private result?: Manifest;
  /** The image directory, known once the recipe is loaded. */
  outDir?: string;

  constructor(options: BuildOptions) {
    this.options = options;
    this.signal = options.signal;
    this.cache = new Cache(resolve(options.cacheDir ?? defaultCacheDir()), (entry, problem) =>
      this.notice(`cache: ${entry} was damaged (${problem}); removed, building it again`),
    );
    const goal = options.goal ?? 'image';
    const all: BuildStep[] = [
      { id: 'load', title: 'Load the recipe and check the host', run: () => this.load() },
      { id: 'base', title: 'Bootstrap the Debian base', run: () => this.bootstrapBase() },
      { id: 'install', title: 'Install the packages', run: () => this.install() },
      { id: 'trace', title: 'Trace the app in the full install', run: () => this.trace() },
      { id: 'resolve', title: 'Resolve the runtime closure', run: () => this.resolveClosure() },
      { id: 'assemble', title: 'Assemble the root filesystem', run: () => this.assemble() },
      { id: 'verify', title: "Verify the app starts in the image's root", run: () => this.verify() },
      { id: 'kernel', title: goal === 'kernel-config' ? 'Configure the kernel' : 'Build the kernel', run: () => this.kernel() },
      { id: 'pack', title: 'Pack the image', run: () => this.pack() },
      { id: 'emit', title: 'Write the image directory', run: () => this.emit() },
    ];
    const wanted: Record<string, StepId[]> = {
      image: all.map((step) => step.id).filter((id) => id !== 'kernel' || options.kernel !== false),
      // The trace runs for a kernel too: the system calls it saw are features of the image's kernel.
      kernel: ['load', 'base', 'install', 'trace', 'resolve', 'kernel'],
      'kernel-config': ['load', 'base', 'install', 'trace', 'resolve', 'kernel'],
      // A recipe from a unit takes its readiness port from the trace.
      recipe: ['load', 'base', 'install', 'trace', 'resolve'],
    };
    const skipped = new Set<StepId>([...(options.trace === false ? (['trace'] as const) : []), ...(options.verify === false ? (['verify'] as const) : [])]);
    this.steps = all.filter((step) => wanted[goal]!.includes(step.id) && !skipped.has(step.id));
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
    if (!this.result) throw new TinyxError('E_INTERNAL', 'the build has not finished');
    return this.result;
  }

  private output = (line: string): void => {
    this.options.onEvent?.({ type: 'output', step: this.current, line });
  };

  private notice = (line: string): void => {
    this.options.onEvent?.({ type: 'notice', step: this.current, line });
  };

  private async load(): Promise<StepResult> {
    const { options } = this;
    const asked = options.recipe;
    // A unit's recipe is known only once the package is installed: until then, its name and packages.
    this.recipe = typeof asked === 'string' ? await loadRecipe(asked, options.recipeSearch) : 'fromUnit' in asked ? unitRecipePlaceholder(asked.fromUnit) : asked;
    this.blacklist = await loadBlacklist(options.blacklistsDir);
    const format = options.format ?? 'initramfs';
    if (!Object.hasOwn(OUTPUT_FORMATS, format)) {
      throw new TinyxError('E_FORMAT', `unknown output format "${format}"`, { kind: 'user', hint: `formats: ${Object.keys(OUTPUT_FORMATS).join(', ')}` });
    }
    for (const feature of options.kernelFeatures ?? []) {
      if (!isKernelFeature(feature)) throw new TinyxError('E_FEATURE', `unknown kernel feature "${feature}"`, { kind: 'user', hint: `features: ${Object.keys(KERNEL_FEATURES).join(', ')}` });
    }
    const compression = options.compression;
    if (compression !== undefined && !Object.hasOwn(COMPRESSIONS, compression)) {
      throw new TinyxError('E_FORMAT', `unknown compression "${compression}"`, { kind: 'user', hint: `compressions: ${Object.keys(COMPRESSIONS).join(', ')}` });
    }
    // What builds killed before they could clean up left in the cache (unmounted, removed).
    for (const name of await this.cache.sweepStale()) this.notice(`cache: removed tmp/${name}, left by a build that no longer runs`);
    await checkBuildHost({ kernel: this.steps.some((step) => step.id === 'kernel'), kernelSource: options.kernelSource, compression });
    this.baseSpec = await hostBaseSpec({ mirror: options.mirror, suite: options.suite });
    const { suite, architecture } = this.baseSpec;
    this.outDir = resolve(options.outDir ?? join('out', this.recipe.name));
    // Refused before any work: the output path must be new, empty or an image tinyx wrote.
    if ((options.goal ?? 'image') === 'image') await checkOutputDir(this.outDir);
    return { summary: `${this.recipe.name}: ${this.recipe.packages.join(' ')} (${suite}, ${architecture})` };
  }

  private async bootstrapBase(): Promise<StepResult> {
    this.base = await createBase(this.cache, this.baseSpec!, { signal: this.signal, onLine: this.output });
    return { cached: this.base.cached, summary: `${this.baseSpec!.suite} minbase from ${this.baseSpec!.mirror}` };
  }

  private async install(): Promise<StepResult> {
    this.layer = await installPackages(this.cache, this.base!, this.recipe!.packages, {
      recipeFile: this.recipe!.source,
      signal: this.signal,
      onLine: this.output,
    });
    return { cached: this.layer.cached, summary: this.recipe!.packages.join(' ') };
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
    await mount(['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${this.layer!.upper}:${this.base!.root}`, root], this.signal);

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
      this.recipe = derived.recipe;
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
  private async trace(): Promise<StepResult> {
    const { view, fileLists, listedBy } = await this.openInstallRoot();
    const recipe = this.recipe!;
    // A --cmd that names nothing installed is the user's error, said as such before anything runs.
    await locateEntrypoint(view, recipe, fileLists);
    const scratch = await this.cache.makeTemp('trace');
    try {
      this.traced = await traceApp({
        lowerDirs: [this.layer!.upper, this.base!.root],
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
    const traced = this.traced;
    // No readiness probe: the port the app listened on is one.
    if (recipe.readiness === null && traced.listening.length > 0) {
      const port = traced.listening.find((p) => !traced.loopbackOnly.some((l) => l.port === p)) ?? traced.listening[0]!;
      this.recipe = { ...recipe, readiness: { tcp: { port } } };
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
    if (this.options.goal === 'recipe') return { summary: `from ${this.derived?.unit ?? recipe.source}: ${this.recipe!.entrypoint.cmd.join(' ')}; ${summary}` };
    return { summary };
  }

  private async resolveClosure(): Promise<StepResult> {
    const { view, installed, fileLists } = await this.openInstallRoot();
    if (this.options.goal === 'recipe') return { summary: `from ${this.derived!.unit}: ${this.recipe!.entrypoint.cmd.join(' ')}` };
    const multiarch = ARCH_TRIPLETS[this.baseSpec!.architecture];
    if (!multiarch) throw new TinyxError('E_ARCH', `unsupported architecture ${this.baseSpec!.architecture}`);
    const traced = this.traced?.paths ?? [];
    this.plan = await planImage({
      view,
      recipe: this.recipe!,
      installed,
      fileLists,
      blacklist: this.blacklist!,
      multiarch,
      alwaysInclude: [{ path: BUSYBOX_PATH, reason: "BusyBox, /init's shell and tools" }],
      traced: traced.filter((p) => p.kind === 'file'),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    // What the maintainer scripts made for the kept packages, read from the app layer itself.
    this.made = await planInstallMade({
      layer: new DirectoryRootView(this.layer!.upper, this.signal),
      view,
      installed,
      fileLists,
      closure: this.plan.closure,
      planned: this.plan,
      blacklist: this.blacklist!,
      base: {
        passwd: await readFile(join(this.base!.root, 'etc/passwd'), 'utf8'),
        group: await readFile(join(this.base!.root, 'etc/group'), 'utf8'),
      },
      ...(this.signal ? { signal: this.signal } : {}),
    });
    // The directories the app listed (nginx's conf.d) and the accounts it switched to, as the trace saw them.
    for (const dir of traced.filter((p) => p.kind === 'dir')) {
      const resolved = await resolveInRoot(view, dir.path);
      if (resolved.node?.kind !== 'dir' || this.made.directories.some((d) => d.path === resolved.path)) continue;
      const { mode, uid, gid } = resolved.node;
      this.made.directories.push({ path: resolved.path, mode, uid, gid, reason: dir.reason });
      for (const link of resolved.links) if (!this.plan.symlinks.has(link.path)) this.made.symlinks.push({ ...link, reason: `on the way to ${dir.path} (traced)` });
    }
    this.made.users.push(...(this.traced?.users ?? []));
    const remade = new Set((this.traced?.secrets ?? []).map((secret) => secret.path));
    this.made.leftOut = [...this.made.leftOut.filter((l) => !remade.has(l.path)), ...(this.traced?.leftOut ?? [])];
    this.made.groups.push(...(this.traced?.groups ?? []));
    const elves = [...this.plan.files.values()].filter((f) => f.elf).length;
    const made = this.made.files.length + this.made.symlinks.length + this.made.directories.length;
    return { summary: `${this.plan.files.size} files (${elves} ELF) from ${this.plan.packages.length} packages; ${made} entries and ${this.made.users.length} accounts the install made` };
  }

  private async assemble(): Promise<StepResult> {
    let relay: { binary: Uint8Array; ports: LoopbackRelay[] } | undefined;
    if (this.relay.length > 0) {
      const scratch = await this.cache.makeTemp('relay');
      try {
        relay = { binary: await compileRelay(scratch, this.signal), ports: this.relay };
      } finally {
        await removeTree(scratch);
      }
    }
    this.assembled = await assembleRoot(this.installRoot!.root, this.recipe!, this.plan!, this.made!, this.traced?.secrets, relay);
    const bytes = this.assembled.files.reduce((sum, f) => sum + f.size, 0);
    return { summary: `${this.assembled.entries.length} entries, ${formatBytes(bytes)} of files` };
  }

  /** Verify before emitting: the cut root, written out, must start the app and pass its probe and check (see verifyRoot). */
  private async verify(): Promise<StepResult> {
    const { view, listedBy } = await this.openInstallRoot();
    // By the path dpkg lists, or by the resolved path the plan knows (/usr/lib/... for a listed /lib/...).
    const owner = (path: string): string | undefined => listedBy.get(path) ?? this.plan!.files.get(path)?.package;
    const scratch = await this.cache.makeTemp('verify');
    try {
      this.verified = await verifyRoot({ entries: this.assembled!.entries, scratch, recipe: this.recipe!, view, owner, relay: this.relay, signal: this.signal });
    } finally {
      await removeTree(scratch);
    }
    return { summary: `${this.verified.outcome}${this.verified.check ? `; check: ${this.verified.check}` : ''}` };
  }

  /** The kernel: its features (declared + inferred), its configuration, and unless only that is wanted, the build. */
  private async kernel(): Promise<StepResult> {
    const recipe = this.recipe!;
    const needed = await imageKernelFeatures(this.installRoot!.root, this.plan!, recipe.kernel.features, this.traced?.features, this.signal);
    const extra = (this.options.kernelFeatures ?? []).filter((f) => !needed.has(f)).map((f): [KernelFeature, string[]] => [f, ['asked for the build (kernelFeatures)']]);
    const features = new Map([...needed, ...extra].sort(([a], [b]) => (a < b ? -1 : 1)));
    const platform = this.options.platform ?? DEFAULT_PLATFORM;
    const compression = this.compression();
    const source = await prepareKernelSource(this.cache, this.options.kernelSource, this.signal);
    const request: KernelRequest = { platform, features, decompressor: compression ? COMPRESSIONS[compression].kernelSymbol : null };
    const config = await configureKernel(this.cache, source, request, { signal: this.signal });
    if (this.options.goal === 'kernel-config') {
      this.kernelResult = { source, request, config, built: undefined };
      return { cached: config.cached, summary: `${config.enabled} options for ${platform}` };
    }
    const built = await buildKernel(this.cache, source, config, {
      signal: this.signal,
      sourceDateEpoch: this.sourceDateEpoch(),
      onProgress: ({ compiled, expected }) => this.options.onEvent?.({ type: 'progress', step: 'kernel', done: compiled, total: expected, unit: 'files compiled' }),
    });
    this.kernelResult = { source, request, config, built };
    if (this.options.goal !== 'kernel') {
      const staging = await this.stagingDir();
      await copyFile(built.bzImage, join(staging, 'vmlinuz'));
      if (hasVmlinux(platform)) await copyFile(built.vmlinux, join(staging, 'vmlinux'));
      await writeFile(join(staging, 'kernel.config'), config.text);
    }
    const size = (await stat(built.bzImage)).size;
    // Said once, when the configuration is first made; the manifest keeps it (kernel.couldNotDisable).
    const stuck = !config.cached && config.stuckOn.length > 0 ? `; could not switch off ${config.stuckOn.map((s) => s.symbol).join(', ')}` : '';
    return { cached: built.cached, summary: `Linux ${built.version} for ${platform}: bzImage ${formatBytes(size)}, ${config.enabled} options${stuck}` };
  }

  /** For `tinyx recipe init`: the recipe derived from the package's unit, and what it took from where. */
  get derivedRecipe(): { recipe: Recipe; derivedFrom: DerivedFrom } {
    if (!this.derived || !this.recipe) throw new TinyxError('E_INTERNAL', 'no recipe was derived from a unit');
    return { recipe: this.recipe, derivedFrom: this.derived };
  }

  /** What `tinyx kernel` shows: the source, the request with each option's origin, the final config, the built files. */
  get kernelOutcome(): KernelResult {
    if (!this.kernelResult) throw new TinyxError('E_INTERNAL', 'the kernel step has not run');
    return this.kernelResult;
  }

  private compression(): Compression | null {
    const format = this.options.format ?? 'initramfs';
    const fallback = OUTPUT_FORMATS[format].defaultCompression;
    const chosen = this.options.compression ?? fallback;
    return chosen === 'none' || chosen === null ? null : chosen;
  }

  /** The new image directory, built beside the old one and swapped in by emit. */
  private async stagingDir(): Promise<string> {
    if (this.staging) return this.staging;
    const out = this.outDir!;
    await mkdir(dirname(out), { recursive: true });
    // A staging directory beside it from a build killed before its cleanup (its process is gone) is tinyx's own: removed.
    // A `.old` one is the earlier image, moved aside by the swap: when the build was killed before the new one
    // took its place (nothing is at --out), it is put back, not removed.
    const stale = (await readdir(dirname(out)))
      .map((name) => ({ name, match: name.match(new RegExp(`^\\.${escapeRegExp(basename(out))}\\.tmp-(\\d+)-[0-9a-f]+(\\.old)?$`)) }))
      .filter((s) => s.match && Number(s.match[1]) !== process.pid && !processExists(Number(s.match[1])))
      .sort((a, b) => Number(!!b.match![2]) - Number(!!a.match![2]));
    for (const { name, match } of stale) {
      const path = join(dirname(out), name);
      if (match![2] && !(await lstat(out).then(() => true, () => false))) {
        await rename(path, out);
        this.notice(`${out} was moved aside by a build killed during its swap (pid ${match![1]}): put back`);
      } else await removeTree(path);
    }
    const staging = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
    this.cleanups.push(() => removeTree(staging));
    await mkdir(staging);
    this.staging = staging;
    return staging;
  }

  private async pack(): Promise<StepResult> {
    const staging = await this.stagingDir();
    const format = this.options.format ?? 'initramfs';
    this.packed = await packImage(this.assembled!.entries, format, staging, {
      mtime: this.sourceDateEpoch(),
      compression: this.options.compression,
      store: this.cache.compressedStore(),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    const p = this.packed;
    return { cached: p.cached, summary: `${p.fileName}: ${formatBytes(p.bytes)} (${formatBytes(p.uncompressedBytes)} unpacked)` };
  }

  private async emit(): Promise<StepResult> {
    const recipe = this.recipe!;
    const plan = this.plan!;
    const assembled = this.assembled!;
    const packed = this.packed!;
    const format = this.options.format ?? 'initramfs';
    const spec = this.baseSpec!;
    const rootFiles = assembled.files.reduce((sum, f) => sum + f.size, 0);
    const kernel = this.kernelResult;
    const kernelBytes = kernel?.built ? (await stat(kernel.built.bzImage)).size : null;
    const platform = this.options.platform ?? DEFAULT_PLATFORM;
    const vmlinuxBytes = kernel?.built && hasVmlinux(platform) ? (await stat(kernel.built.vmlinux)).size : null;
    // Xen images get their xl configuration, with the paths the image will have once swapped in.
    const xlConfigName = kernel && PLATFORMS[platform].xlConfig ? `${recipe.name}.xl.cfg` : null;
    if (xlConfigName) {
      await writeFile(join(this.staging!, xlConfigName), imageXlConfig({ name: recipe.name, platform, dir: this.outDir!, rootfs: packed.fileName, cmdline: IMAGE_CMDLINE }));
    }
    const manifest: Manifest = {
      manifestVersion: MANIFEST_VERSION,
      name: recipe.name,
      recipe,
      derivedFrom: this.derived ?? null,
      platform,
      format,
      entrypoint: { cmd: [plan.entrypoint, ...recipe.entrypoint.cmd.slice(1)], user: recipe.entrypoint.user, uid: assembled.user.uid, gid: assembled.user.gid },
      readiness: recipe.readiness,
      boot: { cmdline: IMAGE_CMDLINE },
      artifacts: {
        rootfs: packed.fileName,
        kernel: kernel ? 'vmlinuz' : null,
        vmlinux: kernel && hasVmlinux(platform) ? 'vmlinux' : null,
        kernelConfig: kernel ? 'kernel.config' : null,
        xlConfig: xlConfigName,
      },
      compression: packed.compression,
      sizes: {
        kernel: kernelBytes,
        vmlinux: vmlinuxBytes,
        initrd: packed.bytes,
        initrdUncompressed: packed.uncompressedBytes,
        rootFiles,
        total: (kernelBytes ?? 0) + packed.bytes,
      },
      packages: plan.packages,
      excludedPackages: plan.excludedPackages,
      files: assembled.files.map((f) => ({ ...f, mode: f.mode.toString(8).padStart(4, '0') })),
      symlinks: assembled.symlinks,
      directories: assembled.directories.map((d) => ({ ...d, mode: d.mode.toString(8).padStart(4, '0') })),
      accounts: assembled.accounts,
      leftOut: this.made!.leftOut,
      trace: this.traced
        ? { outcome: this.traced.outcome, seconds: this.traced.seconds, listening: this.traced.listening, added: this.traced.paths.map((p) => ({ path: p.path, reason: p.reason })) }
        : null,
      relay: this.relay,
      verify: this.verified ?? null,
      kernel: kernel
        ? {
            version: kernel.built!.version,
            source: kernel.source.id,
            platform: kernel.request.platform,
            configSha256: kernel.config.sha256,
            enabledOptions: kernel.config.enabled,
            features: [...kernel.request.features].map(([name, from]) => ({ name, from: [...from] })),
            decompressor: kernel.request.decompressor,
            couldNotDisable: kernel.config.stuckOn.map((s) => s.symbol),
            buildSeconds: kernel.built!.buildSeconds,
          }
        : null,
      build: {
        tinyx: await tinyxVersion(),
        sourceDateEpoch: this.sourceDateEpoch(),
        suite: spec.suite,
        mirror: spec.mirror,
        architecture: spec.architecture,
        seconds: { ...this.seconds },
        cached: [...this.cachedSteps],
        tools: await this.toolVersions(),
        finishedAt: new Date().toISOString(),
      },
    };
    await writeFile(join(this.staging!, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

    // Swap the new directory in (checked again: only tinyx's own output is ever replaced).
    const out = this.outDir!;
    const { leftBehind } = await replaceOutputDir(this.staging!, out);
    this.result = manifest;
    return { summary: leftBehind ? `${out} (the old image's directory kept files tinyx did not write: ${leftBehind})` : out };
  }

  private sourceDateEpoch(): number {
    if (this.options.sourceDateEpoch !== undefined) return this.options.sourceDateEpoch;
    const fromEnv = process.env.SOURCE_DATE_EPOCH;
    if (fromEnv && /^\d+$/.test(fromEnv)) return Number(fromEnv);
    return 0;
  }

  private async toolVersions(): Promise<Record<string, string>> {
    const firstLine = async (cmd: string, args: string[]): Promise<string> =>
      (await run(cmd, args, { allowFailure: true }).catch(() => ({ stdout: 'unknown' }))).stdout.split('\n')[0] ?? 'unknown';
    const base = await this.cache.readMeta<{ debootstrap?: string }>(dirname(this.base!.root)).catch(() => ({ debootstrap: undefined }));
    const busybox = (await readDpkgStatus(join(this.installRoot!.root, 'var/lib/dpkg/status'))).find((p) => p.name === 'busybox-static');
    return {
      node: process.version,
      debootstrap: base.debootstrap ?? 'unknown',
      objdump: await firstLine('objdump', ['--version']),
      busybox: busybox?.version ?? 'unknown',
      ...(this.kernelResult ? { gcc: await firstLine('gcc', ['--version']), make: await firstLine('make', ['--version']) } : {}),
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

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether the platform's image carries the ELF kernel beside the bzImage (PLATFORMS). */
function hasVmlinux(platform: Platform): boolean {
  return (PLATFORMS[platform].kernelArtifacts as readonly string[]).includes('vmlinux');
}
