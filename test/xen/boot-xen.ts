import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { FRAME } from './dom0-init.js';
import type { TestResult } from './in-dom0.js';

/**
 * Xen under QEMU with TCG (this host's /dev/kvm is kvm_pvm, which cannot run
 * Xen). qemu64 has SVM and +npt gives Xen HAP, so PVH guests run; -cpu max
 * caused occasional dom0 faults (see issue 5). Xen is a multiboot ELF that
 * -kernel loads; dom0's kernel and initramfs are the multiboot modules.
 */
export interface XenBootOptions {
  xen: string;
  dom0Kernel: string;
  /** dom0's initramfs: the cached root with the run's payload appended. */
  initrd: string;
  dom0Cmdline: string;
  /**
   * dom0's memory (default 1536 MiB): its initramfs, 300 MiB with Node.js and
   * the images, is unpacked into it; with 1024 MiB the unpacking ran out of room.
   * The rest of QEMU's memory is Xen's and the guests'.
   */
  dom0MiB?: number;
  memoryMiB?: number;
  /** Everything the serial port prints goes here. */
  consoleLog: string;
  /** The whole run: QEMU is killed when it passes. */
  timeoutSeconds: number;
  /** dom0 must print its ready frame by then. */
  dom0ReadySeconds: number;
  signal?: AbortSignal | undefined;
  onLine?: (line: string) => void;
}

export interface XenBootResult {
  results: TestResult[];
  /** The payload's exit status from the done frame; undefined when it never came. */
  status: number | undefined;
  /** Seconds from QEMU's start to each milestone seen on the console. */
  timings: Partial<Record<'xenFirstLine' | 'dom0Handover' | 'dom0Init' | 'dom0Ready' | 'done' | 'qemuExit', number>>;
  /** Why the run did not complete, when it did not. */
  failure?: string;
}

const QEMU = 'qemu-system-x86_64';

export function qemuArgs(options: XenBootOptions): string[] {
  const dom0MiB = options.dom0MiB ?? 1536;
  // Multiboot modules are comma-separated, each "file arguments"; a comma inside would need doubling.
  for (const value of [options.dom0Kernel, options.initrd, options.dom0Cmdline]) {
    if (value.includes(',')) throw new Error(`a multiboot module cannot contain a comma: ${value}`);
  }
  return [
    ...['-accel', 'tcg,thread=multi', '-cpu', 'qemu64,+npt', '-m', String(options.memoryMiB ?? 3072), '-smp', '2'],
    ...['-kernel', options.xen],
    // bootscrub=0: Xen would otherwise write every page at boot, which under TCG costs seconds and makes QEMU touch all its memory.
    ...['-append', `dom0_mem=${dom0MiB}M,max:${dom0MiB}M console=com1 bootscrub=0`],
    ...['-initrd', `${options.dom0Kernel} ${options.dom0Cmdline},${options.initrd}`],
    // A reset (dom0's reboot, a Xen panic) ends QEMU rather than booting again.
    ...['-nodefaults', '-no-reboot', '-display', 'none', '-monitor', 'none', '-serial', 'stdio'],
  ];
}

/**
 * Boots Xen, follows the serial console until dom0 says it is done (or QEMU
 * exits, or a deadline passes), and collects the framed results. QEMU never
 * outlives this call: it is killed on every path, Ctrl-C included (the
 * caller's signal).
 */
export async function bootXen(options: XenBootOptions): Promise<XenBootResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round((performance.now() - started) / 10) / 100;
  const result: XenBootResult = { results: [], status: undefined, timings: {} };
  const log = createWriteStream(options.consoleLog);
  // A process group of its own: Ctrl-C on the terminal reaches the harness, which then ends QEMU itself.
  const qemu = spawn(QEMU, qemuArgs(options), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const kill = (): void => {
    if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
  };
  process.once('exit', kill);

  const exited = new Promise<void>((resolve) => {
    qemu.once('exit', () => resolve());
    qemu.once('error', (error) => {
      result.failure ??= `${QEMU} did not start: ${error.message}`;
      resolve();
    });
  });
  let finish: (failure?: string) => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    finish = (failure) => {
      if (failure) result.failure ??= failure;
      resolve();
    };
  });

  let pending = '';
  const onData = (chunk: Buffer): void => {
    log.write(chunk);
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const raw of lines) onLine(raw.replace(/\r$/, ''));
  };
  const onLine = (line: string): void => {
    options.onLine?.(line);
    if (line.includes('(XEN)')) result.timings.xenFirstLine ??= elapsed();
    // Xen's last boot message: from here on dom0 runs.
    if (/\(XEN\) Freed \d+kB init memory/.test(line)) result.timings.dom0Handover ??= elapsed();
    if (line.includes(FRAME.init)) result.timings.dom0Init ??= elapsed();
    if (line.includes(FRAME.ready)) result.timings.dom0Ready ??= elapsed();
    const at = line.indexOf(FRAME.result);
    if (at >= 0) {
      try {
        result.results.push(JSON.parse(line.slice(at + FRAME.result.length)) as TestResult);
      } catch {
        result.results.push({ name: 'console', ok: false, seconds: 0, error: `a result line that is not JSON: ${line}` });
      }
    }
    const done = line.indexOf(FRAME.done);
    if (done >= 0) {
      result.timings.done = elapsed();
      result.status = Number(line.slice(done + FRAME.done.length).trim());
      finish();
    }
  };
  qemu.stdout.on('data', onData);
  qemu.stderr.on('data', onData);

  const timers = [
    setTimeout(() => finish(`no result within ${options.timeoutSeconds} s (console: ${options.consoleLog})`), options.timeoutSeconds * 1000),
    setTimeout(() => {
      if (result.timings.dom0Ready === undefined) finish(`dom0 was not ready within ${options.dom0ReadySeconds} s (console: ${options.consoleLog})`);
    }, options.dom0ReadySeconds * 1000),
  ];
  const onAbort = (): void => finish('interrupted');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  void exited.then(() => finish(result.status === undefined ? `QEMU exited before dom0 was done (console: ${options.consoleLog})` : undefined));

  try {
    await finished;
    // dom0 resets after the done frame, which ends QEMU; give it a moment, then make sure.
    const grace = setTimeout(kill, result.failure ? 0 : 10_000);
    await exited;
    clearTimeout(grace);
    result.timings.qemuExit = elapsed();
    return result;
  } finally {
    for (const timer of timers) clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    kill();
    await exited;
    process.removeListener('exit', kill);
    await new Promise<void>((resolve) => log.end(resolve));
  }
}
