import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { BUSYBOX_PATH, assembleRoot, type AssembledRoot } from './assemble/assemble-root.js';
import { BASE_INCLUDE, createBase, type BaseRoot, type BaseSpec } from './base/create-base.js';
import { pickBaseSource, readAptSources } from './base/apt-sources.js';
import { loadBlacklist, type Blacklist } from './blacklist.js';
import { Cache, defaultCacheDir } from './cache.js';
import { readDpkgStatus, readPackageFileList } from './dpkg/status.js';
import { TinyxError, throwIfAborted } from './errors.js';
import { HOST_FILES, hasOverlayFs, requireRoot, requireTools } from './host-tools.js';
import { installPackages, type AppLayer } from './install/install-packages.js';
import { MANIFEST_VERSION, type Manifest } from './manifest.js';
import { mount, removeTree } from './mounts.js';
import { OUTPUT_FORMATS, packImage, type OutputFormat } from './pack/formats.js';
import { COMPRESSIONS, type Compression } from './pack/compressions.js';
import { loadRecipe } from './recipe/load-recipe.js';
import type { Recipe } from './recipe/recipe.js';
import { planImage, type ImagePlan } from './resolve/plan-image.js';
import { DirectoryRootView } from './resolve/root-view.js';
import { run } from './run.js';

export type Platform = 'kvm' | 'xen-pvh' | 'xen-pv';
export const PLATFORMS: readonly Platform[] = ['kvm', 'xen-pvh', 'xen-pv'];

export interface BuildOptions {
  /** A recipe name ("nginx"), a recipe file path, or a recipe object (see recipeFromPackage). */
  recipe: string | Recipe;
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
  recipesDir?: string;
  blacklistsDir?: string;
  signal?: AbortSignal;
  /** Progress: steps starting and ending, and the output lines of long commands. */
  onEvent?: (event: BuildEvent) => void;
}

export type StepId = 'load' | 'base' | 'install' | 'resolve' | 'assemble' | 'pack' | 'emit';

export type BuildEvent =
  | { type: 'step-start'; step: StepId; title: string }
  | { type: 'step-end'; step: StepId; title: string; seconds: number; cached: boolean; summary: string | undefined }
  | { type: 'output'; step: StepId; line: string };

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
  private blacklist?: Blacklist;
  private baseSpec?: BaseSpec;
  private base?: BaseRoot;
  private layer?: AppLayer;
  private root?: string;
  private plan?: ImagePlan;
  private assembled?: AssembledRoot;
  private staging?: string;
  private packed?: Awaited<ReturnType<typeof packImage>>;
  private result?: Manifest;
  /** The image directory, known once the recipe is loaded. */
  outDir?: string;

  constructor(options: BuildOptions) {
    this.options = options;
    this.signal = options.signal;
    this.cache = new Cache(resolve(options.cacheDir ?? defaultCacheDir()));
    this.steps = [
      { id: 'load', title: 'Load the recipe and check the host', run: () => this.load() },
      { id: 'base', title: 'Bootstrap the Debian base', run: () => this.bootstrapBase() },
      { id: 'install', title: 'Install the packages', run: () => this.install() },
      { id: 'resolve', title: 'Resolve the runtime closure', run: () => this.resolveClosure() },
      { id: 'assemble', title: 'Assemble the root filesystem', run: () => this.assemble() },
      { id: 'pack', title: 'Pack the image', run: () => this.pack() },
      { id: 'emit', title: 'Write the image directory', run: () => this.emit() },
    ];
  }

  /** Runs one step: timing, progress events, and a cancellation check before it starts. */
  async runStep(step: BuildStep): Promise<StepResult> {
    throwIfAborted(this.signal);
    this.current = step.id;
    this.options.onEvent?.({ type: 'step-start', step: step.id, title: step.title });
    const started = performance.now();
    const result = await step.run();
    const seconds = Math.round((performance.now() - started) / 10) / 100;
    this.seconds[step.id] = seconds;
    if (result.cached) this.cachedSteps.push(step.id);
    this.options.onEvent?.({ type: 'step-end', step: step.id, title: step.title, seconds, cached: !!result.cached, summary: result.summary });
    return result;
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

  private async load(): Promise<StepResult> {
    const { options } = this;
    this.recipe = typeof options.recipe === 'string' ? await loadRecipe(options.recipe, options.recipesDir) : options.recipe;
    this.blacklist = await loadBlacklist(options.blacklistsDir);
    const format = options.format ?? 'initramfs';
    if (!Object.hasOwn(OUTPUT_FORMATS, format)) {
      throw new TinyxError('E_FORMAT', `unknown output format "${format}"`, { kind: 'user', hint: `formats: ${Object.keys(OUTPUT_FORMATS).join(', ')}` });
    }
    const compression = options.compression;
    if (compression !== undefined && !Object.hasOwn(COMPRESSIONS, compression)) {
      throw new TinyxError('E_FORMAT', `unknown compression "${compression}"`, { kind: 'user', hint: `compressions: ${Object.keys(COMPRESSIONS).join(', ')}` });
    }
    requireRoot('tinyx build');
    await requireTools(['debootstrap', 'gpgv', 'objdump', 'mount', 'umount', 'chroot', 'dpkg', ...(compression === 'xz' || compression === 'zstd' ? [compression] : [])]);
    if (!(await hasOverlayFs())) {
      await run('modprobe', ['overlay'], { allowFailure: true }).catch(() => undefined);
      if (!(await hasOverlayFs())) {
        throw new TinyxError('E_NO_OVERLAYFS', 'this kernel has no OverlayFS (no "overlay" in /proc/filesystems)', { kind: 'host', hint: 'load it with: modprobe overlay' });
      }
    }
    const architecture = (await run('dpkg', ['--print-architecture'])).stdout.trim();
    let mirror = options.mirror;
    let suite = options.suite;
    let keyring: string | undefined;
    if (!mirror || !suite) {
      const source = pickBaseSource(await readAptSources());
      mirror ??= source.uri;
      suite ??= source.suite;
      keyring = source.keyring;
    }
    keyring ??= HOST_FILES[0]!.path;
    this.baseSpec = { suite, mirror, architecture, include: BASE_INCLUDE, keyring };
    this.outDir = resolve(options.outDir ?? join('out', this.recipe.name));
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

  private async resolveClosure(): Promise<StepResult> {
    // A read-only view of base + app layer: two lower directories and no upper.
    const temp = await this.cache.makeTemp('root');
    this.cleanups.push(() => removeTree(temp));
    const root = join(temp, 'root');
    await mkdir(root);
    await mount(['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${this.layer!.upper}:${this.base!.root}`, root], this.signal);
    this.root = root;

    const statusFile = join(root, 'var/lib/dpkg/status');
    const installed = await readDpkgStatus(statusFile);
    const fileLists = new Map<string, string[]>();
    for (const pkg of installed) fileLists.set(pkg.name, await readPackageFileList(join(root, 'var/lib/dpkg/info'), pkg));
    const multiarch = ARCH_TRIPLETS[this.baseSpec!.architecture];
    if (!multiarch) throw new TinyxError('E_ARCH', `unsupported architecture ${this.baseSpec!.architecture}`);
    this.plan = await planImage({
      view: new DirectoryRootView(root, this.signal),
      recipe: this.recipe!,
      installed,
      fileLists,
      blacklist: this.blacklist!,
      multiarch,
      alwaysInclude: [{ path: BUSYBOX_PATH, reason: "BusyBox, /init's shell and tools" }],
      ...(this.signal ? { signal: this.signal } : {}),
    });
    const elves = [...this.plan.files.values()].filter((f) => f.elf).length;
    return { summary: `${this.plan.files.size} files (${elves} ELF) from ${this.plan.packages.length} packages` };
  }

  private async assemble(): Promise<StepResult> {
    this.assembled = await assembleRoot(this.root!, this.recipe!, this.plan!);
    const bytes = this.assembled.files.reduce((sum, f) => sum + f.size, 0);
    return { summary: `${this.assembled.entries.length} entries, ${formatBytes(bytes)} of files` };
  }

  private async pack(): Promise<StepResult> {
    const out = this.outDir!;
    await mkdir(dirname(out), { recursive: true });
    // The new image directory is built beside the old one and swapped in by emit.
    this.staging = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
    const staging = this.staging;
    this.cleanups.push(() => removeTree(staging));
    await mkdir(staging);
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
    const { source: _source, ...normalized } = recipe;
    const manifest: Manifest = {
      manifestVersion: MANIFEST_VERSION,
      name: recipe.name,
      recipe: { ...normalized, source: typeof this.options.recipe === 'string' ? recipe.source : recipe.source },
      platform: this.options.platform ?? 'kvm',
      format,
      entrypoint: { cmd: [plan.entrypoint, ...recipe.entrypoint.cmd.slice(1)], user: recipe.entrypoint.user, uid: assembled.user.uid, gid: assembled.user.gid },
      readiness: recipe.readiness,
      artifacts: { rootfs: packed.fileName, kernel: null, kernelConfig: null },
      compression: packed.compression,
      sizes: { kernel: null, initrd: packed.bytes, initrdUncompressed: packed.uncompressedBytes, rootFiles, total: packed.bytes },
      packages: plan.packages,
      excludedPackages: plan.excludedPackages,
      files: assembled.files.map((f) => ({ ...f, mode: f.mode.toString(8).padStart(4, '0') })),
      symlinks: assembled.entries.flatMap((e) => (e.type === 'symlink' ? [{ path: e.path, target: e.target }] : [])),
      kernel: null,
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

    // Swap the new directory in: the old one moves aside first, so a reader sees one or the other.
    const out = this.outDir!;
    const old = `${this.staging!}.old`;
    await rename(out, old).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    await rename(this.staging!, out);
    await removeTree(old);
    this.result = manifest;
    return { summary: out };
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
    const busybox = (await readDpkgStatus(join(this.root!, 'var/lib/dpkg/status'))).find((p) => p.name === 'busybox-static');
    return {
      node: process.version,
      debootstrap: base.debootstrap ?? 'unknown',
      objdump: await firstLine('objdump', ['--version']),
      busybox: busybox?.version ?? 'unknown',
    };
  }
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
