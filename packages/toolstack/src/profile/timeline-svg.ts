import { checkOwnedFile, writeOwnedFile, type OwnedFile } from '../owned-file.js';
import type { BootProfile, PhaseId } from './boot-profile.js';

const COLOURS: Record<PhaseId, string> = {
  vmm: '#8da0cb',
  'kernel-setup': '#66c2a5',
  initcalls: '#a6d854',
  root: '#ffd92f',
  'kernel-finish': '#e5c494',
  init: '#fc8d62',
  app: '#e78ac3',
  probe: '#b3b3b3',
};

/**
 * A boot profile as a picture a browser opens: the phases on one time axis,
 * every initcall as a tick under them, and the ten most expensive steps as
 * labelled bars. Plain SVG, no script.
 */
export function timelineSvg(profile: BootProfile, title: string): string {
  const width = 1100;
  const left = 20;
  const axis = width - 2 * left;
  const total = Math.max(profile.readyMs, ...profile.phases.map((p) => p.startMs + p.ms), 1);
  const x = (ms: number): number => left + (ms / total) * axis;
  const w = (ms: number): number => Math.max(1, (ms / total) * axis);
  const parts: string[] = [];
  let y = 30;
  parts.push(`<text x="${left}" y="${y}" font-size="16" font-weight="bold">${escape(title)}: ready ${profile.readyMs} ms after the VMM's start</text>`);
  y += 20;
  // The axis, every 100 ms.
  const step = total > 3000 ? 500 : 100;
  for (let ms = 0; ms <= total; ms += step) {
    parts.push(`<line x1="${x(ms)}" y1="${y}" x2="${x(ms)}" y2="${y + 130}" stroke="#ddd"/>`, `<text x="${x(ms) + 2}" y="${y + 10}" font-size="10" fill="#777">${ms} ms</text>`);
  }
  y += 16;
  for (const phase of profile.phases) {
    parts.push(
      `<rect x="${x(phase.startMs)}" y="${y}" width="${w(phase.ms)}" height="28" fill="${COLOURS[phase.id]}"><title>${escape(`${phase.title}: ${phase.ms} ms`)}</title></rect>`,
    );
  }
  y += 44;
  parts.push(`<text x="${left}" y="${y - 4}" font-size="11">initcalls (${profile.initcalls.length})</text>`);
  for (const call of profile.initcalls) {
    parts.push(`<rect x="${x(call.startMs)}" y="${y}" width="${w(call.ms)}" height="14" fill="#4d9221"><title>${escape(`${call.name}: ${call.ms} ms`)}</title></rect>`);
  }
  y += 40;
  // The legend: each phase's colour, title and time.
  let lx = left;
  for (const phase of profile.phases) {
    const label = `${phase.id} ${phase.ms} ms`;
    parts.push(`<rect x="${lx}" y="${y}" width="10" height="10" fill="${COLOURS[phase.id]}"/>`, `<text x="${lx + 14}" y="${y + 9}" font-size="11">${escape(label)}</text>`);
    lx += 14 + label.length * 6.5 + 12;
  }
  y += 34;
  parts.push(`<text x="${left}" y="${y}" font-size="13" font-weight="bold">The ten most expensive steps</text>`);
  y += 10;
  for (const stepItem of profile.top) {
    parts.push(
      `<rect x="${x(stepItem.startMs)}" y="${y}" width="${w(stepItem.ms)}" height="14" fill="#d95f02" opacity="0.8"/>`,
      `<text x="${Math.min(x(stepItem.startMs + stepItem.ms) + 4, width - 420)}" y="${y + 11}" font-size="11">${escape(`${stepItem.ms} ms  ${stepItem.name}`)}</text>`,
    );
    y += 20;
  }
  y += 10;
  parts.push(
    `<text x="${left}" y="${y}" font-size="10" fill="#777">${escape(`Profiled boot: printk.time=1 initcall_debug; ${profile.consoleLines} kernel lines at about ${profile.lineCostMs} ms each, subtracted from the steps (not from the phases).`)}</text>`,
  );
  return `${SVG_START} width="${width}" height="${y + 20}" font-family="sans-serif">\n${parts.join('\n')}\n</svg>\n`;
}

/** How every timeline tinyx draws begins: what says a file at --profile-svg's path is one (and may be replaced). */
const SVG_START = '<svg xmlns="http://www.w3.org/2000/svg" data-generator="tinyx boot profile"';
const TIMELINE_FILE: OwnedFile = { option: '--profile-svg', start: SVG_START, what: 'a timeline it drew' };

/**
 * Refuses a path that holds anything but a timeline tinyx drew: a directory,
 * a link, or a file of the user's. Called before the boot, and again by
 * writeTimeline, so that a refusal costs no boot and nothing is overwritten.
 */
export async function checkTimelineFile(file: string): Promise<void> {
  await checkOwnedFile(file, TIMELINE_FILE);
}

/** Writes the timeline under a temporary name beside `file`, then renames it over the file (checked again first). */
export async function writeTimeline(file: string, svg: string): Promise<void> {
  await writeOwnedFile(file, TIMELINE_FILE, svg);
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
