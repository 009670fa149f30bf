// The boot benchmark: tinyx images under QEMU, measured the way the LightVM
// paper measured them (boot time, memory, pause/unpause, save/restore), with
// the same probes the tests use. Every figure is a median of RUNS runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { probePort, readManifest } from '@tinyx/image';
import { getBackend, type CreateOptions, type Vm } from '@tinyx/toolstack';

export const RUNS = 7;
const qemu = () => getBackend('qemu');

/** A median, a range and every run of one measure (ms unless its name says otherwise). */
export interface Stats {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** An image's files in bytes, as the qemu backend boots them. */
export interface ImageSizes {
  vmlinuxBytes: number;
  bzImageBytes: number;
  initrdBytes: number;
  initrdUncompressedBytes: number;
  /** bzImage + initrd. */
  totalBytes: number;
}

export interface BootTimes {
  readyLineMs: Stats;
  firstAnswerMs: Stats;
}

export interface SmallestMemory {
  memoryMiB: number;
  trials: { memoryMiB: number; ok: boolean }[];
}

export interface PauseAndSave {
  pauseMs: Stats;
  unpauseMs: Stats;
  saveMs: Stats;
  restoreToAnswerMs: Stats;
  stateBytes: number;
}

/** The middle value (the upper one of an even count); NaN for none, which results.json shows as null. */
export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
export const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** The image's parts as the qemu backend boots them (microvm: vmlinux through PVH). */
export async function imageSizes(imageDir: string): Promise<ImageSizes> {
  const manifest = await readManifest(imageDir);
  const size = async (name: string | null): Promise<number> => (name ? (await stat(join(imageDir, name))).size : 0);
  const vmlinux = await size(manifest.artifacts.vmlinux);
  const bzImage = await size(manifest.artifacts.kernel);
  const initrd = await size(manifest.artifacts.rootfs);
  return { vmlinuxBytes: vmlinux, bzImageBytes: bzImage, initrdBytes: initrd, initrdUncompressedBytes: manifest.sizes.initrdUncompressed, totalBytes: bzImage + initrd };
}

/**
 * Where the host reaches the app of a tinyx VM: the port of its image's
 * readiness probe (the one the toolstack forwards), through the VM's endpoint.
 */
export function appEndpoint(vm: Vm): { host: string; port: number } {
  const port = probePort(vm.image.readiness);
  const target = port === undefined ? undefined : vm.endpoint(port);
  if (!target) throw new Error(`${vm.image.name}: no network endpoint to ask the app at (readiness ${JSON.stringify(vm.image.readiness)})`);
  return target;
}

/**
 * How one request ended: answered as the app should; answered otherwise;
 * `closed` when the connection was made and then reset or closed without an
 * answer (through QEMU's user network: the guest's kernel refused it, so the
 * guest is on the network); `refused` when nothing listens on the host side
 * (QEMU has not opened its forward yet); `timeout`.
 */
export type Attempt = 'answered' | 'wrong' | 'closed' | 'refused' | 'timeout';

/**
 * One request the app must answer, as a real client would ask it: nginx an
 * HTTP GET answered 200, redis a PING answered +PONG.
 */
export function appAttempt(app: string, host: string, port: number, timeoutMs = 2000): Promise<Attempt> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = '';
    let connected = false;
    const end = (attempt: Attempt): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(attempt);
    };
    const timer = setTimeout(() => end('timeout'), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('connect', () => {
      connected = true;
      socket.write(app === 'redis' ? '*1\r\n$4\r\nPING\r\n' : `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (app === 'redis' && reply.includes('\r\n')) end(reply === '+PONG\r\n' ? 'answered' : 'wrong');
    });
    // An HTTP answer is whole when the server closes (Connection: close); its status line says how it went.
    socket.on('end', () => end(!reply ? 'closed' : /^HTTP\/1\.[01] 200 /.test(reply) && app !== 'redis' ? 'answered' : 'wrong'));
    socket.on('error', (error: NodeJS.ErrnoException) => end(!connected && error.code === 'ECONNREFUSED' ? 'refused' : reply ? 'wrong' : 'closed'));
  });
}

/** appAttempt, true when answered as the app should. */
export async function appRequest(app: string, host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return (await appAttempt(app, host, port, timeoutMs)) === 'answered';
}

/**
 * The time from t0 to the app's first answer: one request at a time, every
 * 5 ms. A request sent before the guest is on the network hangs in QEMU's
 * user network (it resends the guest's SYN only after a second or more), so
 * until a request has been refused by the guest's kernel (`closed`), each is
 * cut after 100 ms and sent again; from then on the guest answers (a refusal
 * while the app does not listen yet, or the app's answer), and a request
 * waits up to 2 s for a slow first answer. Before 2026-12-03 each request
 * waited 500 ms whatever happened, which could add up to half a second to
 * the figure. Overlapping requests are not used: they load QEMU's user
 * network while the guest boots, which slowed the boot itself (tried
 * 2026-12-02: ready line 1.2-1.4 s -> 1.6 s).
 */
export async function firstAnswer(app: string, host: string, port: number, t0: number, timeoutMs = 120_000): Promise<number> {
  let guestOnNetwork = false;
  for (;;) {
    const attempt = await appAttempt(app, host, port, guestOnNetwork ? 2000 : 100);
    if (attempt === 'answered') return performance.now() - t0;
    if (attempt === 'closed' || attempt === 'wrong') guestOnNetwork = true;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${app} did not answer on ${host}:${port} within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** `count` requests, `concurrency` at a time; true when every one was answered. */
export async function serves(app: string, host: string, port: number, count = 200, concurrency = 8): Promise<boolean> {
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      if (!(await appRequest(app, host, port, 5000))) failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failed === 0;
}

/**
 * Boot time, RUNS times: QEMU start to the console's ready line, and to the
 * first answer to a real request from the host (polled every 5 ms).
 */
export async function bootTimes(app: string, imageDir: string, options: CreateOptions = {}): Promise<BootTimes> {
  const [times] = await interleavedBootTimes(app, [imageDir], options);
  return times!;
}

/**
 * RUNS boots of each image, taken in turns (A B, then B A, ...) rather than
 * one image's runs and then the other's: a host that is busier for a while
 * (this one's boot times drift by half a second) then weighs on both alike.
 */
export async function interleavedBootTimes(app: string, imageDirs: readonly string[], options: CreateOptions = {}): Promise<BootTimes[]> {
  const toLine = imageDirs.map(() => [] as number[]);
  const toAnswer = imageDirs.map(() => [] as number[]);
  for (let i = 0; i < RUNS; i++) {
    const order = imageDirs.map((_, j) => j);
    if (i % 2 === 1) order.reverse();
    for (const j of order) {
      const vm = await qemu().create(imageDirs[j]!, options);
      try {
        const target = appEndpoint(vm);
        // Both watched at once: the console line (read every 5 ms) and the host's requests (every 5 ms).
        const [answered, ready] = await Promise.all([firstAnswer(app, target.host, target.port, vm.startedAt, 60_000), vm.waitReady(null, { timeoutMs: 60_000 })]);
        toAnswer[j]!.push(answered);
        toLine[j]!.push(ready.consoleMs ?? NaN);
      } finally {
        await vm.destroy();
      }
    }
  }
  return imageDirs.map((_, j) => ({ readyLineMs: stats(toLine[j]!), firstAnswerMs: stats(toAnswer[j]!) }));
}

export function stats(xs: readonly number[], digits = 0): Stats {
  const r = (x: number): number => round(x, digits);
  return { median: r(median(xs)), min: r(Math.min(...xs)), max: r(Math.max(...xs)), runs: xs.map(r) };
}

/**
 * The smallest guest memory (MiB) at which the app boots and answers 200
 * requests, by bisection between `low` (assumed too small) and `high`
 * (must work).
 */
export async function smallestMemory(app: string, imageDir: string, { low = 8, high = 128 }: { low?: number; high?: number } = {}): Promise<SmallestMemory> {
  const trials: SmallestMemory['trials'] = [];
  const works = async (memoryMiB: number): Promise<boolean> => {
    let vm: Vm | undefined;
    let ok = false;
    try {
      // Too little memory can end the guest before QEMU has even answered on QMP: create() fails then.
      vm = await qemu().create(imageDir, { memoryMiB });
      await vm.waitReady(undefined, { timeoutMs: 30_000 });
      const target = appEndpoint(vm);
      ok = await serves(app, target.host, target.port, 200);
    } catch {
      ok = false;
    } finally {
      await vm?.destroy();
    }
    trials.push({ memoryMiB, ok });
    return ok;
  };
  if (!(await works(high))) throw new Error(`${app} does not serve with ${high} MiB`);
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (await works(mid)) high = mid;
    else low = mid;
  }
  return { memoryMiB: high, trials };
}

/** Pause and unpause through QMP, RUNS times each on one running VM; then save to a file and restore from it. */
export async function pauseAndSave(app: string, imageDir: string, stateDir: string): Promise<PauseAndSave> {
  const vm = await qemu().create(imageDir);
  const pause: number[] = [];
  const unpause: number[] = [];
  const save: number[] = [];
  const restore: number[] = [];
  let stateBytes = 0;
  let current: Vm = vm;
  try {
    await vm.waitReady();
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      await vm.pause();
      pause.push(performance.now() - t);
      t = performance.now();
      await vm.unpause();
      unpause.push(performance.now() - t);
    }
    for (let i = 0; i < RUNS; i++) {
      const file = join(stateDir, `${app}-${i}.state`);
      let t = performance.now();
      // keep: the figure is the save alone; the VM is stopped after it is taken.
      await current.save(file, { keep: true });
      save.push(performance.now() - t);
      stateBytes = (await stat(file)).size;
      await current.destroy();
      t = performance.now();
      current = await qemu().restore(file);
      const target = appEndpoint(current);
      // Restored means answering again: restore() returns once the state is loaded, then the first request.
      restore.push(await firstAnswer(app, target.host, target.port, t, 30_000));
      await rm(file, { force: true });
      await rm(`${file}.json`, { force: true });
    }
  } finally {
    await current.destroy();
    await vm.destroy();
  }
  return { pauseMs: stats(pause, 2), unpauseMs: stats(unpause, 2), saveMs: stats(save), restoreToAnswerMs: stats(restore), stateBytes };
}

/** The QEMUs rawBootTimes runs, which a SIGTERM to the bench must kill too (they are its own children, not the toolstack's VMs). */
export const rawQemus = new Set<ChildProcess>();

/**
 * Boot time of a VM that is not a tinyx image (the baselines): QEMU started
 * here with `args`, timed to the first answer on the forwarded `hostPort`,
 * then killed. RUNS times.
 */
export async function rawBootTimes(app: string, args: readonly string[], hostPort: number, runs = RUNS): Promise<Stats> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    rawQemus.add(child);
    child.once('exit', () => rawQemus.delete(child));
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const t0 = performance.now();
    try {
      const answered = await Promise.race([
        firstAnswer(app, '127.0.0.1', hostPort, t0, 600_000),
        exited.then((code) => Promise.reject(new Error(`QEMU exited (${code}) before ${app} answered: ${stderr.trim()}`))),
      ]);
      times.push(answered);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  }
  return stats(times);
}
