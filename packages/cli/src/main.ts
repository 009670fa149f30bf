import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { setCommandLog } from '@tinyx/builder';
import { buildCommand } from './commands/build.js';
import { doctorCommand } from './commands/doctor.js';
import { inspectCommand } from './commands/inspect.js';
import { EXIT, EXIT_CODES_HELP } from './exit-codes.js';

/** The tinyx command line. Returns the exit code; bin/tinyx.js sets it. */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--verbose')) setCommandLog((line) => process.stderr.write(`${line}\n`));
  let usageError = false;
  await yargs(hideBin(['node', 'tinyx', ...argv]))
    .scriptName('tinyx')
    .usage('tinyx: minimal single-application Linux VMs, the TinyX way (LightVM, SOSP 2017)\n\nUsage: $0 <command> [options]')
    .command(buildCommand)
    .command(inspectCommand)
    .command(doctorCommand)
    .demandCommand(1, 'name a command: build, inspect or doctor')
    .strict()
    .recommendCommands()
    .example('$0 doctor --fix', 'install what the host needs')
    .example('$0 build nginx', 'build out/nginx')
    .example('$0 inspect out/nginx', 'see what is inside')
    .epilog(`${EXIT_CODES_HELP}\nCache: $TINYX_CACHE or ~/.cache/tinyx. Docs: README.md.`)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((message, error) => {
      if (error) throw error;
      usageError = true;
      process.stderr.write(`tinyx: ${message}\nrun "tinyx --help" or "tinyx <command> --help" for usage\n`);
    })
    .help()
    .version(false)
    .parseAsync();
  if (usageError) return EXIT.user;
  return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
}
