// Density: N nginx VMs started at once, all serving. How long until the first and the
// last is ready (from the first QEMU start), and what each costs the host
// (PSS of its QEMU process: shared pages split between the VMs sharing them).
import { readFile, writeFile } from 'node:fs/promises';
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
  /** The same VMs measured again after the host's KSM merged their identical pages (with `ksm`). */
  ksm?: KsmFigures;
}

/** PSS once KSM has merged what the VMs hold in common (guest kernels, the root's pages in their page caches, zero pages). */
export interface KsmFigures {
  pssPerVmMiB: { median: number; min: number; max: number };
  /** KSM's counters at the measurement: pages that share a merged page, and the merged pages. */
  pagesSharing: number;
  pagesShared: number;
  /** Full scans KSM made, and how long it ran, before the measurement. */
  fullScans: number;
  seconds: number;
}

export interface DensityOptions {
  count?: number;
  /** Guest memory; default the backend's (128 MiB). */
  memoryMiB?: number;
  tcgCacheMiB?: number;
  /** Also measure with the host's KSM on (turned on for the measurement, its settings restored after). */
  ksm?: boolean;
}

const KSM = '/sys/kernel/mm/ksm';
const ksmRead = async (name: string): Promise<string> => (await readFile(`${KSM}/${name}`, 'utf8')).trim();
const ksmWrite = (name: string, value: string): Promise<void> => writeFile(`${KSM}/${name}`, value);

/**
 * Turns the host's KSM on (QEMU marks guest memory mergeable by default),
 * scanning fast, until it made `scans` more full scans (merging takes two:
 * a page goes into the unstable tree first); measures with `measure`; puts
 * KSM's settings back on every path. Merged pages stay merged until the VMs go.
 */
async function withKsm<T>(measure: () => Promise<T>, scans = 3, timeoutMs = 10 * 60_000): Promise<{ value: T; fullScans: number; seconds: number; pagesSharing: number; pagesShared: number }> {
  const saved = { run: await ksmRead('run'), pages_to_scan: await ksmRead('pages_to_scan'), sleep_millisecs: await ksmRead('sleep_millisecs') };
  ksmSaved = saved;
  const started = performance.now();
  try {
    await ksmWrite('pages_to_scan', '20000');
    await ksmWrite('sleep_millisecs', '10');
    await ksmWrite('run', '1');
    const from = Number(await ksmRead('full_scans'));
    while (Number(await ksmRead('full_scans')) < from + scans) {
      if (performance.now() - started > timeoutMs) throw new Error(`KSM made fewer than ${scans} full scans in ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    const counters = { fullScans: Number(await ksmRead('full_scans')) - from, pagesSharing: Number(await ksmRead('pages_sharing')), pagesShared: Number(await ksmRead('pages_shared')) };
    return { value: await measure(), ...counters, seconds: Math.round((performance.now() - started) / 1000) };
  } finally {
    await restoreKsm();
  }
}

/** KSM's settings before withKsm changed them; undefined when they are the host's own. */
let ksmSaved: Record<string, string> | undefined;

/** Puts back KSM's settings if a measurement changed them (also what an interrupted run calls). */
export async function restoreKsm(): Promise<void> {
  const saved = ksmSaved;
  ksmSaved = undefined;
  for (const [name, value] of Object.entries(saved ?? {})) await ksmWrite(name, value).catch(() => undefined);
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
export async function density(app: string, imageDir: string, { count = 50, memoryMiB, tcgCacheMiB, ksm }: DensityOptions = {}): Promise<DensityRun> {
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
    const perVm = (kib: number[]): DensityRun['pssPerVmMiB'] => ({ median: mib(median(kib)), min: mib(Math.min(...kib)), max: mib(Math.max(...kib)) });
    let merged: KsmFigures | undefined;
    if (ksm) {
      const { value, ...counters } = await withKsm(() => Promise.all(vms.map((vm) => pssKiB(vm.record.pid))));
      merged = { pssPerVmMiB: perVm(value), ...counters };
    }
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
      pssPerVmMiB: perVm(pss),
      pssTotalMiB: mib(pss.reduce((a, b) => a + b, 0)),
      memAvailableDropPerVmMiB: mib((before - after) / count),
      ...(merged ? { ksm: merged } : {}),
    };
  } finally {
    await Promise.all(vms.map((vm) => vm.destroy().catch(() => undefined)));
  }
}
