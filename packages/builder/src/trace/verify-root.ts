import type { LoopbackRelay } from '../assemble/relay.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { READY_LINE, probePort } from '@tinyx/image';
import { TinyxError, throwIfAborted } from '../errors.js';
import type { ImageEntry } from '../image-tree.js';
import type { Recipe } from '../recipe/recipe.js';
import { resolveInRoot } from '../resolve/root-path.js';
import { writeEntries } from '../pack/tree.js';
import type { RootView } from '../resolve/root-view.js';
import { parseStraceLog } from './strace-log.js';
import { probeHow, startSandbox, type Sandbox } from './sandbox.js';
import { IMAGE_ENV, NOT_TRACED, NOT_TRACED_DIRS } from './trace-app.js';

export interface VerifyInput {
  /** The image's entries, as the pack step will write them. */
  entries: readonly ImageEntry[];
  /** A scratch directory for the unpacked root and the log; the caller removes it. */
  scratch: string;
  recipe: Recipe;
  /** The full install root: what the cut root lacks is looked up there, for the error. */
  view: RootView;
  /** The package that installed a path, for the error. */
  owner: (path: string) => string | undefined;
  /** The loopback ports the image's /init relays: verify gives it a network card, and probes through the relay. */
  relay?: readonly LoopbackRelay[];
  /** The root is read-only in the VM (erofs): verify mounts it read-only too, so that a write outside /init's tmpfs fails here first. */
  readOnlyRoot?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** How long the app must keep running once ready. */
const STILL_RUNNING_MS = 1500;
/** How long /init may take to end by itself once the app has exited. */
const SETTLE_MS = 5000;
const EXITED = /tinyx: \S+ exited with status (\d+)/;

/** The address verify gives an image that relays (QEMU's user network gives the guest the same). */
const VERIFY_ADDRESS = '10.0.2.15';

export interface VerifyResult {
  /** "ready, probe: HTTP/1.1 200 OK", "ran to completion (status 0)". */
  outcome: string;
  /** The recipe check's command and its last line, when there is a check. */
  check: string | null;
  seconds: number;
}

/**
 * Verify before emitting: the image's root written out as it will be, the
 * recipe's check run in it, then its own /init started in it (as PID 1 of
 * fresh namespaces, under `strace -f -Z`, which logs only the calls that
 * failed) and its readiness probe passed with a real client. A failure is a
 * build error that names what was missing: the paths the app looked for in
 * vain that the full install has, with their package.
 */
export async function verifyRoot(input: VerifyInput): Promise<VerifyResult> {
  const { recipe, scratch } = input;
  const started = performance.now();
  const root = join(scratch, 'root');
  // With its device nodes, as in the VM: /init's `2>/dev/null` must find /dev/null on a read-only root.
  await writeEntries(input.entries, root, { devices: true });
  // Each run its own log: the check's strace never shares a file with the app's.
  const checkLog = join(scratch, 'check.log');
  const log = join(scratch, 'verify.log');
  const cmd = recipe.entrypoint.cmd[0]!;

  let check: string | null = null;
  if (recipe.check) {
    const run = startSandbox({
      setup: ['mount -t proc proc "$ROOT/proc"', 'mount -t devtmpfs devtmpfs "$ROOT/dev"'],
      root,
      argv: recipe.check,
      env: IMAGE_ENV,
      strace: { log: checkLog, failedOnly: true },
    });
    const ended = await waitUntil(() => run.ended(), input.timeoutMs ?? 30_000, input.signal).finally(() => run.stop());
    const status = run.status();
    if (!ended || status !== 'with status 0') {
      throw await verifyError(input, `the check (${recipe.check.join(' ')}) ${ended ? `failed ${status}` : 'did not finish'} in the image's root`, run, checkLog);
    }
    check = `${recipe.check.join(' ')}: ${lastLine(run.output()) || 'passed'}`;
  }

  // An image that relays loopback ports gets a network card, as in a VM: /init gives it the address
  // (TINYX_CMDLINE stands in for the kernel's command line) and starts the relay; the probe goes through it.
  const relayed = (input.relay ?? []).length > 0;
  // As in the VM: a read-only root, on which /init mounts its tmpfs.
  const readOnly = input.readOnlyRoot ? ['mount --bind "$ROOT" "$ROOT"', 'mount -o remount,bind,ro "$ROOT"'] : [];
  const app = startSandbox({
    setup: [...readOnly, ...(relayed ? ['ip link add eth0 type veth peer name tinyx-peer || { echo "tinyx: this host cannot make a veth pair (ip link add type veth): the relay cannot be verified"; exit 1; }', 'ip link set tinyx-peer up'] : [])],
    root,
    argv: ['/init'],
    env: relayed ? { TINYX_CMDLINE: `tinyx.ip=${VERIFY_ADDRESS}/24` } : {},
    strace: { log, failedOnly: true },
  });
  try {
    const timeout = input.timeoutMs ?? 30_000;
    const settled = await waitUntil(() => app.ended() || app.output().includes(READY_LINE) || /tinyx: \S+ exited with status/.test(app.output()), timeout, input.signal);
    const output = app.output();
    const exited = output.match(/tinyx: \S+ exited with status (\d+)/);
    if (!settled) throw await verifyError(input, `${cmd} did not become ready within ${timeout / 1000} s in the image's root`, app, log);
    if (exited && !output.includes(READY_LINE)) throw await verifyError(input, `${cmd} exited with status ${exited[1]} in the image's root, before it was ready`, app, log);
    if (exited && exited[1] !== '0') throw await verifyError(input, `${cmd} exited with status ${exited[1]} in the image's root`, app, log);
    if (!output.includes(READY_LINE)) throw await verifyError(input, `/init ended ${app.status() ?? ''} before ${cmd} was ready`, app, log);
    let outcome = exited ? 'ran to completion (status 0)' : 'ready';
    const readiness = recipe.readiness;
    if (!exited && readiness && !('console' in readiness)) {
      const port = probePort(readiness)!;
      const host = relayed ? VERIFY_ADDRESS : '127.0.0.1';
      const probe = await app.probe(port, probeHow(readiness), host);
      if (!probe.ok) throw await verifyError(input, `${cmd} listens on ${port} in the image's root, but its probe${relayed ? ` through the relay (${host}:${port})` : ''} failed: ${probe.answer}`, app, log);
      outcome = `ready, probe on ${relayed ? `${host}:${port} through the relay` : port}: ${probe.answer}`;
    }
    // Ready is not enough: an app that listens, then gives up a moment later (mariadb without its privilege tables) fails here.
    if (!exited && (await waitUntil(() => app.ended() || EXITED.test(app.output()), STILL_RUNNING_MS, input.signal))) {
      const status = app.output().match(EXITED)?.[1];
      throw await verifyError(input, `${cmd} exited${status ? ` with status ${status}` : ''} in the image's root, ${STILL_RUNNING_MS / 1000} s after it was ready`, app, log);
    }
    return { outcome, check, seconds: Math.round((performance.now() - started) / 10) / 100 };
  } finally {
    await app.stop();
  }
}

/** The error for a failed verify: what happened, the app's last lines, and what it looked for that the image lacks. */
async function verifyError(input: VerifyInput, what: string, sandbox: Sandbox, log: string): Promise<TinyxError> {
  // An app that exited is followed by /init's own end: strace then ends by itself, its log complete, rather than cut short.
  if (EXITED.test(sandbox.output())) await waitUntil(() => sandbox.ended(), SETTLE_MS, undefined);
  await sandbox.stop();
  const text = await readFile(log, 'utf8').catch(() => '');
  const missing: string[] = [];
  const traced = parseStraceLog(text, join(input.scratch, 'root'), 2);
  for (const [path, by] of traced.missing) {
    const resolved = await resolveInRoot(input.view, path);
    if (resolved.node?.kind !== 'file' && resolved.node?.kind !== 'dir') continue;
    if ((resolved.node.kind === 'dir' ? NOT_TRACED_DIRS : NOT_TRACED).test(path)) continue;
    const pkg = input.owner(resolved.path);
    missing.push(`  ${path}: no such ${resolved.node.kind === 'dir' ? 'directory' : 'file'} in the image (${pkg ? `owned by ${pkg}; ` : ''}in the full install${by === '?' ? '' : `; looked for by ${by}`})`);
  }
  const output = sandbox.output().split('\n').filter(Boolean).slice(-12).join('\n');
  // A read-only root (erofs): what the app tried to write outside /init's tmpfs.
  const readOnly = [...traced.readOnly].map(([path, by]) => `  ${path}${by === '?' ? '' : ` (by ${by})`}`);
  // Should the log lack the call, the app's own words: the absolute paths quoted on its lines that say EROFS.
  if (readOnly.length === 0 && input.readOnlyRoot) readOnly.push(...readOnlyInMessages(sandbox.output()).map((path) => `  ${path} (in its message)`));
  const hint =
    readOnly.length > 0
      ? `list the directories it writes in under the recipe's directories (each gets a tmpfs in the VM), or build with --format initramfs, whose root is writable; --no-verify emits the image anyway`
      : missing.length > 0
        ? "add them with the recipe's include (or dlopen for modules); --no-verify emits the image anyway"
        : 'run the image to see more; --no-verify emits the image anyway';
  return new TinyxError(
    'E_VERIFY',
    `verify: ${what}\n${output}${missing.length > 0 ? `\nwhat it looked for and the image lacks:\n${missing.slice(0, 15).join('\n')}` : ''}${readOnly.length > 0 ? `\nwhat it tried to write on the read-only root:\n${readOnly.slice(0, 15).join('\n')}` : ''}`,
    { hint },
  );
}

/** Absolute paths quoted ("...", '...', `...') on lines that report a read-only file system, in order, once each. */
export function readOnlyInMessages(output: string): string[] {
  const paths = new Set<string>();
  for (const line of output.split('\n')) {
    if (!/Read-only file system|EROFS/.test(line)) continue;
    for (const m of line.matchAll(/["'`‘“](\/[^"'`’”\s]*)["'`’”]/g)) paths.add(m[1]!);
    // perror style: "/path: Read-only file system".
    const perror = line.match(/(?:^|\s)(\/\S+?):\s+Read-only file system/);
    if (perror) paths.add(perror[1]!);
  }
  return [...paths];
}

async function waitUntil(done: () => boolean, timeoutMs: number, signal: AbortSignal | undefined): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    throwIfAborted(signal);
    if (done()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return done();
}

function lastLine(text: string): string {
  return text.split('\n').filter(Boolean).pop() ?? '';
}
