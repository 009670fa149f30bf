import { READY_LINE } from '@tinyx/image';
import type { StampedLine } from './console-clock.js';
import type { SystemMap } from './system-map.js';

/**
 * Where a boot's time goes, from a console recorded with host times (the
 * guest booted with `printk.time=1 initcall_debug`): the VMM's start, the
 * kernel's clock zero, each initcall, the root's mount, /init, the app's
 * start, its listen, and the host's probe. Pure: the same console gives the
 * same profile (unit-tested on a recorded one).
 */

/** The kernel command line a profiled boot adds: timestamps, and a line before and after each initcall, printed. */
export const PROFILE_CMDLINE: readonly string[] = ['printk.time=1', 'initcall_debug', 'loglevel=8'];

export type PhaseId = 'vmm' | 'kernel-setup' | 'initcalls' | 'root' | 'kernel-finish' | 'init' | 'app' | 'probe';

export const PHASE_TITLES: Record<PhaseId, string> = {
  vmm: 'VMM and firmware, to the kernel clock',
  'kernel-setup': 'kernel setup, to the first initcall',
  initcalls: 'initcalls',
  root: 'root filesystem, to its mount',
  'kernel-finish': 'freeing init memory, to /init',
  init: '/init: mounts and network, to the app',
  app: 'the app, until /init saw it listen',
  probe: "the host's probe, to its answer",
};

export interface BootPhase {
  id: PhaseId;
  title: string;
  /** ms since the VMM's start. */
  startMs: number;
  ms: number;
}

export interface BootStep {
  kind: 'initcall' | 'gap' | 'phase';
  /** The initcall's function, the two console lines around a gap, or the phase's title. */
  name: string;
  startMs: number;
  ms: number;
  /** For an initcall: the driver probes it ran, with their times. */
  detail?: string;
}

export interface BootProfile {
  /** The VMM's start to the probe's answer, in ms. */
  readyMs: number;
  /** When the guest kernel's clock read zero (about its entry), in ms after the VMM's start; null when the console has no timestamps. */
  kernelZeroMs: number | null;
  phases: BootPhase[];
  /** Every initcall, in the order run. */
  initcalls: BootStep[];
  /** The ten most expensive steps: initcalls, silences between kernel lines outside initcalls, and the phases outside the kernel. */
  top: BootStep[];
  /** What printing one console line cost (ms), subtracted from each initcall and gap; a profiled boot prints `consoleLines` of them. */
  lineCostMs: number;
  consoleLines: number;
  /** Initcalls printed as bare addresses that no System.map named. */
  unnamed: number;
}

interface KernelLine {
  t: number;
  text: string;
  atMs: number;
}

const KERNEL_LINE = /^\[\s*(\d+)\.(\d{6})\] (.*)$/;
const CALLING = /^calling {1,2}(\S+) @ \d+$/;
const RETURNED = /^initcall (\S+) returned (-?\d+) after (\d+) usecs$/;
const PROBE = /^probe of (\S+) returned (-?\d+) after (\d+) usecs$/;
const ROOT_MOUNTED = /^(VFS: Mounted root|Freeing initrd memory)/;
const RUN_INIT = /^Run \S+ as init process/;
const APP_STARTING = /^tinyx: starting /;

/** The profile of one boot: its console with host times, the host's ready time, and the kernel's System.map when there is one. */
export function profileBoot(lines: readonly StampedLine[], readyMs: number, symbols?: SystemMap): BootProfile {
  const kernel: KernelLine[] = [];
  for (const line of lines) {
    const m = KERNEL_LINE.exec(line.text);
    if (m) kernel.push({ t: Number(m[1]) * 1000 + Number(m[2]) / 1000, text: m[3]!, atMs: line.atMs });
  }
  // A line reaches the host after the guest stamps it, never before: the smallest difference is the offset of the guest's clock.
  const kernelZeroMs = kernel.length > 0 ? Math.min(...kernel.map((l) => l.atMs - l.t)) : null;
  const hostOf = (l: KernelLine): number => (kernelZeroMs ?? 0) + l.t;
  const named = (symbol: string): { name: string; unnamed: boolean } => {
    if (!/^0x[0-9a-f]+$/.test(symbol)) return { name: symbol.replace(/\+0x0\/0x[0-9a-f]+$/, ''), unnamed: false };
    const name = symbols?.name(BigInt(symbol));
    return name ? { name, unnamed: false } : { name: symbol, unnamed: true };
  };

  // Kernel text addresses only (0xffffffff8.......): not the masks and limits some lines print in hex.
  const readable = (text: string): string => text.replace(/0xffffffff8[0-9a-f]{7}\b/g, (address) => named(address).name);

  // Initcalls: a "calling" line, then its "returned" line; driver probes between them are its own.
  const spans: { start: KernelLine; end: KernelLine; name: string; probes: string[]; unnamed: boolean }[] = [];
  let open: { start: KernelLine; probes: string[] } | undefined;
  const inside = new Set<KernelLine>();
  for (const line of kernel) {
    if (CALLING.test(line.text)) open = { start: line, probes: [] };
    else if (open && PROBE.test(line.text)) {
      const [, device, , usecs] = PROBE.exec(line.text)!;
      open.probes.push(`${device} ${(Number(usecs) / 1000).toFixed(1)} ms`);
    } else if (open && RETURNED.test(line.text)) {
      const { name, unnamed } = named(RETURNED.exec(line.text)![1]!);
      spans.push({ start: open.start, end: line, name, probes: open.probes, unnamed });
      open = undefined;
    }
    if (open) inside.add(line);
  }
  const lineCostMs = lineCost(spans.map((s) => s.end.t - s.start.t));
  const initcalls: BootStep[] = spans.map((s) => ({
    kind: 'initcall',
    name: s.name,
    startMs: round(hostOf(s.start)),
    ms: round(Math.max(0, s.end.t - s.start.t - lineCostMs)),
    ...(s.probes.length > 0 ? { detail: `probes: ${s.probes.join(', ')}` } : {}),
  }));

  // Silences between kernel lines that no initcall covers: early setup, the root's mount, freeing init memory
  // (up to /init: the kernel's later lines interleave with userland, whose phases count that time).
  const gaps: BootStep[] = [];
  const initRuns = kernel.findIndex((l) => RUN_INIT.test(l.text));
  const kernelEnd = initRuns < 0 ? kernel.length : initRuns + 1;
  for (let i = 1; i < kernelEnd; i++) {
    const before = kernel[i - 1]!;
    const after = kernel[i]!;
    if (inside.has(before)) continue;
    const ms = after.t - before.t - lineCostMs;
    if (ms >= 1) gaps.push({ kind: 'gap', name: `between "${shorten(readable(before.text))}" and "${shorten(readable(after.text))}"`, startMs: round(hostOf(before)), ms: round(ms) });
  }

  // The phases: each ends where the next marker is seen; a missing marker merges its phase into the next.
  const firstCall = kernel.find((l) => CALLING.test(l.text));
  const lastReturn = [...kernel].reverse().find((l) => RETURNED.test(l.text));
  const rootLines = kernel.filter((l) => ROOT_MOUNTED.test(l.text));
  const runInit = kernel.find((l) => RUN_INIT.test(l.text));
  const starting = lines.find((l) => APP_STARTING.test(l.text));
  const readyLine = lines.find((l) => l.text.startsWith(READY_LINE));
  const marks: [PhaseId, number | undefined][] = [
    ['vmm', kernelZeroMs ?? undefined],
    ['kernel-setup', firstCall && hostOf(firstCall)],
    ['initcalls', lastReturn && hostOf(lastReturn)],
    ['root', rootLines.length > 0 ? hostOf(rootLines[rootLines.length - 1]!) : undefined],
    ['kernel-finish', runInit && hostOf(runInit)],
    ['init', starting?.atMs],
    ['app', readyLine?.atMs],
    ['probe', readyMs],
  ];
  const phases: BootPhase[] = [];
  let at = 0;
  for (const [id, end] of marks) {
    if (end === undefined || end < at) continue;
    phases.push({ id, title: PHASE_TITLES[id], startMs: round(at), ms: round(end - at) });
    at = end;
  }

  const outsideKernel = phases.filter((p) => ['vmm', 'init', 'app', 'probe'].includes(p.id)).map((p): BootStep => ({ kind: 'phase', name: p.title, startMs: p.startMs, ms: p.ms }));
  const top = [...initcalls, ...gaps, ...outsideKernel].sort((a, b) => b.ms - a.ms || a.startMs - b.startMs).slice(0, 10);
  return {
    readyMs,
    kernelZeroMs: kernelZeroMs === null ? null : round(kernelZeroMs),
    phases,
    initcalls,
    top,
    lineCostMs: round(lineCostMs),
    consoleLines: kernel.length,
    unnamed: spans.filter((s) => s.unnamed).length,
  };
}

/**
 * What printing a line costs: the tenth percentile of the times between an
 * initcall's two lines (most initcalls do next to nothing, so the low ones
 * are the line itself). Zero without initcalls.
 */
function lineCost(deltas: readonly number[]): number {
  const positive = deltas.filter((d) => d > 0).sort((a, b) => a - b);
  return positive.length === 0 ? 0 : positive[Math.floor(positive.length / 10)]!;
}

function shorten(text: string): string {
  return text.length > 48 ? `${text.slice(0, 45)}...` : text;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
