import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { setCommandLog } from '@tinyx/image';
import { buildCommand } from './commands/build.js';
import { doctorCommand } from './commands/doctor.js';
import { exportCommand } from './commands/export.js';
import { inspectCommand } from './commands/inspect.js';
import { kernelCommand } from './commands/kernel.js';
import { poolCommand } from './commands/pool.js';
import { recipeCommand } from './commands/recipe.js';
import { pullCommand, pushCommand } from './commands/registry.js';
import { restoreCommand, runCommand } from './commands/run.js';
import { logsCommand, pauseCommand, psCommand, saveCommand, stopCommand, unpauseCommand } from './commands/vms.js';
import { EXIT, EXIT_CODES_HELP } from './exit-codes.js';

class UsageError extends Error {}

/** The tinyx command line. Returns the exit code; bin/tinyx.js sets it. */
export async function main(argv: string[]): Promise<number> {
  // `tinyx inspect out/nginx | head`: the reader left; stop quietly instead of a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  if (argv.includes('--verbose')) setCommandLog((line) => process.stderr.write(`${line}\n`));
  let usage: string | undefined;
  const parser = yargs(hideBin(['node', 'tinyx', ...argv]))
    .scriptName('tinyx')
    .usage('tinyx: minimal single-application Linux VMs, the TinyX way (LightVM, SOSP 2017)\n\nUsage: $0 <command> [options]')
    .command(buildCommand)
    .command(inspectCommand)
    .command(runCommand)
    .command(psCommand)
    .command(pauseCommand)
    .command(unpauseCommand)
    .command(saveCommand)
    .command(restoreCommand)
    .command(stopCommand)
    .command(logsCommand)
    .command(pushCommand)
    .command(pullCommand)
    .command(exportCommand)
    .command(poolCommand)
    .command(kernelCommand)
    .command(recipeCommand)
    .command(doctorCommand)
    .demandCommand(1, 'name a command: build, run, inspect, push, pull, kernel or doctor')
    .strict()
    .recommendCommands()
    .example('$0 doctor --fix', 'install what the host needs')
    .example('$0 build nginx', 'build out/nginx')
    .example('$0 inspect out/nginx', 'see what is inside')
    .example('$0 run out/nginx --check', 'boot it and wait until nginx answers')
    .epilog(`${EXIT_CODES_HELP}\nCache: $TINYX_CACHE or ~/.cache/tinyx. Docs: README.md.`)
    .wrap(Math.min(110, process.stdout.columns || 100))
    // Handlers catch their own errors and set the exit code, so whatever reaches
    // here is a usage error (a bad option, a failed check): stop before any handler runs.
    .fail((message, error) => {
      usage = message || error?.message || 'bad usage';
      throw new UsageError(usage);
    })
    .help()
    .version(false);
  try {
    await parser.parseAsync();
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`tinyx: ${usage}\nrun "tinyx --help" or "tinyx <command> --help" for usage\n`);
    return EXIT.user;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
}
