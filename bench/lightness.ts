// Lightness (issue 13): the root as a gzip initramfs against an erofs disk, in
// one run: image size, boot, the smallest memory that serves, host memory per
// VM with 100 of them serving, and the host CPU an idle VM costs, with the
// guest's TSC clock (tickless when idle) and without it (jiffies: a tick at HZ).
import { readFile } from 'node:fs/promises';
import { getBackend, type QemuVm } from '@tinyx/toolstack';
import { imageSizes, median, round, smallestMemory, type BootTimes, type ImageSizes, type SmallestMemory } from './boot.js';
import { density, type DensityRun } from './density.js';

/** Host CPU of idle VMs: percent of one core per VM over a window, medians across the VMs. */
export interface IdleCpu {
  count: number;
  seconds: number;
  /** The guest's clock: the TSC (tsc_early_khz= given, NO_HZ_IDLE stops the tick) or jiffies (no rate given: the tick runs). */
  clock: 'tsc' | 'jiffies';
  percentOfCorePerVm: { median: number; min: number; max: number };
}

export interface FormatFigures {
  format: string;
  sizes: ImageSizes;
  microvm: BootTimes;
  smallestMemory: SmallestMemory;
  density: DensityRun;
  idle: IdleCpu[];
}

export interface LightnessSection {
  formats: FormatFigures[];
}

/** utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15). */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Clock ticks per second for /proc/PID/stat: USER_HZ, 100 on Linux. */
const USER_HZ = 100;

/**
 * Starts `count` VMs, waits until all are ready and a few seconds more (boot
 * work done), then measures each QEMU's CPU time over `seconds`.
 */
export async function idleCpu(imageDir: string, { count, seconds, memoryMiB, clock }: { count: number; seconds: number; memoryMiB: number; clock: IdleCpu['clock'] }): Promise<IdleCpu> {
  const qemu = getBackend('qemu');
  const vms: QemuVm[] = [];
  try {
    for (let i = 0; i < count; i++) vms.push(await qemu.create(imageDir, { memoryMiB, qemu: { tcgCacheMiB: 8, ...(clock === 'jiffies' ? { tscKhz: null } : {}) } }));
    await Promise.all(vms.map((vm) => vm.waitReady(undefined, { timeoutMs: 10 * 60_000 })));
    await new Promise((r) => setTimeout(r, 5000));
    const before = await Promise.all(vms.map((vm) => cpuTicks(vm.record.pid)));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const after = await Promise.all(vms.map((vm) => cpuTicks(vm.record.pid)));
    const elapsed = (performance.now() - t0) / 1000;
    const percent = after.map((a, i) => ((a - before[i]!) / USER_HZ / elapsed) * 100);
    return { count, seconds, clock, percentOfCorePerVm: { median: round(median(percent)), min: round(Math.min(...percent)), max: round(Math.max(...percent)) } };
  } finally {
    await Promise.all(vms.map((vm) => vm.destroy().catch(() => undefined)));
  }
}

/** The figures of one image (one root format), all from this run; its boot times are taken with the others' (interleavedBootTimes). */
export async function formatFigures(app: string, format: string, imageDir: string, microvm: BootTimes, { densityCount = 100, idleCount = 20, idleSeconds = 30 } = {}): Promise<FormatFigures> {
  const sizes = await imageSizes(imageDir);
  console.log(`${format}: first answer ${microvm.firstAnswerMs.median} ms`);
  const smallest = await smallestMemory(app, imageDir);
  console.log(`${format}: serves 200 requests with ${smallest.memoryMiB} MiB`);
  const memoryMiB = smallest.memoryMiB + 4;
  const run = await density(app, imageDir, { count: densityCount, memoryMiB, tcgCacheMiB: 8, ksm: true });
  console.log(`${format}: ${run.serving}/${run.count} serving, PSS ${run.pssPerVmMiB.median} MiB per VM, ${run.ksm?.pssPerVmMiB.median} MiB with KSM`);
  const idle: IdleCpu[] = [];
  for (const clock of ['tsc', 'jiffies'] as const) {
    const figures = await idleCpu(imageDir, { count: idleCount, seconds: idleSeconds, memoryMiB, clock });
    console.log(`${format}: ${idleCount} idle VMs (${clock} clock): ${figures.percentOfCorePerVm.median} % of a core each`);
    idle.push(figures);
  }
  return { format, sizes, microvm, smallestMemory: smallest, density: run, idle };
}

/** The README's table for the section. */
export function renderLightness(section: LightnessSection, when: string): string[] {
  const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(2)} MiB`;
  const out = [`### The root: initramfs or erofs disk (${when}; nginx, microvm, one run; the formats' boots taken in turns)`, ''];
  out.push(
    'The initramfs is unpacked into the guest\'s RAM at boot; the erofs image is a read-only virtio-blk disk the guest reads page by page, one file every VM of the image shares in the host\'s page cache. Density: 100 VMs started at once with the smallest memory + 4 MiB, PSS of each QEMU with all serving. KSM: the host\'s same-page merging turned on for the measurement (QEMU marks guest memory mergeable; tinyx leaves the host\'s setting alone), after three full scans: the guests\' kernels, the root\'s pages in their page caches and their free pages are the same in every VM. It is the host\'s choice: merged pages let one guest time another\'s memory accesses. Idle: 20 VMs ready and idle, their QEMU CPU time over 30 s; "tsc" is the guest\'s clock as tinyx boots it under TCG (NO_HZ_IDLE stops the tick), "jiffies" the same image without the host\'s TSC rate (the tick runs at 250 Hz).',
    '',
  );
  out.push('| root | kernel + root | first answer (median) | smallest memory | 100 VMs: serving | host memory per VM (PSS) | the same, host KSM on | idle, tsc clock | idle, jiffies |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const f of section.formats) {
    const idle = (clock: string): string => {
      const i = f.idle.find((x) => x.clock === clock);
      return i ? `${i.percentOfCorePerVm.median} % of a core` : '?';
    };
    out.push(
      `| ${f.format} | ${mib(f.sizes.totalBytes)} (${mib(f.sizes.bzImageBytes)} + ${mib(f.sizes.initrdBytes)}) | ${(f.microvm.firstAnswerMs.median / 1000).toFixed(2)} s | **${f.smallestMemory.memoryMiB} MiB** | ${f.density.serving} / ${f.density.count} | **${f.density.pssPerVmMiB.median} MiB** | ${f.density.ksm ? `${f.density.ksm.pssPerVmMiB.median} MiB` : 'not measured'} | ${idle('tsc')} | ${idle('jiffies')} |`,
    );
  }
  return out;
}
