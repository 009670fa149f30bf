import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, readlink } from 'node:fs/promises';
import { debianPackageFor, SUBPROCESS_PATH, type Readiness } from '@tinyx/image';
import { MissingToolError } from '../errors.js';

/** How a sandboxed program is started. */
export interface SandboxOptions {
  /**
   * The shell lines run first as PID 1 of the namespaces, on the host's
   * programs (ip, mount), before the program: they bring up lo and mount
   * what the root needs. `$ROOT` is the root.
   */
  setup: string[];
  root: string;
  /**
   * The program: `argv` inside the root. `chroot` starts it with chroot(1)
   * as root (an image's /init, which switches ids itself); `as` starts it
   * with unshare --root --wd --setuid --setgid (an app, as its account).
   */
  argv: readonly string[];
  as?: { uid: number; gid: number; workdir: string };
  env: Record<string, string>;
  /** Run under `strace -f -yy`, writing to this host file; `failedOnly` adds -Z (the verify pass wants only what was missing). */
  strace?: { log: string; failedOnly?: boolean };
}

/** A program running in its own PID, mount, network and UTS namespaces, in a root directory. */
export interface Sandbox {
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** Set once the namespace's PID 1 has ended. */
  ended(): boolean;
  /** How it ended ("with status 1", "killed by SIGSEGV"): the program's own status, which unshare and strace pass on. */
  status(): string | undefined;
  /**
   * The TCP sockets in LISTEN in its network namespace (from /proc/PID/net/tcp
   * and tcp6), by port: loopback when no socket on that port listens beyond
   * 127.0.0.0/8 or ::1, with the loopback address it listens at then (an IPv4
   * one first).
   */
  listening(): Promise<ListeningPort[]>;
  /**
   * Connects to host:port (default 127.0.0.1) inside its network namespace
   * (through nsenter and this Node.js); for an HTTP probe sends GET path, for
   * a TCP exchange sends `send` and waits for `expect`: the status line or the
   * answer's first line, or the error.
   */
  probe(port: number, how?: ProbeHow, host?: string): Promise<{ ok: boolean; answer: string }>;
  /** Ends it: strace (if any) first with SIGTERM so that its log is complete, then the whole namespace. */
  stop(): Promise<void>;
}

/** The programs a sandbox runs on the host. */
export const SANDBOX_TOOLS = ['unshare', 'nsenter', 'ip', 'mount', 'chroot', 'strace'] as const;

/**
 * Starts a program in a root directory, in its own namespaces: no network
 * but lo (ports cannot clash with the host's), its own PIDs (stopping PID 1
 * ends everything it started), its own mounts (gone with it). The chain is
 * `unshare --fork --kill-child` → sh (setup) → [strace] → unshare --root | chroot → the program.
 */
export function startSandbox(options: SandboxOptions): Sandbox {
  const program = options.as
    ? ['unshare', `--root=${options.root}`, `--wd=${options.as.workdir}`, '--setuid', String(options.as.uid), '--setgid', String(options.as.gid), '--', ...options.argv]
    : ['chroot', options.root, ...options.argv];
  const traced = options.strace
    ? ['strace', '-f', '-I2', '-yy', '-qq', '-s', '512', ...(options.strace.failedOnly ? ['-Z', '-e', 'trace=%file,%process'] : []), '-o', options.strace.log, '--', ...program]
    : program;
  const script = ['set -e', ...options.setup, 'unset ROOT', 'exec "$@"'].join('\n');
  const child: ChildProcess = spawn(
    'setpriv',
    ['--pdeathsig', 'KILL', '--', 'unshare', '--fork', '--pid', '--mount', '--net', '--uts', '--kill-child', '--', 'sh', '-c', script, 'sandbox', ...traced],
    { env: { PATH: SUBPROCESS_PATH, ...options.env, ROOT: options.root }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  let ended = false;
  let status: string | undefined;
  let spawnError: Error | undefined;
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const closed = new Promise<void>((resolve) => {
    child.on('close', (code, sig) => {
      status = code !== null ? `with status ${code}` : `killed by ${sig}`;
      ended = true;
      resolve();
    });
    child.on('error', (error) => {
      spawnError = error;
      ended = true;
      resolve();
    });
  });
  const pid = child.pid;

  return {
    output: () => (spawnError ? `${output}${spawnError.message}` : output),
    ended: () => ended,
    status: () => status,
    async listening() {
      if (pid === undefined || ended) return [];
      // Until unshare has made its network namespace, /proc/PID/net is the host's: its ports are not the app's.
      const [own, host] = await Promise.all([readlink(`/proc/${pid}/ns/net`).catch(() => ''), readlink('/proc/self/ns/net')]);
      if (own === '' || own === host) return [];
      const sockets: ListeningSocket[] = [];
      for (const table of ['tcp', 'tcp6']) sockets.push(...listeningSockets(await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '')));
      return listeningPorts(sockets);
    },
    probe: (port, how = {}, host = '127.0.0.1') => (pid === undefined ? Promise.resolve({ ok: false, answer: 'not started' }) : probeInNamespace(pid, host, port, how)),
    async stop() {
      if (!ended && pid !== undefined && options.strace) {
        // strace detaches and flushes its log on SIGTERM; PID 1's end then ends the namespace.
        const straced = await childrenOf(pid);
        for (const p of straced) signal(p, 'SIGTERM');
        await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
      }
      if (!ended && pid !== undefined) signal(-pid, 'SIGKILL');
      await closed;
    },
  };
}

export interface ListeningSocket {
  port: number;
  loopback: boolean;
  /** Dotted IPv4 (an IPv4-mapped IPv6 one too), `::1`, `::` or the table's hex for another IPv6 address. */
  address: string;
}

export interface ListeningPort {
  port: number;
  /** No socket on the port listens beyond 127.0.0.0/8 or ::1. */
  loopback: boolean;
  /** For a loopback port: the address to reach it at (an IPv4 one when there is one). */
  loopbackAddress?: string;
}

/** Sockets in LISTEN state (st 0A) in a /proc/net/tcp or tcp6 table: the port, the address, and whether it is a loopback one. */
export function listeningSockets(table: string): ListeningSocket[] {
  const sockets: ListeningSocket[] = [];
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[3] !== '0A') continue;
    const [hex = '', portHex = ''] = fields[1]?.split(':') ?? [];
    const port = parseInt(portHex, 16);
    // IPv4 is the big-endian address printed as a host-order word: 127.0.0.1 is 0100007F.
    const v4 = hex.length === 8 ? hex : /^0{16}FFFF0000/i.test(hex) ? hex.slice(24) : undefined;
    const address =
      v4 !== undefined
        ? [6, 4, 2, 0].map((i) => parseInt(v4.slice(i, i + 2), 16)).join('.')
        : hex === '00000000000000000000000001000000'
          ? '::1'
          : /^0{32}$/.test(hex)
            ? '::'
            : hex;
    const loopback = v4 !== undefined ? address.startsWith('127.') : address === '::1';
    if (Number.isFinite(port)) sockets.push({ port, loopback, address });
  }
  return sockets;
}

/** Sockets by port, in port order: loopback when all of a port's are. */
export function listeningPorts(sockets: readonly ListeningSocket[]): ListeningPort[] {
  const ports = new Map<number, ListeningSocket[]>();
  for (const socket of sockets) ports.set(socket.port, [...(ports.get(socket.port) ?? []), socket]);
  return [...ports]
    .sort(([a], [b]) => a - b)
    .map(([port, on]) => {
      if (!on.every((s) => s.loopback)) return { port, loopback: false };
      const address = (on.find((s) => s.address.startsWith('127.')) ?? on[0]!).address;
      return { port, loopback: true, loopbackAddress: address };
    });
}

async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.split(/\s+/).filter(Boolean).map(Number);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** What a probe does once connected: nothing (a connection is enough), an HTTP GET of a path, or a TCP exchange. */
export type ProbeHow = { httpPath?: string; send?: string; expect?: string };

/** How a readiness probe (or none) probes: what `Sandbox.probe` is given. */
export function probeHow(readiness: Readiness | null): ProbeHow {
  if (readiness && 'http' in readiness) return { httpPath: readiness.http.path };
  if (readiness && 'tcp' in readiness && readiness.tcp.expect !== undefined) return { send: readiness.tcp.send, expect: readiness.tcp.expect };
  return {};
}

/** The client the probe runs in the namespace: this very Node.js, a script given host, port and what to do (JSON). */
const PROBE_SCRIPT = `
const net = require('node:net');
const [host, port, how] = process.argv.slice(1);
const { httpPath, send, expect } = JSON.parse(how);
const socket = net.createConnection({ host, port: Number(port) });
let answer = '';
const firstLine = () => JSON.stringify(answer.split('\\r\\n')[0].split('\\n')[0].slice(0, 200));
socket.setTimeout(5000, () => { console.log(answer ? 'timeout, the answer so far: ' + firstLine() : 'timeout'); process.exit(1); });
socket.on('connect', () => {
  if (httpPath) socket.write('GET ' + httpPath + ' HTTP/1.0\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n');
  else if (expect === undefined) { console.log('connected'); process.exit(0); }
  else if (send !== undefined) socket.write(send);
});
socket.on('data', (d) => {
  answer += d;
  if (!httpPath && answer.includes(expect)) { console.log('answered ' + firstLine()); process.exit(0); }
});
socket.on('end', () => {
  if (httpPath) { console.log(answer.split('\\r\\n')[0]); process.exit(/^HTTP\\/1\\.[01] [23]\\d\\d/.test(answer) ? 0 : 1); }
  console.log('closed without ' + JSON.stringify(expect) + (answer ? ', after ' + firstLine() : ''));
  process.exit(1);
});
socket.on('error', (e) => { console.log(e.message); process.exit(1); });
`;

function probeInNamespace(pid: number, host: string, port: number, how: ProbeHow): Promise<{ ok: boolean; answer: string }> {
  return new Promise((resolve) => {
    const args = ['--net=/proc/' + pid + '/ns/net', '--', process.execPath, '-e', PROBE_SCRIPT, host, String(port), JSON.stringify(how)];
    const probe = spawn('nsenter', args, { env: { PATH: SUBPROCESS_PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    let answer = '';
    probe.stdout.setEncoding('utf8').on('data', (c: string) => (answer += c));
    probe.stderr.setEncoding('utf8').on('data', (c: string) => (answer += c));
    probe.on('error', (error) => resolve({ ok: false, answer: error.message }));
    probe.on('close', (code) => resolve({ ok: code === 0, answer: answer.trim() }));
  });
}

/** A missing sandbox tool as the named error every other missing tool gives. */
export function sandboxToolError(output: string): MissingToolError | undefined {
  for (const tool of SANDBOX_TOOLS) {
    if (new RegExp(`(^|\\W)${tool}: (not found|No such file)|failed to execute ${tool}`).test(output)) {
      const pkg = debianPackageFor(tool);
      if (pkg) return new MissingToolError(tool, pkg);
    }
  }
  return undefined;
}
