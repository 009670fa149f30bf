import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { SYSTEM_MAP } from '@tinyx/image';
import { OUTPUT_FORMATS, checkOutputDir, compilerCacheSummary, formatBytes, replaceOutputDir, type KernelResult, type OutputFormat } from '@tinyx/builder';
import { recipeFrom, recipeOptions, recipeSearchHelp, runBuild, sourceFrom, sourceOptions, type RecipeArgs, type SourceArgs } from '../build-options.js';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError, type Output } from '../output.js';

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
        if (action === 'config') printConfig(kernel, out);
        else await reportBuild(kernel, args.out, out);
        process.exitCode = 0;
      } catch (error) {
        process.exitCode = reportError(error, out);
      }
    },
  };
}

function printConfig(kernel: KernelResult, out: Output): void {
  const { config, request, source } = kernel;
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

export const kernelCommand: CommandModule = {
  command: 'kernel <command>',
  describe: "Configure or build an app's kernel on its own",
  builder: (yargs) => yargs.command(kernelSubcommand('config')).command(kernelSubcommand('build')).demandCommand(1, 'name a kernel command: config or build'),
  handler: () => undefined,
};
