import { execa, type Options } from 'execa';
import { CommandFailedError, InterruptedError, MissingToolError, abortReason } from './errors.js';
import { debianPackageFor } from './host-tools.js';

export interface RunOptions {
  /** Cancels the command: its whole process group gets SIGTERM, then SIGKILL. */
  signal?: AbortSignal | undefined;
  cwd?: string;
  /** Extra environment on top of LC_ALL=C and a fixed PATH; a variable given as undefined is taken out of the inherited one. */
  env?: Record<string, string | undefined>;
  /** Data for stdin; the default is no stdin at all. */
  input?: string;
  /** Called with each line the command prints (stdout and stderr), for logs and progress. */
  onLine?: (line: string) => void;
  /** Added to the error when the command fails. */
  hint?: string;
  /** Do not throw on a non-zero exit; the caller reads `exitCode`. */
  allowFailure?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Lines of output kept for the error message when a command fails. */
const TAIL_LINES = 25;
/** How long a cancelled process group gets between SIGTERM and SIGKILL. */
const KILL_GRACE_MS = 3000;

/** The PATH every subprocess sees: the host's sbin directories are needed as root and are not always on a user's PATH. */
export const SUBPROCESS_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

let debugLog: ((line: string) => void) | undefined;

/** Where `run` writes each command line it starts (the CLI's --verbose). */
export function setCommandLog(log: ((line: string) => void) | undefined): void {
  debugLog = log;
}

/**
 * Shows a command line in the command log (--verbose), as `run` does for its
 * own: for the processes started some other way (QEMU, which outlives the call).
 * Returns the line as shown.
 */
export function logCommand(file: string, args: readonly string[]): string {
  const commandLine = [file, ...args].map(quoteForDisplay).join(' ');
  debugLog?.(`$ ${commandLine}`);
  return commandLine;
}

/**
 * The one way tinyx starts a subprocess: LC_ALL=C so that output parses the
 * same everywhere, no stdin, a fixed PATH, cancellation of the whole process
 * group (debootstrap and apt start children of their own), and errors that
 * carry the command line and the tail of the output.
 */
export async function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const commandLine = logCommand(file, args);
  const signal = options.signal;
  if (signal?.aborted) throw new InterruptedError(abortReason(signal));

  const execaOptions: Options = {
    cwd: options.cwd,
    env: { LC_ALL: 'C', LANG: 'C', PATH: SUBPROCESS_PATH, ...options.env },
    extendEnv: true,
    reject: false,
    all: true,
    stripFinalNewline: true,
    // A process group of its own, so that cancelling reaches the grandchildren too
    // (dpkg under apt under chroot), and Ctrl-C on the terminal reaches only us.
    detached: true,
    cleanup: true,
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
  };

  // Started through setpriv --pdeathsig: if tinyx itself is killed (SIGKILL, where no cleanup can run),
  // the command dies with it instead of working on in the cache; its own children then finish their
  // current piece and stop. What it left under tmp/ is swept by the next build (Cache.sweepStale).
  const subprocess = execa('setpriv', ['--pdeathsig', 'KILL', '--', file, ...args], execaOptions);
  let cancelled = false;
  const onAbort = (): void => {
    cancelled = true;
    killGroup(subprocess.pid, 'SIGTERM');
    setTimeout(() => killGroup(subprocess.pid, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  signal?.addEventListener('abort', onAbort, { once: true });

  const tail: string[] = [];
  if (subprocess.all) {
    let pending = '';
    subprocess.all.setEncoding('utf8');
    subprocess.all.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > TAIL_LINES) tail.shift();
        options.onLine?.(line);
      }
    });
  }

  try {
    const result = await subprocess;
    if (cancelled && signal) throw new InterruptedError(abortReason(signal));
    const code = (result as { code?: string }).code;
    if (code === 'ENOENT' || (result.exitCode === 127 && String(result.stderr ?? '').startsWith(`setpriv: failed to execute ${file}: No such file`))) {
      const pkg = debianPackageFor(file);
      if (pkg) throw new MissingToolError(file, pkg);
      throw new CommandFailedError(commandLine, undefined, `${file}: not found`, options.hint);
    }
    const exitCode = result.exitCode ?? -1;
    const stdout = String(result.stdout ?? '');
    const stderr = String(result.stderr ?? '');
    if (exitCode !== 0 && !options.allowFailure) {
      const output = String(result.all ?? '') || `${stdout}\n${stderr}`;
      const lastLines = output.split('\n').slice(-TAIL_LINES).join('\n');
      throw new CommandFailedError(commandLine, result.exitCode, lastLines, options.hint);
    }
    return { stdout, stderr, exitCode };
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // The group is already gone.
  }
}

function quoteForDisplay(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
