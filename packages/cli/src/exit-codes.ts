import type { ErrorKind } from '@tinyx/image';

/** The exit codes of every tinyx command; `tinyx --help` lists them. */
export const EXIT = {
  ok: 0,
  /** Something failed that should have worked: a tool, the network, a bug. */
  failure: 1,
  /** Bad input: a recipe, an argument, an unknown name. */
  user: 2,
  /** The host lacks a prerequisite: root, a tool, OverlayFS (tinyx doctor tells which). */
  host: 3,
  /** Interrupted by Ctrl-C or SIGTERM, after cleaning up. */
  interrupted: 130,
} as const;

export function exitCodeFor(kind: ErrorKind): number {
  return EXIT[kind === 'interrupted' ? 'interrupted' : kind];
}

export const EXIT_CODES_HELP = `Exit codes: 0 success, 1 failure, 2 bad input (recipe, arguments), 3 host not ready (see tinyx doctor), 130 interrupted.`;
