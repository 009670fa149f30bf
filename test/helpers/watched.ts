import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';

/** A long-running process a test starts and watches: its output so far, whether it ended, and a stop that waits for its end. */
export interface Watched {
  output(): string;
  exited(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts `argv` (the caller names the program, and declares it to the host
 * tools registry through integrationTest) with stdout and stderr collected.
 * `stop()` kills it with SIGKILL and waits for it to close.
 */
export function startWatched(argv: readonly string[], env: NodeJS.ProcessEnv): Watched {
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    output: () => output,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await closed;
    },
  };
}

/** What a UNIX socket answers to one line (haproxy's admin socket: `show info`). */
export function askSocket(path: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = createConnection(path);
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => resolve(answer)).on('error', reject);
    socket.write(`${command}\n`);
  });
}
