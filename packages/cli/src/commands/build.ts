import type { Argv, CommandModule } from 'yargs';
import { COMPRESSIONS, OUTPUT_FORMATS, PLATFORMS, createBuild, formatBytes, recipeFromPackage, type BuildEvent, type Compression, type OutputFormat, type Platform } from '@tinyx/builder';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError } from '../output.js';
import { lineProgress, progressMode, runSteps } from '../progress.js';
import { globalOptions, type GlobalArgs } from '../global-options.js';

interface BuildArgs extends GlobalArgs {
  recipe?: string;
  package?: string;
  cmd?: string;
  port?: number;
  user?: string;
  name?: string;
  out?: string;
  platform: Platform;
  format: OutputFormat;
  compression?: Compression;
  mirror?: string;
  suite?: string;
  cache?: string;
}

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build [recipe]',
  describe: 'Build a minimal VM image for one application',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('recipe', { type: 'string', describe: 'a recipe name (see recipes/) or the path of a recipe file' })
      .option('package', { type: 'string', describe: 'build a Debian package without a recipe (with --cmd)', group: 'Without a recipe:' })
      .option('cmd', { type: 'string', describe: 'the command line to run, for --package', group: 'Without a recipe:' })
      .option('port', { type: 'number', describe: 'the TCP port that tells the app is ready, for --package', group: 'Without a recipe:' })
      .option('user', { type: 'string', describe: 'the account to run --cmd as (default root)', group: 'Without a recipe:' })
      .option('name', { type: 'string', describe: 'the image name (default: the package name)', group: 'Without a recipe:' })
      .option('out', { type: 'string', describe: 'the image directory to write', defaultDescription: 'out/<name>' })
      .option('platform', { choices: PLATFORMS as Platform[], default: 'kvm' as Platform, describe: 'the hypervisor the image is for' })
      .option('format', {
        choices: Object.keys(OUTPUT_FORMATS) as OutputFormat[],
        default: 'initramfs' as OutputFormat,
        describe: `root filesystem format: ${Object.entries(OUTPUT_FORMATS)
          .map(([name, f]) => `${name} (${f.fileName})`)
          .join(', ')}`,
      })
      .option('compression', {
        choices: Object.keys(COMPRESSIONS) as Compression[],
        describe: `how the initramfs is compressed: ${Object.entries(COMPRESSIONS)
          .map(([name, c]) => `${name}: ${c.describe}`)
          .join('; ')}`,
        defaultDescription: 'gzip',
      })
      .option('mirror', { type: 'string', describe: 'Debian mirror for the base', defaultDescription: "the host's apt source" })
      .option('suite', { type: 'string', describe: 'Debian suite for the base', defaultDescription: "the host's" })
      .option('cache', { type: 'string', describe: 'the build cache directory', defaultDescription: '$TINYX_CACHE or ~/.cache/tinyx' })
      .check((args) => {
        if (args.package && args.recipe) throw new Error('give a recipe or --package, not both');
        if (!args.package && !args.recipe) throw new Error('name a recipe (tinyx build nginx) or a package (tinyx build --package memcached --cmd "...")');
        if (args.package && !args.cmd) throw new Error('--package needs --cmd, the command line to run');
        if (!args.package && (args.cmd || args.port !== undefined || args.user || args.name)) throw new Error('--cmd, --port, --user and --name go with --package');
        if (args.port !== undefined && (!Number.isInteger(args.port) || args.port < 1 || args.port > 65535)) throw new Error('--port must be 1-65535');
        return true;
      })
      .example('$0 build nginx', 'build out/nginx from recipes/nginx.yaml')
      .example('$0 build ./myapp.yaml --out images/myapp', 'build from your own recipe file')
      .example('$0 build --package memcached --cmd "/usr/bin/memcached -u nobody -p 11211" --port 11211', 'no recipe: one package, its command, its port')
      .example('$0 build nginx --compression xz', 'the smallest initrd (the kernel needs CONFIG_RD_XZ)')
      .example('$0 build redis --format tar --json', 'a tar of the root, and the manifest as JSON on stdout')
      .epilog(
        'The steps: load the recipe, bootstrap a Debian base (cached), install the packages in an OverlayFS (cached), resolve what the app needs at run time (ELF closure + package data), assemble the root with BusyBox and a generated /init, pack it, write the image directory. Needs root.',
      ) as unknown as Argv<BuildArgs>,
  handler: async (args) => {
    process.exitCode = await buildHandler(args);
  },
};

async function buildHandler(args: BuildArgs): Promise<number> {
  const out = makeOutput(args);
  const interrupt = interruptSignal();
  try {
    const recipe = args.package
      ? recipeFromPackage({ package: args.package, cmd: args.cmd!, port: args.port, user: args.user, name: args.name })
      : args.recipe!;
    const mode = progressMode(out);
    const events: { current?: (event: BuildEvent) => void } = {};
    const plain = mode === 'lines' ? lineProgress(out) : undefined;
    const build = createBuild({
      recipe,
      ...(args.out ? { outDir: args.out } : {}),
      ...(args.cache ? { cacheDir: args.cache } : {}),
      ...(args.mirror ? { mirror: args.mirror } : {}),
      ...(args.suite ? { suite: args.suite } : {}),
      platform: args.platform,
      format: args.format,
      ...(args.compression ? { compression: args.compression } : {}),
      signal: interrupt.signal,
      onEvent: (event) => {
        plain?.(event);
        events.current?.(event);
      },
    });
    await runSteps(build, mode, events);
    const manifest = build.manifest;
    if (out.json) {
      out.result({ ok: true, imageDir: build.outDir, manifest });
    } else {
      const s = manifest.sizes;
      out.line(`\n${manifest.name}: ${build.outDir}`);
      out.line(`  root filesystem  ${manifest.artifacts.rootfs}  ${formatBytes(s.initrd)} (${formatBytes(s.initrdUncompressed)} unpacked, ${manifest.files.length} files, ${manifest.packages.length} packages)`);
      out.line(`  inspect it with: tinyx inspect ${build.outDir}`);
    }
    return 0;
  } catch (error) {
    return reportError(error, out);
  } finally {
    interrupt.dispose();
  }
}
