import { TinyxError } from '@tinyx/image';
import { EXIT, exitCodeFor } from './exit-codes.js';

/** Where a command writes: the CLI owns the terminal, the libraries never print. */
export interface Output {
  json: boolean;
  verbose: boolean;
  /** A human line on stdout (suppressed under --json). */
  line(text?: string): void;
  /** A progress or warning line on stderr (suppressed under --json). */
  note(text: string): void;
  /** The single machine-readable result of a --json run. */
  result(value: unknown): void;
}

export function makeOutput(options: { json?: boolean; verbose?: boolean }): Output {
  const json = !!options.json;
  return {
    json,
    verbose: !!options.verbose,
    line: (text = '') => {
      if (!json) process.stdout.write(`${text}\n`);
    },
    note: (text) => {
      if (!json) process.stderr.write(`${text}\n`);
    },
    result: (value) => {
      process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
  };
}

/** Prints an error the way a user can act on it (message, hint; stack with --verbose) and returns the exit code. */
export function reportError(error: unknown, out: Output): number {
  const tinyx = error instanceof TinyxError ? error : undefined;
  const code = tinyx ? exitCodeFor(tinyx.kind) : EXIT.failure;
  if (out.json) {
    out.result({
      ok: false,
      error: {
        code: tinyx?.code ?? 'E_INTERNAL',
        kind: tinyx?.kind ?? 'failure',
        message: error instanceof Error ? error.message : String(error),
        hint: tinyx?.hint ?? null,
      },
    });
    return code;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`\ntinyx: error: ${message}\n`);
  if (tinyx?.hint) process.stderr.write(`  hint: ${tinyx.hint}\n`);
  if (!tinyx) process.stderr.write('  this looks like a bug in tinyx; run again with --verbose for the stack trace\n');
  if (out.verbose && error instanceof Error && error.stack) process.stderr.write(`\n${error.stack}\n`);
  return code;
}
