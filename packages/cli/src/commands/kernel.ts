import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { SYSTEM_MAP, TinyxError } from '@tinyx/image';
import { BUNDLED_RECIPES_DIR, OUTPUT_FORMATS, checkOutputDir, compilerCacheSummary, formatBytes, replaceOutputDir, setRecipeKernelDisable, type KernelResult, type OutputFormat } from '@tinyx/builder';
import { recipeFrom, recipeOptions, recipeSearchHelp, runBuild, sourceFrom, sourceOptions, type RecipeArgs, type SourceArgs } from '../build-options.js';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError, type Output } from '../output.js';
import { interruptSignal } from '../interrupt.js';
import { listCandidates, minimizeKernel, type MinimizeReport } from '../kernel-minimize.js';

interface KernelArgs extends GlobalArgs, RecipeArgs, SourceArgs {
  out?: string;
  format?: OutputFormat;
}

function kernelSubcommand(action: 'config' | 'build'): CommandModule<object, KernelArgs> {
  return {
    command: `${action} [recipe]`,
    describe:
      action === 'config'
        ? "Print the kernel's final .config for an app, and where each option came from"
        : 'Build the kernel for an app (cached by its .config), without the rest of the image',
    builder: (yargs) => {
      let y = sourceOptions(recipeOptions(globalOptions(yargs as Argv<object>), `kernel ${action}`)).option('format', {
        choices: Object.keys(OUTPUT_FORMATS) as OutputFormat[],
        describe: "the image's root filesystem format, which decides part of the kernel: initramfs support and its decompressor, or the block layer, the platform's disk driver and erofs",
        defaultDescription: "the platform's",
      });
      if (action === 'build') y = y.option('out', { type: 'string', describe: 'write vmlinuz, vmlinux, System.map, kernel.config and kernel.json into this directory (new, empty, or one tinyx wrote)' }) as typeof y;
      return (action === 'config'
        ? y
            .example('$0 kernel config nginx', 'the .config, each requested option with its fragment or feature')
            .example('$0 kernel config redis --platform xen-pvh --json', 'the same as JSON')
        : y.example('$0 kernel build nginx --out /tmp/k', 'build (or take from the cache) and copy the files out')
      ).epilog(
        `${recipeSearchHelp()}\n\n` +
          'The kernel is tinyconfig + kernel/base.config + kernel/shared.config (what every kernel shares, so that kernels share their compiled objects) + kernel/platforms/<platform>.config (+ .net.config with the net feature, + .block.config for a disk root) + kernel/trim.config + the features (the recipe\'s, and those inferred from the symbols the app imports) + kernel/formats/<format>.config (and the initramfs decompressor), then olddefconfig. Every requested option is checked afterwards: one Kconfig dropped is an error naming its unmet dependencies.',
      ) as unknown as Argv<KernelArgs>;
    },
    handler: async (args) => {
      const out = makeOutput(args);
      try {
        // Refused before the build: --out must be new, empty or a directory tinyx wrote.
        if (action === 'build' && args.out) await checkOutputDir(resolve(args.out));
        const build = await runBuild(out, { ...recipeFrom(args), ...sourceFrom(args), ...(args.format ? { format: args.format } : {}), goal: action === 'config' ? 'kernel-config' : 'kernel' });
        const kernel = build.kernelOutcome;
        if (action === 'config') await printConfig(kernel, out);
        else await reportBuild(kernel, args.out, out);
        process.exitCode = 0;
      } catch (error) {
        process.exitCode = reportError(error, out);
      }
    },
  };
}

async function printConfig(kernel: KernelResult, out: Output): Promise<void> {
  const { config, request } = kernel;
  // The version and the tree it says: the source unpacked (already, unless the configuration came from a cache).
  const source = await kernel.source.open();
  if (out.json) {
    out.result({
      ok: true,
      version: source.version,
      source: source.id,
      sourceDir: source.dir,
      platform: request.platform,
      format: request.format,
      features: [...request.features].map(([name, from]) => ({ name, from })),
      requested: [...config.requested].map(([symbol, r]) => ({ symbol, value: r.value, origin: r.origin })),
      couldNotDisable: config.stuckOn,
      enabledOptions: config.enabled,
      configSha256: config.sha256,
      config: config.text,
    });
    return;
  }
  out.line(`# Linux ${source.version} for ${request.platform}, root as ${request.format} (${source.id}); ${config.enabled} options set`);
  for (const [feature, from] of request.features) out.line(`# feature ${feature}: ${from.join('; ')}`);
  for (const stuck of config.stuckOn) out.line(`# could not switch off CONFIG_${stuck.symbol} (asked by ${stuck.origin}): something selects it`);
  for (const line of config.text.split('\n')) {
    const symbol = line.match(/^(?:# )?CONFIG_(\w+)[= ]/)?.[1];
    const origin = symbol ? config.requested.get(symbol)?.origin : undefined;
    if (line.startsWith('#') && !symbol) continue;
    if (!line) continue;
    out.line(origin ? `${line.padEnd(48)} # ${origin}` : line);
  }
}

async function reportBuild(kernel: KernelResult, outDir: string | undefined, out: Output): Promise<void> {
  const built = kernel.built!;
  if (outDir) {
    // Written beside the target and swapped in, as an image directory is, with kernel.json as tinyx's marker.
    const dir = resolve(outDir);
    await mkdir(dirname(dir), { recursive: true });
    const staging = await mkdtemp(join(dirname(dir), `.${basename(dir)}.tmp-`));
    try {
      await copyFile(built.bzImage, join(staging, 'vmlinuz'));
      await copyFile(built.vmlinux, join(staging, 'vmlinux'));
      await copyFile(built.systemMap, join(staging, SYSTEM_MAP));
      await writeFile(join(staging, 'kernel.config'), kernel.config.text);
      const marker = { generator: 'tinyx', kind: 'kernel', version: built.version, platform: kernel.request.platform, configSha256: kernel.config.sha256 };
      await writeFile(join(staging, 'kernel.json'), `${JSON.stringify(marker, null, 2)}\n`);
      await replaceOutputDir(staging, dir);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
  const sizes = { bzImage: (await stat(built.bzImage)).size, vmlinux: (await stat(built.vmlinux)).size };
  if (out.json) {
    out.result({ ok: true, version: built.version, platform: kernel.request.platform, cached: built.cached, buildSeconds: built.buildSeconds, compilerCache: built.compilerCache ?? null, bzImage: built.bzImage, vmlinux: built.vmlinux, sizes, configSha256: kernel.config.sha256, enabledOptions: kernel.config.enabled, out: outDir ?? null });
    return;
  }
  const reused = built.compilerCache ? `, ${compilerCacheSummary(built.compilerCache)}` : '';
  out.line(`Linux ${built.version} for ${kernel.request.platform}${built.cached ? ' (cache hit)' : ` (built in ${built.buildSeconds} s${reused})`}`);
  out.line(`  bzImage  ${formatBytes(sizes.bzImage)}  ${built.bzImage}`);
  out.line(`  vmlinux  ${formatBytes(sizes.vmlinux)}  ${built.vmlinux}`);
  out.line(`  ${kernel.config.enabled} options, config sha256 ${kernel.config.sha256.slice(0, 16)}`);
  if (outDir) out.line(`  copied to ${outDir}`);
}

interface MinimizeArgs extends GlobalArgs, RecipeArgs, SourceArgs {
  format?: OutputFormat;
  only?: string[];
  timeout: number;
  boots: number;
  write?: boolean;
  list?: boolean;
}

const minimizeCommand: CommandModule<object, MinimizeArgs> = {
  command: 'minimize [recipe]',
  describe: "Leave out every kernel option the app does not need: each set tried is built, booted with the image and probed",
  builder: (yargs) =>
    sourceOptions(recipeOptions(globalOptions(yargs as Argv<object>), 'kernel minimize'))
      .option('format', { choices: Object.keys(OUTPUT_FORMATS) as OutputFormat[], describe: "the image's root filesystem format (as for tinyx build)", defaultDescription: "the platform's" })
      .option('only', { type: 'string', array: true, describe: 'try only these candidates (Kconfig symbols without CONFIG_, repeatable or comma-separated)', coerce: (v: string[]) => v.flatMap((s) => s.split(',')).filter(Boolean) })
      .option('timeout', { type: 'number', default: 30, describe: "seconds a trial's boot waits for the readiness probe before the trial fails" })
      .option('boots', { type: 'number', default: 3, describe: 'boots of the original and of the minimized kernel each (alternating) for the time figures; 0: none' })
      .option('write', { type: 'boolean', describe: "set the result as kernel.disable in the recipe's file (its comments kept)" })
      .option('list', { type: 'boolean', describe: 'show the candidates and what is kept and why (the contract, an option that leaves code out), and try nothing' })
      .check((args) => {
        if (args.list && args.write) throw new Error('--list tries nothing, so there is nothing to --write');
        if (!Number.isFinite(args.timeout) || args.timeout <= 0) throw new Error('--timeout must be a number of seconds above 0');
        if (!Number.isInteger(args.boots) || args.boots < 0) throw new Error('--boots must be 0 or more');
        return true;
      })
      .example('$0 kernel minimize nginx --list', 'the options it would try, and those every kvm kernel keeps')
      .example('$0 kernel minimize nginx --write', 'minimize, and write kernel.disable into recipes/nginx.yaml')
      .example('$0 kernel minimize redis --only UNIX,INET --json', 'try two options only, the result as JSON')
      .epilog(
        "The candidates are the options the app's kernel has on beyond tinyconfig that a .config line can switch off (no menu gates, no choice members, no option that others need off, such as CRYPTO_MANAGER_DISABLE_TESTS), except what tinyx's kernels keep: kernel/base.config, shared.config, the fragments of every platform and root format (kernel.disable applies to all of the recipe's builds), what those depend on, and the console. They are tried off all at once, then in halves where a set breaks the app (delta debugging), each on top of what already went: a trial passes when its kernel builds, the image boots under QEMU (microvm) and its readiness probe answers (only an HTTP probe, or a TCP probe with send and expect, sees the app answer: with a bare TCP or console probe, check the result by hand). Trials build in the platform's kept build tree, so each compiles what its options touch. Each trial is recorded in the cache as it ends, with the image it booted (minimize/<recipe>/state.json): run the same command again after Ctrl-C and it goes on. Only --platform kvm (the trials boot under QEMU).",
      ) as unknown as Argv<MinimizeArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    const interrupt = interruptSignal();
    try {
      const options = {
        build: { ...recipeFrom(args), ...sourceFrom(args), ...(args.format ? { format: args.format } : {}) },
        only: args.only,
        timeoutSeconds: args.timeout,
        boots: args.boots,
        signal: interrupt.signal,
        onNote: (line: string) => out.note(line),
      };
      if (args.list) {
        const listed = await listCandidates(options);
        if (out.json) out.result({ ok: true, ...listed });
        else {
          out.line(`${listed.candidates.length} candidates: ${listed.candidates.join(' ')}`);
          out.line(`${listed.protected.length} kept, not candidates:`);
          for (const p of listed.protected) out.line(`  ${p.symbol.padEnd(28)} ${p.why}`);
        }
        process.exitCode = 0;
        return;
      }
      const report = await minimizeKernel(options);
      let written: string | undefined;
      if (args.write) {
        if (!report.recipeFile) throw new TinyxError('E_MINIMIZE', '--write: this recipe has no file (it was made from a package)', { kind: 'user', hint: 'tinyx recipe init --package NAME writes one; minimize that' });
        written = resolve(report.recipeFile);
        // tinyx's own recipes, installed with it, are the package's files: a project edits a copy of its own.
        if (written.startsWith(`${BUNDLED_RECIPES_DIR}/`) && BUNDLED_RECIPES_DIR.split(sep).includes('node_modules')) {
          throw new TinyxError('E_MINIMIZE', `--write: ${written} is one of the recipes installed with tinyx`, { kind: 'user', hint: `copy it into ./recipes/ (cp ${written} recipes/) and minimize that; kernel.disable: [${report.disable.join(', ')}]` });
        }
        await setRecipeKernelDisable(written, report.disable);
      }
      if (out.json) out.result({ ok: true, ...report, written: written ?? null });
      else for (const line of minimizeText(report, written)) out.line(line);
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    } finally {
      interrupt.dispose();
    }
  },
};

/** The minimization as a person reads it. */
export function minimizeText(r: MinimizeReport, written: string | undefined): string[] {
  const bytes = (n: number | undefined): string => (n === undefined ? '?' : formatBytes(n));
  const lines = [`${r.recipe}: ${r.candidates.length} candidates, ${r.steps.length} trials${r.replayed ? ` (${r.replayed} from an earlier run's record)` : ''}`];
  lines.push(`left out (${r.removed.length}): ${r.removed.join(' ') || 'none'}`);
  for (const n of r.needed) lines.push(`needed: ${n.symbol}: ${n.reason}`);
  if (r.stuckOn.length) lines.push(`stay on (an option that stays selects them): ${r.stuckOn.join(' ')}`);
  if (r.weakProbe) lines.push(`caution: ${r.recipe} has ${r.weakProbe}`);
  lines.push(`vmlinux ${bytes(r.baseline.vmlinuxBytes)} -> ${bytes(r.final.vmlinuxBytes)}, bzImage ${bytes(r.baseline.bzImageBytes)} -> ${bytes(r.final.bzImageBytes)}`);
  if (r.readyMs) lines.push(`ready (median of ${r.readyMs.boots} boot${r.readyMs.boots > 1 ? 's' : ''} each, alternating): ${r.readyMs.baseline} ms -> ${r.readyMs.minimized} ms`);
  lines.push('', 'what each accepted trial saved (bytes of vmlinux and bzImage; ms of one boot each, noisy)');
  let before = r.baseline;
  for (const step of r.steps.filter((s) => s.outcome.ok)) {
    const saved = (key: 'vmlinuxBytes' | 'bzImageBytes'): string => String((before[key] ?? 0) - (step.outcome[key] ?? 0)).padStart(8);
    const ms = (before.readyMs ?? 0) - (step.outcome.readyMs ?? 0);
    lines.push(`  ${saved('vmlinuxBytes')} B ${saved('bzImageBytes')} B  ${String(ms).padStart(6)} ms  ${step.chunk.join(' ')}`);
    before = step.outcome;
  }
  lines.push('');
  if (written) lines.push(`kernel.disable written to ${written}: [${r.disable.join(', ')}]`);
  else if (r.removed.length) lines.push(`to keep it, add to the recipe (or run again with --write):\n  kernel:\n    disable: [${r.disable.join(', ')}]`);
  return lines;
}

export const kernelCommand: CommandModule = {
  command: 'kernel <command>',
  describe: "Configure or build an app's kernel on its own",
  builder: (yargs) => yargs.command(kernelSubcommand('config')).command(kernelSubcommand('build')).command(minimizeCommand).demandCommand(1, 'name a kernel command: config, build or minimize'),
  handler: () => undefined,
};
