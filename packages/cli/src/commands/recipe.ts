import { mkdir } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { BUNDLED_RECIPES_DIR, recipeToYaml, writeNewFile } from '@tinyx/builder';
import { runBuild, sourceFrom, sourceOptions, type SourceArgs } from '../build-options.js';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError } from '../output.js';

interface RecipeInitArgs extends GlobalArgs, SourceArgs {
  package: string;
  out?: string;
  port?: number;
  user?: string;
  name?: string;
}

const recipeInitCommand: CommandModule<object, RecipeInitArgs> = {
  command: 'init',
  describe: "Write the recipe a package's systemd unit amounts to, as a recipe file to edit",
  builder: (yargs) =>
    sourceOptions(globalOptions(yargs as Argv<object>))
      .option('package', { type: 'string', demandOption: true, describe: 'the Debian package whose systemd unit to read' })
      .option('out', { type: 'string', describe: 'the recipe file to write (a new path: an existing file is never overwritten)', defaultDescription: 'recipes/<name>.yaml' })
      .option('port', { type: 'number', describe: 'the TCP port that tells the app is ready (a unit names none)' })
      .option('user', { type: 'string', describe: "the account to run the app as (default: the unit's User=, else root)" })
      .option('name', { type: 'string', describe: 'the recipe name (default: the package name)' })
      .check((args) => {
        if (args.port !== undefined && (!Number.isInteger(args.port) || args.port < 1 || args.port > 65535)) throw new Error('--port must be 1-65535');
        return true;
      })
      .example('$0 recipe init --package haproxy', 'install haproxy (cached), read its unit, write recipes/haproxy.yaml')
      .example('$0 recipe init --package redis-server --port 6379 --out my/redis.yaml', 'with a readiness port, to a file of your choice')
      .epilog(
        'The package is installed on the Debian base (both cached, as for a build); its unit (<package>.service, else the only service unit the package ships) gives ExecStart (in the foreground), User, Environment and EnvironmentFile, the *Directory= settings, ExecStartPre as the check when it tests the configuration; the tmpfiles.d entries of the install give directories. The file starts with comments saying where each setting came from. `tinyx build <name>` then finds recipes/<name>.yaml.',
      ) as unknown as Argv<RecipeInitArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      const build = await runBuild(out, { recipe: { fromUnit: { package: args.package, port: args.port, user: args.user, name: args.name } }, ...sourceFrom(args), goal: 'recipe' });
      const { recipe, derivedFrom } = build.derivedRecipe;
      const file = resolve(args.out ?? join('recipes', `${recipe.name}.yaml`));
      await mkdir(dirname(file), { recursive: true });
      // Editors validate the file against the schema of the tinyx that wrote it, found from where the file is.
      const schema = relative(dirname(file), join(BUNDLED_RECIPES_DIR, 'schema.json'));
      await writeNewFile(file, recipeToYaml(recipe, derivedFrom, { schema }));
      const shown = relative(process.cwd(), file).startsWith('..') ? file : relative(process.cwd(), file);
      if (out.json) out.result({ ok: true, file, recipe, derivedFrom });
      else {
        out.line(`${shown}: the recipe from ${derivedFrom.unit}`);
        out.line(`  cmd   ${recipe.entrypoint.cmd.join(' ')} (as ${recipe.entrypoint.user})`);
        for (const n of derivedFrom.notCarried) out.line(`  not carried over: ${n.key}=${n.value} (${n.why})`);
        out.line(`  build it with: tinyx build ${args.out ? shown : recipe.name}`);
      }
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

export const recipeCommand: CommandModule = {
  command: 'recipe <command>',
  describe: 'Work with recipe files',
  builder: (yargs) => yargs.command(recipeInitCommand).demandCommand(1, 'name a recipe command: init'),
  handler: () => undefined,
};
