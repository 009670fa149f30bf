/**
 * The one error family of tinyx. Every error a user can meet carries a code,
 * a message that names the thing at fault, and a hint that says how to fix it.
 * The CLI prints `message` and `hint`, and the stack only with --verbose.
 */

/** What kind of fault: decides the CLI's exit code. */
export type ErrorKind =
  /** Bad input: a recipe, an argument, an unknown name. Exit 2. */
  | 'user'
  /** The host lacks something the pipeline needs: root, a tool, OverlayFS. Exit 3. */
  | 'host'
  /** Something that should have worked did not: a tool failed, the network, a bug. Exit 1. */
  | 'failure'
  /** The build was cancelled (Ctrl-C, SIGTERM, an AbortSignal). Exit 130. */
  | 'interrupted';

export class TinyxError extends Error {
  override name = 'TinyxError';
  readonly code: string;
  readonly hint: string | undefined;
  readonly kind: ErrorKind;

  constructor(code: string, message: string, options: { hint?: string; kind?: ErrorKind; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.kind = options.kind ?? 'failure';
  }
}

/** A recipe, blacklist or option that does not validate. Names the file and the field. */
export class RecipeError extends TinyxError {
  override name = 'RecipeError';
  readonly file: string;
  readonly field: string | undefined;

  constructor(file: string, field: string | undefined, problem: string, hint?: string) {
    super('E_RECIPE', field ? `${file}: ${field}: ${problem}` : `${file}: ${problem}`, { hint, kind: 'user' });
    this.file = file;
    this.field = field;
  }
}

/** A host program the pipeline needs is not installed. Names the Debian package that provides it. */
export class MissingToolError extends TinyxError {
  override name = 'MissingToolError';
  readonly tool: string;
  readonly debianPackage: string;

  constructor(tool: string, debianPackage: string) {
    super('E_MISSING_TOOL', `${tool} is not installed on this host`, {
      kind: 'host',
      hint: `install it with: apt-get install ${debianPackage}   (or run: tinyx doctor --fix)`,
    });
    this.tool = tool;
    this.debianPackage = debianPackage;
  }
}

/** A subprocess exited non-zero. Carries the command line and the tail of its output. */
export class CommandFailedError extends TinyxError {
  override name = 'CommandFailedError';
  readonly command: string;
  readonly exitCode: number | undefined;
  readonly outputTail: string;

  constructor(command: string, exitCode: number | undefined, outputTail: string, hint?: string) {
    const how = exitCode === undefined ? 'was killed' : `exited with status ${exitCode}`;
    const tail = outputTail.trim() ? `\n${indent(outputTail.trim())}` : '';
    super('E_COMMAND', `${command} ${how}${tail}`, { hint, kind: 'failure' });
    this.command = command;
    this.exitCode = exitCode;
    this.outputTail = outputTail;
  }
}

/** The work was cancelled by a signal. Cleanup has run by the time the caller sees it. */
export class InterruptedError extends TinyxError {
  override name = 'InterruptedError';
  constructor(reason = 'interrupted') {
    super('E_INTERRUPTED', reason, { kind: 'interrupted' });
  }
}

/** Throws InterruptedError when the signal has fired: called between units of work. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError(abortReason(signal));
}

export function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (typeof reason === 'string') return reason;
  if (reason instanceof Error && reason.name !== 'AbortError') return reason.message;
  return 'interrupted';
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  | ${line}`)
    .join('\n');
}
