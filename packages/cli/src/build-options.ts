import type { Argv } from 'yargs';
import { relative } from 'node:path';
import {
  BUNDLED_RECIPES_DIR,
  WORKING_DIRECTORY_RECIPE_DIRS,
  createBuild,
  recipeFromPackage,
  type Build,
  type BuildEvent,
  type BuildOptions,
} from '@tinyx/builder';
import { DEFAULT_PLATFORM, PLATFORMS, PLATFORM_NAMES, type Platform } from '@tinyx/image';
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
  recipes?: string[];
}

/** Where the image comes from: shared by `build` and `kernel`. */
export interface SourceArgs {
  platform: Platform;
  mirror?: string;
  suite?: string;
  cache?: string;
  'kernel-source'?: string;
  'cache-from'?: string[];
  'cache-to'?: string;
  'cache-insecure'?: boolean;
}

/** The recipe search path in words, for --help; the error for an unknown name lists the real directories. */
export function recipeSearchHelp(): string {
  const own = relative(process.cwd(), BUNDLED_RECIPES_DIR) || '.';
  const local = WORKING_DIRECTORY_RECIPE_DIRS.map((d) => `./${d}/`).join(' and ');
  return `A recipe name NAME is the file NAME.yaml in the first of these directories that has one: each --recipes DIR in order, each directory of $TINYX_RECIPES (separated by ":"), ${local} of the working directory when they exist, then the recipes that come with tinyx (${own.startsWith('..') ? BUNDLED_RECIPES_DIR : own}).`;
}

export function recipeOptions<T>(yargs: Argv<T>, command: string): Argv<T & RecipeArgs> {
  return yargs
    .positional('recipe', {
      type: 'string',
      describe: `a recipe name (NAME.yaml along the recipe search path: --recipes, $TINYX_RECIPES, ${WORKING_DIRECTORY_RECIPE_DIRS.map((d) => `./${d}/`).join(', ')}, tinyx's own) or the path of a recipe file`,
    })
    .option('recipes', {
      type: 'string',
      array: true,
      requiresArg: true,
      describe: 'a directory of recipes, searched before all others (repeatable)',
    })
    .option('package', { type: 'string', describe: "a Debian package to build without a recipe: its systemd unit says how to run it (or --cmd)", group: 'Without a recipe:' })
    .option('cmd', { type: 'string', describe: "the command line to run, for --package (default: the ExecStart of the package's systemd unit)", group: 'Without a recipe:' })
    .option('port', { type: 'number', describe: 'the TCP port that tells the app is ready, for --package', group: 'Without a recipe:' })
    .option('user', { type: 'string', describe: "the account to run the app as (default: the unit's User=, else root)", group: 'Without a recipe:' })
    .option('name', { type: 'string', describe: 'the image name (default: the package name)', group: 'Without a recipe:' })
    .check((args) => {
      if (args.package && args.recipe) throw new Error('give a recipe or --package, not both');
      if (!args.package && !args.recipe) throw new Error(`name a recipe (tinyx ${command} nginx) or a package (tinyx ${command} --package memcached --cmd "...")`);
      if (!args.package && (args.cmd || args.port !== undefined || args.user || args.name)) throw new Error('--cmd, --port, --user and --name go with --package');
      if (args.package && args.recipes) throw new Error('--recipes goes with a recipe name, not --package');
      if (args.port !== undefined && (!Number.isInteger(args.port) || args.port < 1 || args.port > 65535)) throw new Error('--port must be 1-65535');
      return true;
    }) as unknown as Argv<T & RecipeArgs>;
}

export function sourceOptions<T>(yargs: Argv<T>): Argv<T & SourceArgs> {
  return yargs
    .option('platform', {
      choices: PLATFORM_NAMES,
      default: DEFAULT_PLATFORM,
      describe: `the hypervisor the image is for: ${PLATFORM_NAMES.map((name) => `${name}, ${PLATFORMS[name].description}`).join('; ')}`,
    })
    .option('kernel-source', { type: 'string', describe: "a kernel tarball (unpacked and patched with kernel/patches, like Debian's linux-source) or a tree (built as it is) instead of Debian's linux-source" })
    .option('mirror', { type: 'string', describe: 'Debian mirror for the base', defaultDescription: "the host's apt source" })
    .option('suite', { type: 'string', describe: 'Debian suite for the base', defaultDescription: "the host's" })
    .option('cache', { type: 'string', describe: 'the build cache directory', defaultDescription: '$TINYX_CACHE or ~/.cache/tinyx' })
    .option('cache-from', {
      type: 'string',
      array: true,
      requiresArg: true,
      describe: 'a registry repository (REGISTRY/REPOSITORY, no tag) to fetch the kernel and its configuration from when the local cache lacks them: no kernel compile (repeatable)',
      group: 'Shared kernel cache:',
    })
    .option('cache-to', { type: 'string', requiresArg: true, describe: 'a registry repository to send the kernel and its configuration to, unless it holds them', group: 'Shared kernel cache:' })
    .option('cache-insecure', { type: 'boolean', describe: 'the --cache-from/--cache-to registry speaks plain HTTP (localhost, your own network)', group: 'Shared kernel cache:' }) as unknown as Argv<T & SourceArgs>;
}

/** The recipe and where its name is looked up, as BuildOptions. */
export function recipeFrom(args: RecipeArgs): Pick<BuildOptions, 'recipe' | 'recipeSearch'> {
  if (args.package && args.cmd === undefined) return { recipe: { fromUnit: { package: args.package, port: args.port, user: args.user, name: args.name } } };
  if (args.package) return { recipe: recipeFromPackage({ package: args.package, cmd: args.cmd!, port: args.port, user: args.user, name: args.name }) };
  return { recipe: args.recipe!, recipeSearch: { dirs: args.recipes ?? [], dirsLabel: '--recipes' } };
}

export function sourceFrom(args: SourceArgs): Partial<BuildOptions> {
  return {
    platform: args.platform,
    ...(args['kernel-source'] ? { kernelSource: args['kernel-source'] } : {}),
    ...(args.mirror ? { mirror: args.mirror } : {}),
    ...(args.suite ? { suite: args.suite } : {}),
    ...(args.cache ? { cacheDir: args.cache } : {}),
    ...(args['cache-from']?.length ? { cacheFrom: args['cache-from'] } : {}),
    ...(args['cache-to'] ? { cacheTo: args['cache-to'] } : {}),
    ...(args['cache-insecure'] ? { cacheInsecure: true } : {}),
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
