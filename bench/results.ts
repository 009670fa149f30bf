// bench/results.json: what the host is, and one section per part of the
// benchmark, each the figures of its latest run. A run of some sections keeps
// the others' as they were, so the file is read back before it is written.
import { readFile } from 'node:fs/promises';
import type { AccelChoice } from '@tinyx/toolstack';
import type { BootTimes, ImageSizes, PauseAndSave, SmallestMemory, Stats } from './boot.js';
import type { KernelFigures, RootFigures } from './build.js';
import type { CorpusFigures } from './corpus.js';
import type { DensityRun } from './density.js';
import type { LightnessSection } from './lightness.js';
import type { PhasesSection } from './phases.js';
import { isRecord } from './json-shape.js';
import type { XenFigures } from './xen.js';

/** When a section last ran, and how long it took. */
export interface SectionTimes {
  /** ISO 8601. */
  date: string;
  seconds: number;
  /** The commit the section ran at (`git describe --always --dirty`); absent in sections measured before it was recorded. */
  commit?: string;
  /** When the `npm run bench` that measured it started: sections of one run share it, so a comparison across sections can say whether it is one run. */
  run?: string;
}

/** build: each app's root filesystem, cold and warm. */
export interface BuildSection {
  apps: Record<string, RootFigures>;
}

/** kernels: nginx's kernel per platform. */
export interface KernelsSection {
  platforms: Record<string, KernelFigures>;
}

/** One app's image under QEMU. */
export interface AppBoot {
  sizes: ImageSizes;
  microvm: BootTimes;
  q35: BootTimes;
  smallestMemory: SmallestMemory;
  pauseSave: PauseAndSave;
}

/** boot: tinyx nginx and redis, and nginx with an uncompressed initrd. */
export interface BootSection {
  apps: Record<string, AppBoot>;
  nginxUncompressed: { sizes: ImageSizes; microvm: BootTimes; smallestMemory: SmallestMemory };
}

/** One app as a Debian VM, and the tinyx root under Debian's kernel. */
export interface AppBaselines {
  debianVm: { firstAnswerMs: Stats; kernelVersion: string; rootBytes: number; diskBytes: number; memoryMiB: number };
  stockKernelTinyxRoot: { firstAnswerMs: Stats; kernelVersion: string; memoryMiB: number };
}

/** baselines: the same apps without tinyx, or with Debian's kernel. */
export interface BaselinesSection {
  apps: Record<string, AppBaselines>;
}

/** density: many nginx VMs at once, one entry per run. */
export interface DensitySection {
  runs: DensityRun[];
}

/** What each section measures, by its name (`npm run bench -- NAME`). */
export interface SectionFigures {
  build: BuildSection;
  kernels: KernelsSection;
  boot: BootSection;
  baselines: BaselinesSection;
  density: DensitySection;
  lightness: LightnessSection;
  phases: PhasesSection;
  corpus: CorpusFigures;
  xen: XenFigures;
}

export type SectionName = keyof SectionFigures;

/** The sections in the order a full run measures them. */
export const SECTION_NAMES: readonly SectionName[] = ['build', 'kernels', 'boot', 'baselines', 'density', 'lightness', 'phases', 'corpus', 'xen'];

export function isSectionName(name: string): name is SectionName {
  return (SECTION_NAMES as readonly string[]).includes(name);
}

/** A section as results.json keeps it: its figures and when it ran. */
export type StoredSection<K extends SectionName> = SectionTimes & SectionFigures[K];

export type StoredSections = { [K in SectionName]?: StoredSection<K> };

/** bench/results.json. */
export interface BenchResults extends StoredSections {
  /** The host, in a line: OS, CPUs, memory, Node. */
  machine: string;
  accel: AccelChoice;
}

/**
 * results.json as the last run left it ({} when there is none). Only the
 * outline is checked (an object, each section one with a date): what is
 * inside a section was written by this program.
 */
export async function readResults(file: string): Promise<Partial<BenchResults>> {
  const value: unknown = JSON.parse(await readFile(file, 'utf8').catch(() => '{}'));
  if (!isStoredResults(value)) throw new Error(`${file}: not the benchmark's results (an object whose sections each have a date); move it away to start afresh`);
  return value;
}

function isStoredResults(value: unknown): value is Partial<BenchResults> {
  if (!isRecord(value)) return false;
  if (value.machine !== undefined && typeof value.machine !== 'string') return false;
  if (value.accel !== undefined && !isRecord(value.accel)) return false;
  return SECTION_NAMES.every((name) => {
    const stored = value[name];
    return stored === undefined || (isRecord(stored) && typeof stored.date === 'string');
  });
}
