import { createHash } from 'node:crypto';
import { copyFile, link, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  TinyxError,
  createBuild,
  defaultCacheDir,
  minimizeCandidates,
  minimizeOptions,
  parseKconfig,
  processExists,
  findDependencies,
  kconfigSymbols,
  kernelFragments,
  readKconfigFiles,
  tinyConfigText,
  type BuildOptions,
  type KernelResult,
  type Manifest,
  type MinimizeResult,
  type MinimizeStep,
  type ProtectedOption,
  type TrialOutcome,
} from '@tinyx/builder';
import { PLATFORM_NAMES, ROOT_FORMATS, SYSTEM_MAP, probeSeesApp, type RootFormat } from '@tinyx/image';
import { getBackend, type Vm } from '@tinyx/toolstack';

/** The options every kernel keeps whatever the minimizer finds: the console tinyx reads the guest's errors from. */
const CONSOLE = ['PRINTK', 'TTY', 'SERIAL_8250', 'SERIAL_8250_CONSOLE'];

/** Bumped when what a recorded trial means changes: older records are not replayed. */
const STATE_VERSION = 3;
/** An image directory's kernel files: each trial brings its own. */
const KERNEL_FILES = ['vmlinuz', 'vmlinux', SYSTEM_MAP, 'kernel.config'];

export interface MinimizeOptions {
  /** The build's recipe, platform, format, source and cache: as for `tinyx build`. */
  build: Omit<BuildOptions, 'goal' | 'outDir' | 'kernelDisable' | 'signal' | 'onEvent'>;
  /** Try only these candidates (a subset of the computed ones). */
  only?: readonly string[] | undefined;
  /** Seconds a trial boot waits for the readiness probe. */
  timeoutSeconds: number;
  /** Boots of the baseline and of the result each, alternating, for the time figures. */
  boots: number;
  signal: AbortSignal;
  onNote: (line: string) => void;
}

export interface MinimizeReport extends MinimizeResult {
  recipe: string;
  /** The recipe file kernel.disable belongs in (undefined for a recipe made from a package). */
  recipeFile: string | undefined;
  candidates: string[];
  protected: ProtectedOption[];
  baseline: TrialOutcome;
  /** Trials answered from the record of an earlier run (resumed). */
  replayed: number;
  /** Medians of `boots` boots each, alternating: from QEMU's start to the probe's answer. */
  readyMs: { baseline: number; minimized: number; boots: number } | null;
  /** The recipe's kernel.disable with what was removed added. */
  disable: string[];
  /** Set when the trials' test is weak: a probe that does not see the app answer (a TCP connect, a console line, none). */
  weakProbe: string | null;
}

interface State {
  version: number;
  /** Trials by the image they booted (its files but the kernel's), the baseline config they started from and the options off. */
  trials: Record<string, TrialOutcome>;
}

/**
 * Minimizes an app's kernel: builds the image once, then for each trial the
 * kernel with a set of options off (in the platform's kept build tree, so a
 * trial compiles what those options touch), boots the image with it under
 * QEMU and waits for its readiness probe. Every trial is recorded in the
 * cache (`minimize/<recipe>/state.json`) as it ends: the same command again
 * replays them and goes on where it stopped.
 */
export async function minimizeKernel(options: MinimizeOptions): Promise<MinimizeReport> {
  const platform = options.build.platform ?? 'kvm';
  if (platform !== 'kvm') {
    throw new TinyxError('E_PLATFORM', `tinyx kernel minimize boots its trials under QEMU: --platform ${platform} is not supported`, {
      kind: 'user',
      hint: 'minimize the kvm kernel; a Xen kernel differs from it only in the platform fragment, which the minimizer never touches',
    });
  }
  const cacheDir = options.build.cacheDir ?? defaultCacheDir();
  const asked = options.build.recipe;
  const name = typeof asked === 'string' ? basename(asked).replace(/\.ya?ml$/, '') : 'fromUnit' in asked ? asked.fromUnit.package : asked.name;
  // By the recipe's name (wherever its file is) and what else decides the kernel; the record inside is by the baseline config.
  const slot = join(cacheDir, 'minimize', `${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${shortHash(JSON.stringify({ format: options.build.format ?? null, source: options.build.kernelSource ?? null }))}`);

  // The candidates first (the kernel's config, no build): a bad --only is refused before any work.
  const { candidates, protected: kept } = await listCandidates(options);
  await mkdir(slot, { recursive: true });
  // The image, once: its root is the same for every kernel.
  options.onNote('building the image (its root is every trial\'s)');
  // This run's image and trial directory (two runs of one recipe at once each have theirs); a killed run's are swept.
  for (const entry of await readdir(slot)) {
    const pid = Number(entry.match(/^run-(\d+)$/)?.[1]);
    if (pid && pid !== process.pid && !processExists(pid)) await rm(join(slot, entry), { recursive: true, force: true });
  }
  const own = join(slot, `run-${process.pid}`);
  const image = join(own, 'image');
  const trialDir = join(own, 'trial');
  try {
    return await minimizeWith();
  } finally {
    // Made again from the build cache in seconds: not kept.
    await rm(own, { recursive: true, force: true });
  }

  async function minimizeWith(): Promise<MinimizeReport> {
    const built = createBuild({ ...options.build, goal: 'image', outDir: image, signal: options.signal });
    try {
      for (const step of built.steps) await built.runStep(step);
    } finally {
      await built.cleanup();
    }
    const baselineKernel = built.kernelOutcome;
    const manifest = built.manifest;
    const recipeFile = manifest.recipe.source && /\.ya?ml$/.test(manifest.recipe.source) ? manifest.recipe.source : undefined;
    const recipeDisable = [...baselineKernel.request.disable ?? []];

    const statePath = join(slot, 'state.json');
    const state = await readState(statePath);
    const baselineSha = baselineKernel.config.sha256;
    // A trial's outcome holds for this image only: another root or /init (a package update, an edited recipe, a newer tinyx) is tried anew.
    const imageId = await imageIdentity(image);
    let replayed = 0;

    const boot = async (kernel: { bzImage: string; vmlinux: string; systemMap: string; configText: string }): Promise<number> => {
      await rm(trialDir, { recursive: true, force: true });
      await mkdir(trialDir);
      for (const entry of await readdir(image)) {
        if (KERNEL_FILES.includes(entry)) continue;
        await link(join(image, entry), join(trialDir, entry));
      }
      await copyFile(kernel.bzImage, join(trialDir, 'vmlinuz'));
      await copyFile(kernel.vmlinux, join(trialDir, 'vmlinux'));
      await copyFile(kernel.systemMap, join(trialDir, SYSTEM_MAP));
      await writeFile(join(trialDir, 'kernel.config'), kernel.configText);
      let vm: Vm | undefined;
      try {
        vm = await getBackend('qemu').create(trialDir, { signal: options.signal });
        return (await vm.waitReady(undefined, { timeoutMs: options.timeoutSeconds * 1000, signal: options.signal })).ms;
      } finally {
        await vm?.destroy();
      }
    };
    const builtOf = (k: KernelResult) => ({ bzImage: k.built!.bzImage, vmlinux: k.built!.vmlinux, systemMap: k.built!.systemMap, configText: k.config.text });

    const baselineBytes = (await stat(baselineKernel.built!.bzImage)).size;
    options.onNote(`baseline: bzImage ${baselineBytes} B, ${baselineKernel.config.enabled} options; ${candidates.length} candidates`);
    const baseline: TrialOutcome = { ok: true, configSha256: baselineSha, bzImageBytes: baselineBytes, vmlinuxBytes: (await stat(baselineKernel.built!.vmlinux)).size, readyMs: await boot(builtOf(baselineKernel)) };
    // Trials whose configs come out the same are one trial.
    const byConfig = new Map<string, TrialOutcome>([[baselineSha, baseline]]);
    for (const [key, outcome] of Object.entries(state.trials)) {
      if (key.startsWith(`${imageId}:`) && outcome.configSha256 && !byConfig.has(outcome.configSha256)) byConfig.set(outcome.configSha256, outcome);
    }

    const trial = async (off: readonly string[]): Promise<TrialOutcome> => {
      const key = `${imageId}:${baselineSha}:${off.join(',')}`;
      const recorded = state.trials[key];
      if (recorded) {
        replayed++;
        return recorded;
      }
      const outcome = await runTrial(off);
      state.trials[key] = outcome;
      await writeState(statePath, state);
      return outcome;
    };
    const runTrial = async (off: readonly string[]): Promise<TrialOutcome> => {
      // The kernel (a cache hit when another trial's config came out the same).
      const k = createBuild({ ...options.build, goal: 'kernel', kernelDisable: off, signal: options.signal });
      let kernel: KernelResult;
      try {
        for (const step of k.steps) await k.runStep(step);
        kernel = k.kernelOutcome;
      } catch (error) {
        if (error instanceof TinyxError && error.code === 'E_KERNEL_CONFIG') return { ok: false, reason: `the config: ${error.message.split('\n').slice(1).join('; ').trim()}` };
        if (error instanceof TinyxError && error.code === 'E_KERNEL_BUILD') return { ok: false, reason: 'the kernel did not build' };
        throw error;
      } finally {
        await k.cleanup();
      }
      const stuckOn = kernel.config.stuckOn.filter((s) => off.includes(s.symbol)).map((s) => s.symbol);
      const same = byConfig.get(kernel.config.sha256);
      if (same) return { ...same, stuckOn };
      const bytes = { bzImageBytes: (await stat(kernel.built!.bzImage)).size, vmlinuxBytes: (await stat(kernel.built!.vmlinux)).size };
      let outcome: TrialOutcome;
      try {
        outcome = { ok: true, configSha256: kernel.config.sha256, ...bytes, readyMs: await boot(builtOf(kernel)), stuckOn };
      } catch (error) {
        if (options.signal.aborted || !(error instanceof TinyxError)) throw error;
        outcome = { ok: false, reason: `the boot: ${error.message.split('\n')[0]}`, configSha256: kernel.config.sha256, ...bytes, stuckOn };
      }
      byConfig.set(kernel.config.sha256, outcome);
      return outcome;
    };

    const result = await minimizeOptions(candidates, baseline, trial, (step, progress) => options.onNote(stepLine(step, progress)));

    // The time figures: baseline and result, alternating, from one run.
    let readyMs: MinimizeReport['readyMs'] = null;
    if (result.removed.length > 0 && options.boots > 0) {
      const finalBuild = createBuild({ ...options.build, goal: 'kernel', kernelDisable: result.removed, signal: options.signal });
      try {
        for (const step of finalBuild.steps) await finalBuild.runStep(step);
      } finally {
        await finalBuild.cleanup();
      }
      const minimized = builtOf(finalBuild.kernelOutcome);
      const times = { baseline: [] as number[], minimized: [] as number[] };
      for (let i = 0; i < options.boots; i++) {
        times.baseline.push(await boot(builtOf(baselineKernel)));
        times.minimized.push(await boot(minimized));
      }
      readyMs = { baseline: median(times.baseline), minimized: median(times.minimized), boots: options.boots };
    }
    const disable = [...new Set([...recipeDisable, ...result.removed])].sort();
    return { ...result, recipe: name, recipeFile, candidates, protected: kept, baseline, replayed, readyMs, disable, weakProbe: weakProbe(manifest.readiness) };
  }
}

/** The candidates of the app's kernel: beyond tinyconfig, settable, and outside what every kernel keeps (its fragments, the console). */
async function candidatesOf(kernel: KernelResult, cacheDir: string, options: MinimizeOptions): Promise<{ candidates: string[]; protected: ProtectedOption[] }> {
  const tiny = await tinyConfigText(cacheDir, kernel.source, options.signal);
  // What every kernel of some platform and root format has: any fragment but the features' and the disable lists (a feature may ask
  // again for a shared option). Of every platform and format, because kernel.disable applies to all of the recipe's builds.
  const protect = new Map<string, string>([['64BIT', 'the architecture'], ...CONSOLE.map((s): [string, string] => [s, "the console, where tinyx reads the guest's errors"])]);
  for (const platform of [kernel.request.platform, ...PLATFORM_NAMES]) {
    for (const format of [kernel.request.format, ...Object.keys(ROOT_FORMATS)] as RootFormat[]) {
      for (const fragment of await kernelFragments({ ...kernel.request, platform, format, disable: [], alsoDisable: [] })) {
        if (fragment.name.startsWith('feature ')) continue;
        for (const [symbol, value] of parseKconfig(fragment.text, fragment.name)) {
          if (value !== 'n' && !protect.has(symbol)) protect.set(symbol, `${fragment.name}: kept by every ${platform} kernel${format === kernel.request.format ? '' : ` with a root as ${format}`}`);
        }
      }
    }
  }
  // And what those depend on (VIRTIO_BLK on BLK_DEV), down to the bottom: off, it would drop them.
  // x86's Kconfig: another architecture's files define and select the same symbols differently.
  const kconfigFiles = new Map([...(await readKconfigFiles((await kernel.source.open()).dir))].filter(([file]) => !/^arch\/[^/]+\//.test(file) || file.startsWith('arch/x86/')));
  for (let round = [...protect.keys()]; round.length > 0; ) {
    const next: string[] = [];
    for (const [symbol, { dependsOn }] of findDependencies(kconfigFiles, round)) {
      for (const needed of dependsOn.flatMap(positiveSymbols)) {
        if (protect.has(needed)) continue;
        protect.set(needed, `${symbol} depends on it, and ${protect.get(symbol)!.split(':')[0]} asks for ${symbol}`);
        next.push(needed);
      }
    }
    round = next;
  }
  const all = minimizeCandidates(parseKconfig(kernel.config.text), parseKconfig(tiny), kconfigSymbols(kconfigFiles), protect);
  if (!options.only) return all;
  for (const symbol of options.only) {
    if (!all.candidates.includes(symbol)) {
      const why =
        all.protected.find((p) => p.symbol === symbol)?.why ??
        ((kernel.request.disable ?? []).includes(symbol) ? "the recipe's kernel.disable already leaves it out" : 'it is not on in this kernel beyond tinyconfig, or no .config line can switch it');
      throw new TinyxError('E_MINIMIZE', `--only ${symbol}: not a candidate (${why})`, { kind: 'user', hint: 'tinyx kernel minimize RECIPE --list shows the candidates' });
    }
  }
  return { candidates: all.candidates.filter((s) => options.only!.includes(s)), protected: all.protected };
}

/** The candidates alone, for --list: builds the kernel's config (not the kernel) and reads Kconfig. */
export async function listCandidates(options: MinimizeOptions): Promise<{ candidates: string[]; protected: ProtectedOption[] }> {
  const cacheDir = options.build.cacheDir ?? defaultCacheDir();
  const b = createBuild({ ...options.build, goal: 'kernel-config', signal: options.signal });
  try {
    for (const step of b.steps) await b.runStep(step);
  } finally {
    await b.cleanup();
  }
  return candidatesOf(b.kernelOutcome, cacheDir, options);
}

function stepLine(step: MinimizeStep, progress: { off: number; needed: number; pending: number }): string {
  const what = step.chunk.length > 3 ? `${step.chunk.length} options (${step.chunk.slice(0, 3).join(', ')}, ...)` : step.chunk.join(', ');
  const how = step.outcome.ok ? `off: vmlinux ${step.outcome.vmlinuxBytes} B, bzImage ${step.outcome.bzImageBytes} B, ready ${step.outcome.readyMs} ms` : `${step.chunk.length > 1 ? 'fails, halved' : 'needed'}: ${step.outcome.reason}`;
  return `  ${what}: ${how}  [${progress.off} off, ${progress.needed} needed, ${progress.pending} to try]`;
}

async function readState(path: string): Promise<State> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return { version: STATE_VERSION, trials: {} };
  try {
    const state = JSON.parse(text) as State;
    if (state.version === STATE_VERSION && typeof state.trials === 'object') return state;
  } catch {
    // A record that does not parse is started anew (it is tinyx's own, in its cache).
  }
  return { version: STATE_VERSION, trials: {} };
}

async function writeState(path: string, state: State): Promise<void> {
  const staged = `${path}.new-${process.pid}`;
  await writeFile(staged, `${JSON.stringify(state, null, 1)}\n`);
  await rename(staged, path);
}

/** The symbols a `depends on` expression needs on: every one not under a `!`. */
function positiveSymbols(expression: string): string[] {
  return [...expression.matchAll(/(!\s*)?\b([A-Z][A-Z0-9_]*)\b/g)].filter((m) => !m[1]).map((m) => m[2]!);
}

/**
 * Why the readiness probe cannot tell that the app works, or null for one that
 * sees the app answer (HTTP, a TCP exchange with `expect`). Found with redis
 * under a bare TCP probe: a kernel on which it listened but never answered a
 * command passed.
 */
function weakProbe(readiness: Manifest['readiness']): string | null {
  if (probeSeesApp(readiness)) return null;
  const what = !readiness
    ? 'no readiness probe: a trial passes once the app has started'
    : 'tcp' in readiness
      ? 'a TCP probe without `expect`: a trial passes once the port listens, which the kernel answers without the app'
      : 'a console-line probe: a trial passes once the app prints it';
  return `${what}; an option the app needs to serve can go. Check the result by hand (tinyx run --publish), or give the recipe a probe that sees the app answer (http, or tcp with send and expect)`;
}

/**
 * What a recorded outcome was measured with, hashed: the image's files but
 * its kernel's (each trial brings its own), and of its manifest what the boot
 * and the probe read (not the kernel's fields, nor the build's timings).
 */
async function imageIdentity(dir: string): Promise<string> {
  const hash = createHash('sha256');
  for (const entry of (await readdir(dir)).sort()) {
    if (KERNEL_FILES.includes(entry)) continue;
    let bytes: Buffer | string = await readFile(join(dir, entry));
    if (entry === 'manifest.json') {
      const manifest = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
      bytes = JSON.stringify(['name', 'platform', 'format', 'compression', 'entrypoint', 'readiness', 'boot', 'relay'].map((key) => manifest[key] ?? null));
    }
    hash.update(`${entry}\0`).update(bytes).update('\0');
  }
  return hash.digest('hex').slice(0, 24);
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : Math.round((sorted[mid - 1]! + sorted[mid]!) / 2);
}
