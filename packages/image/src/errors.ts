/**
 * The one error family of tinyx, for the builder, the toolstack and the CLI
 * alike. Every error a user can meet carries a code, a message that names the
 * thing at fault, and a hint that says how to fix it. The CLI prints `message`
 * and `hint`, the stack only with --verbose, and picks the exit code from `kind`.
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

/**
 * Every code an error of tinyx carries: a closed list, so that a script that
 * reads `--json`'s `error.code` can rely on it, and a new code is a decision.
 */
export type ErrorCode =
  // Anywhere
  | 'E_USAGE'
  | 'E_INTERRUPTED'
  | 'E_COMMAND'
  | 'E_MISSING_TOOL'
  | 'E_NOT_ROOT'
  | 'E_NO_SPACE'
  | 'E_INTERNAL'
  // Recipes and their search
  | 'E_RECIPE'
  | 'E_RECIPE_DIR'
  | 'E_UNKNOWN_RECIPE'
  | 'E_NO_UNIT'
  | 'E_FEATURE'
  | 'E_FORMAT'
  | 'E_PLATFORM'
  // The build pipeline
  | 'E_ARCH'
  | 'E_NO_MIRROR'
  | 'E_NETWORK'
  | 'E_NO_OVERLAYFS'
  | 'E_UNMOUNT'
  | 'E_CONTROL_READ'
  | 'E_CONTROL_SYNTAX'
  | 'E_DEPENDS'
  | 'E_DPKG_INFO'
  | 'E_DPKG_STATOVERRIDE'
  | 'E_DPKG_STATUS'
  | 'E_VERSION'
  | 'E_ENTRY_MISSING'
  | 'E_ENTRY_NOT_PACKAGED'
  | 'E_LIBRARY_MISSING'
  | 'E_NO_ACCOUNT'
  | 'E_RESOLVE'
  | 'E_APP_FAILED'
  | 'E_APP_NOT_READY'
  | 'E_VERIFY'
  | 'E_NO_KERNEL_SOURCE'
  | 'E_KERNEL_SOURCE'
  | 'E_KERNEL_PATCH'
  | 'E_KERNEL_CONFIG'
  | 'E_KERNEL_BUILD'
  | 'E_MINIMIZE'
  | 'E_EXISTS'
  | 'E_OUTPUT_NOT_OURS'
  // Image directories
  | 'E_NO_IMAGE'
  | 'E_BAD_MANIFEST'
  | 'E_IMAGE_FILE'
  | 'E_NO_KERNEL'
  | 'E_KERNEL_MISSING'
  | 'E_XL_CONFIG'
  // Running VMs
  | 'E_RUNTIME_DIR'
  | 'E_VM_ID'
  | 'E_NO_VM'
  | 'E_VM_GONE'
  | 'E_NOT_READY'
  | 'E_PORT_IN_USE'
  | 'E_DESTROY'
  | 'E_SAVE'
  | 'E_RESTORE'
  | 'E_NO_SAVED_STATE'
  | 'E_STATE_FILE_NOT_OURS'
  | 'E_NO_QEMU'
  | 'E_QEMU'
  | 'E_QMP'
  | 'E_QMP_BUSY'
  | 'E_NO_XL'
  | 'E_NOT_DOM0'
  | 'E_XL'
  // Registries (tinyx push, pull)
  | 'E_REFERENCE'
  | 'E_REGISTRY'
  | 'E_REGISTRY_AUTH'
  | 'E_NOT_TINYX_ARTIFACT'
  | 'E_DIGEST';

export class TinyxError extends Error {
  override name = 'TinyxError';
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly kind: ErrorKind;

  constructor(code: ErrorCode, message: string, options: { hint?: string | undefined; kind?: ErrorKind; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.kind = options.kind ?? 'failure';
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
    const tail = outputTail.trim() ? `\n${quoteLines(outputTail.trim().split('\n'))}` : '';
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

/** Lines quoted for an error message ("  | " before each): a command's output, a console's tail. */
export function quoteLines(lines: readonly string[]): string {
  return lines.map((line) => `  | ${line}`).join('\n');
}
