// The Xen figures of issue 5: the Xen harness (test/xen) boots Xen 4.17 inside
// QEMU (TCG) and runs its bench suite in dom0 (test/xen/bench-dom0.ts); this
// runs it, keeps its raw samples and summarises them. Absolute times are
// TCG inside TCG: only the ratios between the rows travel to real hardware.
import { execFile } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { stats, type Stats } from './boot.js';
import { errorMessage } from './error-text.js';
import { isNumberList, isRecord, optionalNumber } from './json-shape.js';
import type { SectionTimes } from './results.js';

/** The density series, in the table's column order (test/xen/bench-dom0.ts's DensityVariant). */
const VARIANT_NAMES = ['xen', 'lean', 'pool'] as const;
type Variant = (typeof VARIANT_NAMES)[number];
const VARIANTS: Record<Variant, string> = {
  xen: "xl create, Xen's vif-bridge",
  lean: "xl create, tinyx's lean vif script",
  pool: 'from the pool (claim + unpause)',
};

/** The prefix of the harness's result lines on the serial console (test/xen/dom0-init.ts). */
const RESULT_PREFIX = 'tinyx-xen-result: ';

/**
 * One test's outcome as dom0 prints it (test/xen/in-dom0.ts's TestResult):
 * details and ms are whatever the test recorded, so each is narrowed where it is read.
 */
interface HarnessResult {
  name: string;
  ok: boolean;
  error?: string;
  ms?: Record<string, unknown>;
  details?: Record<string, unknown>;
  /** The console log it was read from. */
  log: string;
  /** The harness run that printed it: when it started, and the commit it measured. */
  measured: PartRun;
}

/** When one part of the Xen bench was measured, and at which commit (absent for logs from before it was recorded). */
export interface PartRun {
  date: string;
  commit?: string;
}

/** One density series (N domains, one after the other) of one variant. */
export interface XenDensity {
  createMs: number[];
  readyMs: number[];
  summary: Stats;
  readySummary: Stats | null;
  /** The N at which the series ended, and why. */
  failedAt?: number;
  error?: string;
  hotplugOnlineMs: Stats | null;
  hotplugOfflineMs: Stats | null;
  /** The pool's: filling it, and the vif script's time then. */
  fillMs?: Stats;
  fillHotplugOnlineMs?: Stats;
  destroyAllMs: number | undefined;
  running: number | undefined;
  answered: number | undefined;
  freeMemoryMiB: { before: number | undefined; after: number | undefined };
}

/** The xen section of bench/results.json. */
export interface XenFigures {
  xen: string;
  dom0Kernel: string;
  guest: { type: string | undefined; memoryMiB: number | undefined; count: number };
  bootRuns: number;
  bootMemoryMiB: number | undefined;
  density: Partial<Record<Variant, XenDensity>>;
  /** Per guest type (pvh, pv), per measure (create, readyLine, ...). */
  boot: Record<string, Record<string, Stats>>;
  failures: { name: string; error: string | undefined }[];
  /**
   * Each part's run (bench-boot, bench-density-VARIANT): TINYX_BENCH_XEN_ONLY
   * runs some parts again and keeps the others' latest results, so the parts
   * of one summary can come from different runs, and each table says which.
   */
  parts: Record<string, PartRun>;
}

export interface XenOptions {
  repo: string;
  /** The nginx images for the xen-pvh and xen-pv platforms. */
  pvh: string;
  pv: string;
  /** An nginx xen-pvh image with an erofs root, booted as PVH and PV next to the initramfs ones. */
  erofs?: string | undefined;
  /** The commit this run measures, recorded next to its console log. */
  commit: string;
  count: number;
  runs: number;
  consoleLog: string;
  only?: string | undefined;
  fromConsole?: boolean;
}

/** A result line's JSON, or undefined for a line that is not one. */
function parseResult(json: string, log: string, measured: PartRun): HarnessResult | undefined {
  const value: unknown = JSON.parse(json);
  if (!isRecord(value) || typeof value.name !== 'string' || typeof value.ok !== 'boolean') return undefined;
  return {
    name: value.name,
    ok: value.ok,
    ...(typeof value.error === 'string' ? { error: value.error } : {}),
    ...(isRecord(value.ms) ? { ms: value.ms } : {}),
    ...(isRecord(value.details) ? { details: value.details } : {}),
    log,
    measured,
  };
}

/** A list of numbers a test recorded; anything else is an error naming the test and the field. */
function numbers(result: HarnessResult, value: unknown, field: string): number[] {
  if (!isNumberList(value)) throw new Error(`xen bench: ${result.name}: ${field} is not a list of numbers (${result.log})`);
  return value;
}

/** A string a test recorded; anything else is an error naming the test and the field. */
function text(result: HarnessResult, value: unknown, field: string): string {
  if (typeof value !== 'string') throw new Error(`xen bench: ${result.name}: ${field} is not a string (${result.log})`);
  return value;
}

/**
 * Runs the harness's bench suite and returns the figures for bench/results.json.
 * The results are read from the serial console's log (each a framed line), so
 * that a part that failed does not lose the others; failures are kept as such.
 * `only` runs some parts again (their own console log, `xen-console-<parts>.log`
 * next to `consoleLog`); the summary takes each part's latest result from all
 * the logs there. With `fromConsole`, only reads the logs of earlier runs.
 */
export async function xenFigures({ repo, pvh, pv, erofs, commit, count, runs, consoleLog, only, fromConsole = false }: XenOptions): Promise<XenFigures> {
  const thisLog = only ? consoleLog.replace(/\.log$/, `-${only.replace(/,/g, '+')}.log`) : consoleLog;
  if (!fromConsole) {
    await writeFile(runFile(thisLog), `${JSON.stringify({ date: new Date().toISOString(), commit } satisfies PartRun)}\n`);
    const args = [join(repo, 'test/dist/xen/harness.js'), '--suites', 'bench', '--pvh', pvh, '--pv', pv, '--bench-count', String(count), '--bench-runs', String(runs), '--timeout', '7200', '--console', thisLog, '--json'];
    if (erofs) args.push('--erofs', erofs);
    if (only) args.push('--only', only);
    await promisify(execFile)(process.execPath, args, { maxBuffer: 64 * 2 ** 20 }).catch((error: unknown) => {
      // A failed part is reported below, from the console; a harness that could not run at all is an error.
      const stdout = typeof error === 'object' && error !== null && 'stdout' in error ? error.stdout : undefined;
      const stderr = typeof error === 'object' && error !== null && 'stderr' in error ? error.stderr : undefined;
      if (!stdout) throw new Error(`the Xen harness failed (console: ${thisLog}): ${String(stderr ?? errorMessage(error))}`);
    });
  }
  const dir = dirname(consoleLog);
  const prefix = basename(consoleLog).replace(/\.log$/, '');
  const logs: { path: string; mtime: number }[] = [];
  for (const name of await readdir(dir)) {
    if (name === `${prefix}.log` || (name.startsWith(`${prefix}-`) && name.endsWith('.log'))) logs.push({ path: join(dir, name), mtime: (await stat(join(dir, name))).mtimeMs });
  }
  const byName: Record<string, HarnessResult | undefined> = {};
  for (const log of logs.sort((a, b) => a.mtime - b.mtime)) {
    const measured = await partRun(log.path, log.mtime);
    for (const line of (await readFile(log.path, 'utf8')).split('\n')) {
      if (!line.startsWith(RESULT_PREFIX)) continue;
      const result = parseResult(line.slice(RESULT_PREFIX.length), basename(log.path), measured);
      if (result) byName[result.name] = result;
    }
  }
  const results = Object.values(byName).filter((r) => r !== undefined);
  const failures = results.filter((r) => !r.ok).map((r) => ({ name: r.name, error: r.error }));
  for (const f of failures) console.log(`xen bench: ${f.name} failed: ${f.error}`);
  const described = byName.xen;
  if (!described) throw new Error(`no results in ${consoleLog}: dom0 did not get as far as the tests`);
  if (!described.details) throw new Error(`xen bench: dom0's "xen" test failed: ${described.error} (${described.log})`);
  const density: XenFigures['density'] = {};
  for (const variant of VARIANT_NAMES) {
    const result = byName[`bench-density-${variant}`];
    const d = result?.details;
    if (!result || !d?.createMs) continue;
    const createMs = numbers(result, d.createMs, 'createMs');
    const readyMs = numbers(result, d.readyMs, 'readyMs');
    const online = numbers(result, isRecord(d.hotplug) ? d.hotplug.online : undefined, 'hotplug.online');
    const offline = numbers(result, d.offlineHotplug, 'offlineHotplug');
    density[variant] = {
      createMs,
      readyMs,
      summary: stats(createMs),
      readySummary: readyMs.length ? stats(readyMs) : null,
      ...(d.failedAt ? { failedAt: optionalNumber(d.failedAt), error: typeof d.error === 'string' ? d.error : undefined } : {}),
      hotplugOnlineMs: online.length ? stats(online) : null,
      hotplugOfflineMs: offline.length ? stats(offline) : null,
      ...(d.fillMs
        ? { fillMs: stats(numbers(result, d.fillMs, 'fillMs')), fillHotplugOnlineMs: stats(numbers(result, isRecord(d.poolFillHotplug) ? d.poolFillHotplug.online : undefined, 'poolFillHotplug.online')) }
        : {}),
      destroyAllMs: optionalNumber(result.ms?.destroyAll),
      running: optionalNumber(d.running),
      answered: optionalNumber(d.answered),
      freeMemoryMiB: { before: optionalNumber(d.freeMemoryMiBBefore), after: optionalNumber(d.freeMemoryMiBAfter) },
    };
  }
  const boot: XenFigures['boot'] = {};
  const bootResult = byName['bench-boot'];
  const samples = bootResult?.details?.samples;
  if (bootResult && isRecord(samples)) {
    for (const [type, measures] of Object.entries(samples)) {
      if (!isRecord(measures)) throw new Error(`xen bench: bench-boot: samples.${type} is not an object (${bootResult.log})`);
      boot[type] = Object.fromEntries(Object.entries(measures).map(([key, xs]) => [key, stats(numbers(bootResult, xs, `samples.${type}.${key}`))]));
    }
  }
  const densityXen = byName['bench-density-xen']?.details;
  return {
    xen: text(described, described.details.xen, 'xen'),
    dom0Kernel: text(described, described.details.dom0Kernel, 'dom0Kernel'),
    guest: { type: typeof densityXen?.type === 'string' ? densityXen.type : undefined, memoryMiB: optionalNumber(densityXen?.memoryMiB), count },
    bootRuns: optionalNumber(bootResult?.details?.runs) ?? runs,
    bootMemoryMiB: optionalNumber(bootResult?.details?.memoryMiB),
    density,
    boot,
    failures,
    parts: Object.fromEntries(results.filter((r) => r.name.startsWith('bench-')).map((r) => [r.name, r.measured])),
  };
}

/** The README's Xen tables. */
/** Where a console log's run is recorded. */
function runFile(log: string): string {
  return log.replace(/\.log$/, '.run.json');
}

/** A log's run as recorded next to it; for a log from before that, the log's time and no commit. */
async function partRun(log: string, mtime: number): Promise<PartRun> {
  const recorded: unknown = JSON.parse(await readFile(runFile(log), 'utf8').catch(() => 'null'));
  if (isRecord(recorded) && typeof recorded.date === 'string') return { date: recorded.date, ...(typeof recorded.commit === 'string' ? { commit: recorded.commit } : {}) };
  return { date: new Date(mtime).toISOString() };
}

/** "2026-12-02, commit abc1234" */
function partWhen(part: PartRun | undefined): string {
  return part ? `${part.date.slice(0, 10)}${part.commit ? `, commit ${part.commit}` : ''}` : 'run unknown';
}

export function renderXen(x: SectionTimes & XenFigures): string[] {
  const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const parts = x.parts ?? {};
  const runs = [...new Set(Object.values(parts).map(partWhen))];
  const measured = runs.length === 1 ? runs[0]! : runs.length > 1 ? 'parts from several runs: each table says which' : x.date.slice(0, 10);
  const out = [`### Xen (${measured}; Xen ${x.xen} inside QEMU TCG, dom0 with 2 vCPUs; absolute times are emulation inside emulation, only the ratios travel)`, ''];
  const series = VARIANT_NAMES.flatMap((v) => {
    const d = x.density[v];
    return d ? [{ v, d }] : [];
  });
  if (series.length) {
    const count = x.guest.count;
    out.push(
      `Creation time of the Nth domain, N = 1..${count}: each domain (nginx, ${x.guest.type}, ${x.guest.memoryMiB} MiB) is left running while the next is created, as in LightVM's figure, and is waited for (HTTP 200) before the next, so that the toolstack, not the guests' boots, shares dom0's two emulated CPUs. "xl create" is the whole command; "from the pool" is \`tinyx run --backend xen\`'s path, a claim and \`xl unpause\` of a domain created paused ahead of time. The vif script's own time is measured by a wrapper around it. At the end every running domain answered HTTP 200.`,
      '',
    );
    const failedAt = series.flatMap(({ d }) => (d.failedAt ? [d.failedAt] : []));
    const rows = [...new Set([1, 2, 4, 8, 12, 16, 20, 24, ...failedAt, count].filter((n) => n <= count))].sort((a, b) => a - b);
    const row = (label: string, cell: (d: XenDensity, v: Variant) => string): string => `| ${label} | ${series.map(({ v, d }) => cell(d, v)).join(' | ')} |`;
    out.push(`| N | ${series.map(({ v }) => VARIANTS[v]).join(' | ')} |`);
    out.push(`|---:|${series.map(() => '---:').join('|')}|`);
    const at = (d: XenDensity, n: number): string => {
      const ms = d.createMs[n - 1];
      return ms !== undefined ? s(ms) : d.failedAt === n ? '**failed**' : '-';
    };
    if (runs.length > 1) out.push(row('measured', (_d, v) => partWhen(parts[`bench-density-${v}`])));
    for (const n of rows) out.push(row(String(n), (d) => at(d, n)));
    out.push(row('median of all', (d) => `**${s(d.summary.median)}**`));
    out.push(row('request to HTTP 200 (median)', (d) => (d.readySummary ? s(d.readySummary.median) : '?')));
    out.push(row('domains running at the end', (d) => `${d.running} of ${count}`));
    out.push(
      row('vif script, online (median)', (d, v) =>
        v === 'pool' ? `none at request (${d.fillHotplugOnlineMs ? s(d.fillHotplugOnlineMs.median) : '?'} at fill)` : d.hotplugOnlineMs ? s(d.hotplugOnlineMs.median) : '?',
      ),
    );
    out.push(row('vif script, offline at destroy (median)', (d) => (d.hotplugOfflineMs ? s(d.hotplugOfflineMs.median) : '?')));
    out.push(row(`destroying all ${count}, 4 at a time`, (d) => (d.destroyAllMs !== undefined ? s(d.destroyAllMs) : '?')));
    // A series ends at its first failure: a create that failed, or a domain that did not get ready (then its create time is in the table).
    for (const { v, d } of series) {
      if (d.failedAt) out.push('', `${VARIANTS[v]}: the series ended at N = ${d.failedAt}: ${(d.error ?? '').split('\n').slice(0, 3).join(' ').replace(/\s+/g, ' ').replace(/\|/g, '/')}`);
    }
    if (x.density.pool?.fillMs) out.push('', `Filling the pool (\`xl create -p\` with the lean script): ${s(x.density.pool.fillMs.median)} per domain (median).`);
  }
  for (const f of x.failures ?? []) out.push('', `Failed in this run: ${f.name}: ${String(f.error).split('\n')[0]}`);
  const types = Object.keys(x.boot);
  if (types.length) {
    const erofs = types.some((t) => t.endsWith('erofs')) ? ", and the xen-pvh image with an erofs root (a read-only disk through Xen's block script) as both" : '';
    out.push('', `Boot, PVH against PV (nginx: the xen-pvh image as pvh, the xen-pv image as pv${erofs}; ${x.bootMemoryMiB} MiB, Xen's vif script, medians of ${x.bootRuns}; times from the start of \`xl create\` or \`xl restore\`${runs.length > 1 ? `; measured ${partWhen(parts['bench-boot'])}` : ''}):`, '');
    const keys = [
      ['create', '`xl create` returns'],
      ['readyLine', 'ready line on the console'],
      ['http', 'first HTTP 200 from dom0'],
      ['save', `\`xl save\` (${x.bootMemoryMiB} MiB)`],
      ['restore', '`xl restore` returns'],
      ['restoreToHttp', 'restore to HTTP 200'],
      ['destroy', 'destroy'],
    ] as const;
    out.push(`| | ${types.join(' | ')} |`);
    out.push(`|---|${types.map(() => '---:').join('|')}|`);
    for (const [key, label] of keys) {
      out.push(
        `| ${label} | ${types
          .map((t) => {
            const measure = x.boot[t]?.[key];
            return measure ? s(measure.median) : '?';
          })
          .join(' | ')} |`,
      );
    }
  }
  return out;
}
