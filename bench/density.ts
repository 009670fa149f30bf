// Density: N nginx VMs started at once, all serving. How long until the first and the
// last is ready (from the first QEMU start), and what each costs the host
// (PSS of its QEMU process: shared pages split between the VMs sharing them).
import { readFile } from 'node:fs/promises';
import { getBackend, type QemuVm } from '@tinyx/toolstack';
import { appEndpoint, appRequest, median, round } from './boot.js';
import { errorMessage } from './error-text.js';

/** One density run: times in ms since the first create, memory in MiB. */
export interface DensityRun {
  count: number;
  memoryMiB: number;
  /** The TCG translation cache's bound; null: QEMU's default. */
  tcgCacheMiB: number | null;
  startedAllMs: number;
  firstReadyMs: number;
  lastReadyMs: number;
  ready: number;
  /** The first lines of each VM's failure to get ready. */
  failures: string[];
  serving: number;
  pssPerVmMiB: { median: number; min: number; max: number };
  pssTotalMiB: number;
  memAvailableDropPerVmMiB: number;
}

export interface DensityOptions {
  count?: number;
  /** Guest memory; default the backend's (128 MiB). */
  memoryMiB?: number;
  tcgCacheMiB?: number;
}

/** Proportional set size of a process in KiB (/proc/PID/smaps_rollup). */
async function pssKiB(pid: number): Promise<number> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN);
}

async function memAvailableKiB(): Promise<number> {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1] ?? NaN);
}

/**
 * Starts `count` VMs of `imageDir` at once, then waits for each to be ready. Options go to the qemu backend (memory, TCG
 * cache bound). All VMs are destroyed at the end, also on failure.
 */
export async function density(app: string, imageDir: string, { count = 50, memoryMiB, tcgCacheMiB }: DensityOptions = {}): Promise<DensityRun> {
  const qemu = getBackend('qemu');
  const vms: QemuVm[] = [];
  const before = await memAvailableKiB();
  const t0 = performance.now();
  try {
    // All at once: each create returns when its QEMU answers on QMP.
    const created = await Promise.allSettled(Array.from({ length: count }, () => qemu.create(imageDir, { memoryMiB, qemu: { tcgCacheMiB } })));
    for (const c of created) if (c.status === 'fulfilled') vms.push(c.value);
    const notCreated = created.find((c) => c.status === 'rejected');
    if (notCreated) throw notCreated.reason;
    const startedAllMs = performance.now() - t0;
    const outcomes = await Promise.allSettled(vms.map((vm) => vm.waitReady(undefined, { timeoutMs: 15 * 60_000 }).then(() => performance.now() - t0)));
    const readyAt = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    // A VM that did not come up is counted and its first failure kept: the figure is for the rest.
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [errorMessage(o.reason).split('\n').slice(0, 4).join(' ')] : []));
    // All ready: each one answers a real request now, while the others run.
    const answers = await Promise.all(
      vms.map((vm) => {
        const target = appEndpoint(vm);
        return appRequest(app, target.host, target.port, 10_000);
      }),
    );
    // Let the guests settle (boot-time work done), then measure.
    await new Promise((r) => setTimeout(r, 3000));
    const pss = await Promise.all(vms.map((vm) => pssKiB(vm.record.pid)));
    const after = await memAvailableKiB();
    const mib = (kib: number): number => round(kib / 1024, 1);
    return {
      count,
      memoryMiB: memoryMiB ?? 128,
      tcgCacheMiB: tcgCacheMiB ?? null,
      startedAllMs: Math.round(startedAllMs),
      firstReadyMs: Math.round(Math.min(...readyAt)),
      lastReadyMs: Math.round(Math.max(...readyAt)),
      ready: readyAt.length,
      failures,
      serving: answers.filter(Boolean).length,
      pssPerVmMiB: { median: mib(median(pss)), min: mib(Math.min(...pss)), max: mib(Math.max(...pss)) },
      pssTotalMiB: mib(pss.reduce((a, b) => a + b, 0)),
      memAvailableDropPerVmMiB: mib((before - after) / count),
    };
  } finally {
    await Promise.all(vms.map((vm) => vm.destroy().catch(() => undefined)));
  }
}
