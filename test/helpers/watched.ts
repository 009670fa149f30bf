import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { IMAGE_ENV } from './image.js';

/** A long-running process a test starts and watches: its output so far, whether it ended, and a stop that waits for its end. */
export interface Watched {
  /** The host pid of argv[0] (for unshare: the process that owns the new namespaces). */
  pid: number;
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
    pid: child.pid!,
    output: () => output,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await closed;
    },
  };
}

/**
 * Runs an image's /init chrooted into its unpacked root, as PID 1 of fresh
 * PID, mount, network and UTS namespaces (/init sets the host name and mounts
 * /proc): what the VM would run, without a kernel. `stop()` kills unshare,
 * whose death kills /init and so the namespace. The caller's test declares
 * `unshare` (integrationTest({ tools })).
 */
export function bootInRoot(root: string): Watched {
  return startWatched(['unshare', '--fork', '--pid', '--mount', '--net', '--uts', '--kill-child', 'chroot', root, '/init'], IMAGE_ENV);
}

/**
 * bootInRoot with a network card: a veth named eth0 in the namespace, and
 * TINYX_CMDLINE giving /init the address QEMU's user network gives a guest
 * (10.0.2.15/24), which it puts on eth0 as in the VM.
 */
export function bootInRootWithNic(root: string): Watched {
  const setup = 'ip link add eth0 type veth peer name tinyx-peer && ip link set tinyx-peer up && exec chroot "$0" /init';
  return startWatched(['unshare', '--fork', '--pid', '--mount', '--net', '--uts', '--kill-child', 'sh', '-c', setup, root], { ...IMAGE_ENV, TINYX_CMDLINE: 'tinyx.ip=10.0.2.15/24' });
}

/** What a TCP server at host:port inside the network namespace of `pid` answers to `request` (bytes as latin1; its first chunk), through nsenter and this Node.js. */
export function askInNamespace(pid: number, host: string, port: number, request: string): Promise<string> {
  const script = `
    const socket = require('node:net').createConnection({ host: ${JSON.stringify(host)}, port: ${port} });
    socket.setTimeout(5000, () => { console.log(JSON.stringify('timeout')); process.exit(1); });
    socket.on('connect', () => socket.write(Buffer.from(${JSON.stringify(request)}, 'latin1')));
    socket.once('data', (d) => { console.log(JSON.stringify(String(d))); process.exit(0); });
    socket.on('error', (e) => { console.log(JSON.stringify('error ' + e.message)); process.exit(1); });`;
  return clientInNamespace<string>(pid, script);
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

/**
 * An HTTP GET of 127.0.0.1:port inside the network namespace of `pid` (a
 * sandbox started with unshare --net): nsenter runs this very Node.js there
 * as the client. Resolves to the status line and the body.
 */
export function httpGetInNamespace(pid: number, port: number, path: string): Promise<{ status: string; body: string }> {
  const script = `
    const http = require('node:http');
    http.get({ host: '127.0.0.1', port: ${port}, path: ${JSON.stringify(path)} }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c) => (body += c)).on('end', () => console.log(JSON.stringify({ status: res.statusCode + ' ' + res.statusMessage, body })));
    }).on('error', (e) => console.log(JSON.stringify({ status: 'error ' + e.message, body: '' })));`;
  return clientInNamespace<{ status: string; body: string }>(pid, script);
}

/** Runs `script` with this very Node.js in the network namespace of `pid` (nsenter): the JSON it prints. */
function clientInNamespace<T>(pid: number, script: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=/proc/${pid}/ns/net`, '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.on('error', reject);
    child.on('close', () => {
      try {
        resolve(JSON.parse(out) as T);
      } catch {
        reject(new Error(`no answer from the client in the namespace: ${out}`));
      }
    });
  });
}
