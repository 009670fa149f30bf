// Boot phases (issue 14): where nginx's boot goes, from the boot profiler
// (`tinyx run --profile`), next to the quiet boot's total from the same run.
// A profiled boot prints a line per initcall, so it is slower than a quiet
// one: the phases say where the time goes, the quiet total what a user waits.
import { PHASE_TITLES, getBackend, profiledBoot, type BootProfile, type PhaseId } from '@tinyx/toolstack';
import { RUNS, interleavedBootTimes, median, round, type BootTimes } from './boot.js';

export interface FormatPhases {
  format: string;
  /** Quiet boots (no profiling), taken in turns with the other format's. */
  quiet: BootTimes;
  /** Profiled boots: the VMM's start to the probe's answer. */
  profiledReadyMs: number[];
  /** Each phase's median over the profiled boots, in ms. */
  phasesMs: Partial<Record<PhaseId, number>>;
  /** The ten most expensive steps of the profiled boot whose time to ready is the median. */
  top: { kind: string; name: string; ms: number }[];
  initcalls: number;
}

export interface PhasesSection {
  formats: FormatPhases[];
}

/** RUNS profiled boots of each image, in turns (both orders), and RUNS quiet ones likewise. */
export async function bootPhases(app: string, images: readonly { format: string; dir: string }[]): Promise<PhasesSection> {
  const quiet = await interleavedBootTimes(app, images.map((i) => i.dir));
  const profiles: BootProfile[][] = images.map(() => []);
  for (let i = 0; i < RUNS; i++) {
    const order = images.map((_, j) => j);
    if (i % 2 === 1) order.reverse();
    for (const j of order) profiles[j]!.push(await profileOnce(images[j]!.dir));
  }
  return {
    formats: images.map((image, j) => {
      const runs = profiles[j]!;
      const phasesMs: Partial<Record<PhaseId, number>> = {};
      for (const id of Object.keys(PHASE_TITLES) as PhaseId[]) {
        const xs = runs.flatMap((p) => p.phases.filter((phase) => phase.id === id).map((phase) => phase.ms));
        if (xs.length === runs.length) phasesMs[id] = round(median(xs), 1);
      }
      const byReady = [...runs].sort((a, b) => a.readyMs - b.readyMs);
      const middle = byReady[Math.floor(byReady.length / 2)]!;
      console.log(`${image.format}: quiet first answer ${quiet[j]!.firstAnswerMs.median} ms; profiled ready ${median(runs.map((p) => p.readyMs))} ms`);
      return {
        format: image.format,
        quiet: quiet[j]!,
        profiledReadyMs: runs.map((p) => p.readyMs),
        phasesMs,
        top: middle.top.map((s) => ({ kind: s.kind, name: s.name, ms: s.ms })),
        initcalls: middle.initcalls.length,
      };
    }),
  };
}

async function profileOnce(dir: string): Promise<BootProfile> {
  const profiled = profiledBoot({});
  const vm = await getBackend('qemu').create(dir, profiled.options);
  try {
    const ready = await vm.waitReady(undefined, { timeoutMs: 60_000 });
    return await profiled.finish(vm, ready.ms);
  } finally {
    await profiled.dispose();
    await vm.destroy();
  }
}

/** The README's table: each phase's median per format, the profiled and quiet totals, and the costliest steps. */
export function renderPhases(section: PhasesSection, when: string): string[] {
  const out = [`### Where the boot goes (${when}; nginx, microvm, one run; medians of ${RUNS} profiled boots per root, taken in turns)`, ''];
  out.push(
    "From `tinyx run --profile`: the guest boots with `printk.time=1 initcall_debug`, its console is stamped with the host's time as it arrives, and each phase ends at a line the kernel, /init or the host sees. Printing a line per initcall slows the kernel's part, so the quiet boot's first answer (the same images, the same run, no profiling) is given too.",
    '',
  );
  const head = section.formats.map((f) => f.format);
  out.push(`| phase | ${head.join(' | ')} |`, `|---|${head.map(() => '---:').join('|')}|`);
  for (const id of Object.keys(PHASE_TITLES) as PhaseId[]) {
    out.push(`| ${PHASE_TITLES[id]} | ${section.formats.map((f) => (f.phasesMs[id] === undefined ? '–' : `${f.phasesMs[id]} ms`)).join(' | ')} |`);
  }
  out.push(`| **profiled boot, to the probe's answer** | ${section.formats.map((f) => `**${median(f.profiledReadyMs)} ms**`).join(' | ')} |`);
  out.push(`| **quiet boot, first answer** | ${section.formats.map((f) => `**${f.quiet.firstAnswerMs.median} ms**`).join(' | ')} |`);
  for (const f of section.formats) {
    out.push('', `The ten costliest steps of the ${f.format} boot whose profiled time is the median (${f.initcalls} initcalls):`, '');
    out.push('| ms | kind | step |', '|---:|---|---|');
    for (const s of f.top) out.push(`| ${s.ms} | ${s.kind} | ${s.name.replace(/\|/g, '/')} |`);
  }
  return out;
}
