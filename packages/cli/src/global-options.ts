import type { Argv } from 'yargs';

export interface GlobalArgs {
  json?: boolean;
  verbose?: boolean;
}

/** Options every command takes. */
export function globalOptions<T>(yargs: Argv<T>): Argv<T & GlobalArgs> {
  return yargs
    .option('json', { type: 'boolean', describe: 'print one machine-readable JSON result on stdout, and no progress' })
    .option('verbose', { type: 'boolean', describe: 'show every command run and its output, and stack traces' });
}
