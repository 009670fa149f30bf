import type { Argv } from 'yargs';
import { PLATFORMS, createBuild, recipeFromPackage, type Build, type BuildEvent, type BuildOptions, type Platform, type Recipe } from '@tinyx/builder';
import { interruptSignal } from './interrupt.js';
import type { Output } from './output.js';
import { lineProgress, progressMode, runSteps } from './progress.js';

/** What names the app: a recipe, or a package with its command line. Shared by `build` and `kernel`. */
export interface RecipeArgs {
  recipe?: string;
  package?: string;
  cmd?: string;
  port?: number;
  user?: string;
  name?: string;
}

/** Where the image comes from: shared by `build` and `kernel`. */
export interface SourceArgs {
  platform: Platform;
  mirror?: string;
  suite?: string;
  cache?: string;
  'kernel-source'?: string;
}

export function recipeOptions<T>(yargs: Argv<T>, command: string): Argv<T & RecipeArgs> {
  return yargs
    .positional('recipe', { type: 'string', describe: 'a recipe name (see recipes/) or the path of a recipe file' })
    .option('package', { type: 'string', describe: 'a Debian package to build without a recipe (with --cmd)', group: 'Without a recipe:' })
    .option('cmd', { type: 'string', describe: 'the command line to run, for --package', group: 'Without a recipe:' })
    .option('port', { type: 'number', describe: 'the TCP port that tells the app is ready, for --package', group: 'Without a recipe:' })
    .option('user', { type: 'string', describe: 'the account to run --cmd as (default root)', group: 'Without a recipe:' })
    .option('name', { type: 'string', describe: 'the image name (default: the package name)', group: 'Without a recipe:' })
    .check((args) => {
      if (args.package && args.recipe) throw new Error('give a recipe or --package, not both');
      if (!args.package && !args.recipe) throw new Error(`name a recipe (tinyx ${command} nginx) or a package (tinyx ${command} --package memcached --cmd "...")`);
      if (args.package && !args.cmd) throw new Error('--package needs --cmd, the command line to run');
      if (!args.package && (args.cmd || args.port !== undefined || args.user || args.name)) throw new Error('--cmd, --port, --user and --name go with --package');
      if (args.port !== undefined && (!Number.isInteger(args.port) || args.port < 1 || args.port > 65535)) throw new Error('--port must be 1-65535');
      return true;
    }) as unknown as Argv<T & RecipeArgs>;
}

export function sourceOptions<T>(yargs: Argv<T>): Argv<T & SourceArgs> {
  return yargs
    .option('platform', {
      choices: PLATFORMS as Platform[],
      default: 'kvm' as Platform,
      describe: 'the hypervisor the kernel is for: kvm (QEMU microvm/q35, KVM or TCG), xen-pvh, xen-pv',
    })
    .option('kernel-source', { type: 'string', describe: "a kernel tree or tarball instead of Debian's linux-source" })
    .option('mirror', { type: 'string', describe: 'Debian mirror for the base', defaultDescription: "the host's apt source" })
    .option('suite', { type: 'string', describe: 'Debian suite for the base', defaultDescription: "the host's" })
    .option('cache', { type: 'string', describe: 'the build cache directory', defaultDescription: '$TINYX_CACHE or ~/.cache/tinyx' }) as unknown as Argv<T & SourceArgs>;
}

export function recipeFrom(args: RecipeArgs): string | Recipe {
  return args.package ? recipeFromPackage({ package: args.package, cmd: args.cmd!, port: args.port, user: args.user, name: args.name }) : args.recipe!;
}

export function sourceFrom(args: SourceArgs): Partial<BuildOptions> {
  return {
    platform: args.platform,
    ...(args['kernel-source'] ? { kernelSource: args['kernel-source'] } : {}),
    ...(args.mirror ? { mirror: args.mirror } : {}),
    ...(args.suite ? { suite: args.suite } : {}),
    ...(args.cache ? { cacheDir: args.cache } : {}),
  };
}

/**
 * Runs a build with the terminal's progress display, Ctrl-C turned into
 * cancellation, and cleanup on every path. Returns the finished build.
 */
export async function runBuild(out: Output, options: Omit<BuildOptions, 'signal' | 'onEvent'>): Promise<Build> {
  const interrupt = interruptSignal();
  try {
    const mode = progressMode(out);
    const events: { current?: (event: BuildEvent) => void } = {};
    const plain = mode === 'lines' ? lineProgress(out) : undefined;
    const build = createBuild({
      ...options,
      signal: interrupt.signal,
      onEvent: (event) => {
        plain?.(event);
        events.current?.(event);
      },
    });
    await runSteps(build, mode, events);
    return build;
  } finally {
    interrupt.dispose();
  }
}
