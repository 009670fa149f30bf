import { chmod, chown, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { probePort } from '@tinyx/image';
import { parseGroup, parsePasswd } from '../account-files.js';
import { fixedContent, imageHosts } from '../assemble/assemble-root.js';
import type { LoopbackRelay } from '../assemble/relay.js';
import { shellQuote } from '../assemble/init-script.js';
import { TinyxError, throwIfAborted } from '../errors.js';
import type { KernelFeature } from '../kernel-features.js';
import { syscallFeatures } from '../kernel/infer-features.js';
import { mount, removeTree } from '../mounts.js';
import type { Readiness, Recipe } from '../recipe/recipe.js';
import { parseTmpfiles } from '../recipe/tmpfiles.js';
import { IMAGE_PATH } from '../resolve/plan-image.js';
import { resolveInRoot } from '../resolve/root-path.js';
import type { RootView } from '../resolve/root-view.js';
import { looksSecret, makeSecrets, SECRET_HEAD_BYTES, secretFiles, type ImageSecret } from './secrets.js';
import { parseStraceLog, type TraceLog } from './strace-log.js';
import { probeHow, startSandbox, type ListeningPort, type Sandbox } from './sandbox.js';

/** A path the trace saw the app use, as the planner takes it. */
export interface TracedPath {
  path: string;
  kind: 'file' | 'dir';
  reason: string;
}

/** What the trace pass found, for the planner, the accounts, the kernel and the manifest. */
export interface TraceResult {
  /** Files and directories of the install root the app used that the image is to have. */
  paths: TracedPath[];
  /** Accounts the app switched to (setuid/setgid/setgroups), by name, with the call that showed it. */
  users: { name: string; reason: string }[];
  groups: { name: string; reason: string }[];
  /** TCP ports it listened on. */
  listening: number[];
  /**
   * Of those, the ports it listened on only at a loopback address (out of
   * reach of the VM's network), each with that address (127.0.0.1 first,
   * else ::1): what a relay reaches.
   */
  loopbackOnly: LoopbackRelay[];
  /** Kernel features its system calls and socket families need, with the evidence. */
  features: Map<KernelFeature, string[]>;
  /** Secrets the app used that the install made once (sshd's host keys), made again for this image. */
  secrets: ImageSecret[];
  /** Secrets the app used that tinyx cannot make per image: left out, with why. */
  leftOut: { path: string; why: string }[];
  /**
   * The directories the app wrote in (made, changed or removed a file there,
   * bound a socket), each the nearest directory the install root has, with
   * the first write seen: on a read-only root they are made writable.
   * Kernel filesystems and /run, /tmp, /var/tmp are left out (always writable).
   */
  wroteIn: { dir: string; reason: string }[];
  /** How the run ended: ready (probe passed or a port listened), still running, or exited. */
  outcome: string;
  seconds: number;
}

export interface TraceInput {
  /** Lower directories of the full install root, upper first (the app layer, then the base). */
  lowerDirs: string[];
  /** The same root, read-only, for existence checks and accounts. */
  view: RootView;
  /** A scratch directory for the writable copy and the log; the caller removes it. */
  scratch: string;
  recipe: Recipe;
  /** Paths the image makes itself, never taken from the install (its /etc/passwd, BusyBox's applet links). */
  provided: ReadonlySet<string>;
  /** Whether dpkg lists a path (a file no package lists, that not all may read, is a secret the install made). */
  packaged: (path: string) => boolean;
  /** How long to wait for the app to become ready, in ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  onLine?: (line: string) => void;
}

/** Where the trace never adds from: kernel filesystems, runtime state, and what the image writes itself. */
export const NOT_TRACED = /^\/(proc|sys|dev|run|tmp|var\/run|var\/tmp|var\/log)(\/|$)|^\/etc\/(ld\.so\.(cache|preload)|passwd|group|shadow|gshadow|nsswitch\.conf|hosts|hostname|resolv\.conf|mtab)$/;

/** Directories the trace never adds: kernel filesystems and runtime state (log directories it may). */
export const NOT_TRACED_DIRS = /^\/(proc|sys|dev|run|tmp|var\/run|var\/tmp)(\/|$)/;

/** The image's PATH: the app's environment in the trace, as /init exports it. */
export const IMAGE_ENV = { PATH: IMAGE_PATH.join(':'), HOME: '/root' };

/**
 * The trace pass: the app started as its account, with its environment, in a
 * writable copy of the full install root (an OverlayFS over it, thrown away
 * after), in its own namespaces, under `strace -f`; driven by its readiness
 * probe, then stopped. What it used (files opened, stat'ed and executed,
 * directories listed, accounts switched to, system calls, socket families,
 * ports listened on) is what the image needs beyond the static analysis.
 */
export async function traceApp(input: TraceInput): Promise<TraceResult> {
  const { recipe, scratch, view } = input;
  const started = performance.now();
  const root = join(scratch, 'root');
  for (const dir of ['root', 'upper', 'work']) await mkdir(join(scratch, dir), { recursive: true });
  await mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${input.lowerDirs.join(':')},upperdir=${join(scratch, 'upper')},workdir=${join(scratch, 'work')}`, root], input.signal);
  try {
    const passwd = parsePasswd(await readFile(join(root, 'etc/passwd'), 'utf8'));
    const groups = parseGroup(await readFile(join(root, 'etc/group'), 'utf8'));
    const account = (name: string): (typeof passwd)[number] => {
      const entry = passwd.find((p) => p.name === name);
      if (!entry) throw new TinyxError('E_NO_ACCOUNT', `${recipe.source}: the account "${name}" does not exist in the install root's /etc/passwd`, { kind: 'user' });
      return entry;
    };
    // The directories the image will have made for it: the recipe's (RuntimeDirectory=...), and what
    // systemd-tmpfiles would make at boot (haproxy's /run/haproxy), which the install never made.
    const made = [...recipe.directories.map((d) => ({ path: d.path, mode: d.mode, ...account(d.owner) })), ...(await tmpfilesDirectories(root, passwd, groups))];
    for (const dir of made) {
      const { path, node } = await resolveInRoot(view, dir.path);
      if (node && !recipe.directories.some((d) => d.path === dir.path)) continue;
      const host = join(root, path);
      await mkdir(host, { recursive: true });
      await chown(host, dir.uid, dir.gid);
      await chmod(host, dir.mode);
    }
    // The recipe's fix-ups, as the image will have them (nginx without its IPv6 listen).
    for (const [i, fixup] of recipe.fixups.entries()) {
      const { path, node } = await resolveInRoot(view, fixup.file);
      const before = node?.kind === 'file' ? await readFile(join(root, path), 'utf8') : undefined;
      await mkdir(dirname(join(root, path)), { recursive: true });
      await writeFile(join(root, path), fixedContent(fixup, before, `fixups[${i}]`, recipe.source));
    }
    const user = account(recipe.entrypoint.user);
    const accountEnv: Record<string, string> = user.uid === 0 ? {} : { HOME: user.home, USER: user.name, LOGNAME: user.name };
    // The host files the image writes itself (the install root may have none): localhost resolves, as in the VM.
    await writeFile(join(root, 'etc/hosts'), imageHosts(recipe.name));
    const log = join(scratch, 'strace.log');
    const sandbox = startSandbox({
      // As /init does in the VM; the setting belongs to the sandbox's own network namespace. A network card
      // with the VM's address too: an app that binds each interface's address (bind9) is seen listening
      // beyond loopback, as it will in the VM, and only one that binds loopback alone is relayed.
      // (A host without veth traces on lo alone, as before.)
      setup: [
        'ip link set lo up',
        `{ ip link add eth0 type veth peer name tinyx-peer && ip link set tinyx-peer up && ip link set eth0 up && ip addr add ${TRACE_ADDRESS}/24 dev eth0; } 2>/dev/null || true`,
        'echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start', `hostname ${shellQuote(recipe.name)}`, 'mount -t proc proc "$ROOT/proc"', 'mount -t sysfs sysfs "$ROOT/sys"', 'mkdir -p "$ROOT/dev/shm"', 'mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm"'],
      root,
      argv: recipe.entrypoint.cmd,
      as: { uid: user.uid, gid: user.gid, workdir: recipe.entrypoint.workdir },
      env: { ...IMAGE_ENV, ...accountEnv, ...recipe.entrypoint.env },
      strace: { log },
    });
    let driven: Driven;
    try {
      driven = await driveApp(sandbox, recipe.readiness, input.timeoutMs ?? 30_000, input.signal, fileCallsSince(log));
    } finally {
      await sandbox.stop();
    }
    for (const line of sandbox.output().split('\n').filter(Boolean).slice(-40)) input.onLine?.(line);
    const { outcome, sockets } = driven;
    const ended = /^exited/.test(outcome);
    const listening = sockets.map((s) => s.port);
    const loopbackOnly = sockets.filter((s) => s.loopback).map((s) => ({ port: s.port, address: s.loopbackAddress ?? '127.0.0.1' }));
    const text = await readFile(log, 'utf8').catch(() => '');
    if (ended && !/status 0\b/.test(outcome)) {
      throw new TinyxError('E_APP_FAILED', `${recipe.entrypoint.cmd[0]} ${outcome} in the full install root, before the image was even cut:\n${tail(sandbox.output(), 15) || '(it printed nothing)'}`, {
        kind: 'user',
        hint: 'the VM would fail the same way: fix the configuration (a recipe fixup) or the command; --no-trace builds without this run',
      });
    }
    if (outcome.startsWith('still not ready')) {
      throw new TinyxError('E_APP_NOT_READY', `${recipe.entrypoint.cmd[0]} was ${outcome} in the full install root (readiness ${JSON.stringify(recipe.readiness)}):\n${tail(sandbox.output(), 15) || '(it printed nothing)'}`, {
        kind: 'user',
        hint: 'check the readiness port against the configuration; --no-trace builds without this run',
      });
    }
    const traced = parseStraceLog(text, root, 2);
    const { secretPaths, ...result } = await collect(traced, input, passwd, groups);
    const secrets = await makeSecrets(root, secretPaths, input.signal);
    const leftOut = secrets.unknown.map((path) => ({ path, why: 'a secret the install made once for every image of the package, and tinyx knows no way to make it per image: give your own with a recipe include' }));
    return { ...result, secrets: secrets.made, leftOut, listening, loopbackOnly, outcome, seconds: Math.round((performance.now() - started) / 10) / 100 };
  } finally {
    // Unmounted now, so that nothing holds the layer; a failure here is reported by the caller's removal of `scratch`, which tries again.
    await removeTree(root).catch(() => undefined);
  }
}

/** How the traced run went, and the sockets it listened on then. */
interface Driven {
  outcome: string;
  sockets: ListeningPort[];
}

/**
 * Returns once the app has reached for no file for SETTLED_MS (at most
 * SETTLE_MAX_MS): `fileCalls` says whether the strace log gained a call on a
 * path since it was last asked. A timer's epoll_wait does not count.
 */
async function settle(fileCalls: () => Promise<boolean>, signal: AbortSignal | undefined): Promise<void> {
  const deadline = Date.now() + SETTLE_MAX_MS;
  let stillSince = Date.now();
  await fileCalls();
  while (Date.now() < deadline && Date.now() - stillSince < SETTLED_MS) {
    throwIfAborted(signal);
    await sleep(100);
    if (await fileCalls()) stillSince = Date.now();
  }
}

/** Whether the strace log gained a call on a path (open, stat, exec, ...) since the last call of the returned function. */
function fileCallsSince(log: string): () => Promise<boolean> {
  let offset = 0;
  let partial = '';
  return async () => {
    const handle = await open(log, 'r').catch(() => undefined);
    if (!handle) return false;
    try {
      const { size } = await handle.stat();
      if (size <= offset) return false;
      const chunk = Buffer.alloc(size - offset);
      await handle.read(chunk, 0, chunk.length, offset);
      offset = size;
      const text = partial + chunk.toString('latin1');
      partial = text.slice(text.lastIndexOf('\n') + 1);
      // What a timer reads over and over (redis's cron: /proc/PID/stat) is the kernel's, not a file of the image.
      return text
        .slice(0, text.length - partial.length)
        .split('\n')
        .some((line) => FILE_CALL.test(line) && !/"\/(proc|sys|dev)\//.test(line));
    } finally {
      await handle.close();
    }
  };
}

/** A system call on a path, in a line of strace's log. */
const FILE_CALL = /\b(open|openat|openat2|creat|stat|lstat|newfstatat|statx|access|faccessat2?|execve|execveat|readlink|readlinkat|mkdir|mkdirat|unlink|unlinkat|rename|renameat2?|getdents64)\(/;

/** The address of the trace's network card: the one QEMU's user network gives a guest. */
const TRACE_ADDRESS = '10.0.2.15';

const SETTLED_MS = 1000;
const SETTLE_MAX_MS = 10_000;

/** Waits until the app is ready (its probe passes, or for no probe, a port listens), quiet, or ended; then exercises it once. */
async function driveApp(sandbox: Sandbox, readiness: Readiness | null, timeoutMs: number, signal: AbortSignal | undefined, fileCalls: () => Promise<boolean>): Promise<Driven> {
  const deadline = Date.now() + timeoutMs;
  let lastOutput = '';
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    throwIfAborted(signal);
    if (sandbox.ended()) {
      return { outcome: `exited ${sandbox.status() ?? ''}`.trim(), sockets: [] };
    }
    const ports = await sandbox.listening();
    if (readiness && 'console' in readiness) {
      if (sandbox.output().includes(readiness.console.line)) return { outcome: 'ready (its console line)', sockets: ports };
    } else {
      const wanted = probePort(readiness);
      if (wanted !== undefined ? ports.some((p) => p.port === wanted) : ports.length > 0) {
        // No port asked for: the app may open several (caddy: its admin port first); let it open them all, then probe the first one outside loopback.
        const seen = wanted === undefined ? (await sleep(500), await sandbox.listening()) : ports;
        const port = wanted ?? (seen.find((p) => !p.loopback) ?? seen[0] ?? ports[0]!).port;
        const probe = await sandbox.probe(port, probeHow(readiness));
        // What the first request touches (an index page, a lazily loaded module) is traced too, and what
        // the app opens once it listens (mariadb's privilege tables): the run ends once its trace is still.
        await settle(fileCalls, signal);
        const sockets = await sandbox.listening();
        return { outcome: `ready, listening on ${sockets.map((p) => `${p.port}${p.loopback ? ' (loopback only)' : ''}`).join(', ')} (probe: ${probe.answer})`, sockets };
      }
    }
    // No probe and no port: a program that has settled (no output for 3 s) has shown what it uses.
    const output = sandbox.output();
    if (output !== lastOutput) {
      lastOutput = output;
      quietSince = Date.now();
    } else if (!readiness && Date.now() - quietSince > 3000) {
      return { outcome: 'running, quiet for 3 s (no port listened)', sockets: [] };
    }
    await sleep(50);
  }
  return { outcome: `still not ready after ${timeoutMs / 1000} s`, sockets: await sandbox.listening() };
}

async function collect(
  log: TraceLog,
  input: TraceInput,
  passwd: ReturnType<typeof parsePasswd>,
  groups: ReturnType<typeof parseGroup>,
): Promise<Pick<TraceResult, 'paths' | 'users' | 'groups' | 'features' | 'wroteIn'> & { secretPaths: string[] }> {
  const paths: TracedPath[] = [];
  const secretPaths: string[] = [];
  for (const [path, { how, by }] of [...log.reached].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (NOT_TRACED_DIRS.test(path) || input.provided.has(path)) continue;
    const resolved = await resolveInRoot(input.view, path);
    if (!resolved.node) {
      // What the app created while it ran is its own business, but not the directory it created it in
      // (apt-cacher-ng will not start without its own log directory; the logs in it stay out).
      const parent = await resolveInRoot(input.view, posix.dirname(resolved.path));
      if (parent.node?.kind === 'dir' && how === 'opened' && !NOT_TRACED_DIRS.test(parent.path) && parent.path !== '/') {
        paths.push({ path: parent.path, kind: 'dir', reason: `traced: ${by} made ${posix.basename(resolved.path)} in it` });
      }
      continue;
    }
    // A directory the app uses under /var/log is needed; the logs are not.
    const excluded = resolved.node.kind === 'dir' && how !== 'stat' ? NOT_TRACED_DIRS : NOT_TRACED;
    if (excluded.test(resolved.path)) continue;
    if (input.provided.has(resolved.path) || resolved.links.some((l) => input.provided.has(l.path))) continue;
    const reason = `traced: ${how === 'executed' ? 'executed' : how === 'stat' ? "stat'ed" : how === 'directory' ? 'listed' : 'opened'} by ${by}`;
    const secret =
      resolved.node.kind === 'file' &&
      (resolved.node.mode & 0o004) === 0 &&
      !input.packaged(path) &&
      !input.packaged(resolved.path) &&
      looksSecret(resolved.path, await input.view.read(resolved.path, 0, SECRET_HEAD_BYTES));
    if (secret) secretPaths.push(resolved.path);
    else if (resolved.node.kind === 'file') paths.push({ path, kind: 'file', reason });
    else if (resolved.node.kind === 'dir' && how !== 'stat') paths.push({ path, kind: 'dir', reason });
  }
  const users = [...log.uids].flatMap((uid) => passwd.filter((p) => p.uid === uid).slice(0, 1).map((p) => ({ name: p.name, reason: `traced: setuid(${uid})` })));
  const groupNames = [...log.gids].flatMap((gid) => groups.filter((g) => g.gid === gid).slice(0, 1).map((g) => ({ name: g.name, reason: `traced: setgid(${gid})` })));
  // What goes with a secret (its public half) is made with it, never taken from the install.
  const withSecrets = new Set(secretPaths.flatMap((p) => secretFiles(p) ?? [p]));
  return { paths: paths.filter((p) => !withSecrets.has(p.path)), secretPaths, users, groups: groupNames, features: syscallFeatures(log.syscalls, log.families), wroteIn: await wroteIn(log, input.view) };
}

/**
 * The directories the app wrote in, from the log's writes: for each path, the
 * directory holding it, through the root's links (/var/run is /run), or the
 * nearest one above it the root has (what the app made under it, it makes
 * again in the VM). The root directory itself and the always-writable ones
 * are left out; sorted, each with the programs that wrote there, sorted too:
 * the reason goes into /init, whose bytes must not depend on the order of a
 * run's writes or on the names of its temporary files.
 */
async function wroteIn(log: TraceLog, view: RootView): Promise<TraceResult['wroteIn']> {
  const dirs = new Map<string, Set<string>>();
  for (const [path, by] of log.written) {
    let dir = await resolveInRoot(view, posix.dirname(path));
    while (dir.node?.kind !== 'dir' && dir.path !== '/') dir = await resolveInRoot(view, posix.dirname(dir.path));
    if (dir.path === '/' || NOT_TRACED_DIRS.test(dir.path)) continue;
    dirs.set(dir.path, (dirs.get(dir.path) ?? new Set()).add(by));
  }
  return [...dirs].sort(([a], [b]) => (a < b ? -1 : 1)).map(([dir, by]) => ({ dir, reason: `traced: written by ${[...by].sort().join(', ')}` }));
}

/** The `d` lines of every tmpfiles.d file of the root (a file in /etc/tmpfiles.d wins over one of the same name in /usr/lib), as owner ids. */
async function tmpfilesDirectories(
  root: string,
  passwd: ReturnType<typeof parsePasswd>,
  groups: ReturnType<typeof parseGroup>,
): Promise<{ path: string; mode: number; uid: number; gid: number }[]> {
  const files = new Map<string, string>();
  for (const dir of ['usr/lib/tmpfiles.d', 'etc/tmpfiles.d']) {
    for (const name of await readdir(join(root, dir)).catch(() => [] as string[])) if (name.endsWith('.conf')) files.set(name, `/${dir}/${name}`);
  }
  const dirs: { path: string; mode: number; uid: number; gid: number }[] = [];
  for (const file of [...files.values()].sort()) {
    for (const entry of parseTmpfiles(await readFile(join(root, file), 'utf8').catch(() => ''), file)) {
      const uid = passwd.find((p) => p.name === entry.user)?.uid;
      const gid = groups.find((g) => g.name === entry.group)?.gid;
      if (entry.type === 'd' && uid !== undefined && gid !== undefined) dirs.push({ path: entry.path, mode: entry.mode, uid, gid });
    }
  }
  return dirs;
}

function tail(text: string, lines: number): string {
  return text.split('\n').filter(Boolean).slice(-lines).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
