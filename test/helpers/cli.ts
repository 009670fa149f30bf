import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The tinyx command as users run it (packages/cli/bin/tinyx.js), from the compiled test's place. */
export const TINYX_BIN = fileURLToPath(new URL('../../../packages/cli/bin/tinyx.js', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Run through another command first: ['setpriv', '--reuid=65534', ...] or ['unshare', '-m', ...]. */
  wrap?: string[];
}

/** Starts tinyx in its own process; `lines` collects stderr line by line for tests that react to progress. */
export function startCli(args: string[], options: CliOptions = {}): { child: ChildProcess; done: Promise<CliResult>; waitForLine(re: RegExp, timeoutMs: number): Promise<string> } {
  const argv = [...(options.wrap ?? []), process.execPath, TINYX_BIN, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, CI: '1', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    for (const line of chunk.split('\n')) {
      for (const waiter of [...waiters]) {
        if (waiter.re.test(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    child,
    done,
    waitForLine: (re, timeoutMs) =>
      new Promise<string>((resolve, reject) => {
        const seen = stderr.split('\n').find((line) => re.test(line));
        if (seen) return resolve(seen);
        const timer = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stderr so far:\n${stderr.slice(-2000)}`)), timeoutMs);
        waiters.push({ re, resolve: (line) => (clearTimeout(timer), resolve(line)) });
        void done.then(() => {
          clearTimeout(timer);
          reject(new Error(`tinyx exited before a line matching ${re}; stderr:\n${stderr.slice(-2000)}`));
        });
      }),
  };
}

export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).done;
}
