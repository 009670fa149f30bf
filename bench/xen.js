// The Xen figures of issue 5: the Xen harness (test/xen) boots Xen 4.17 inside
// QEMU (TCG) and runs its bench suite in dom0 (test/xen/bench-dom0.ts); this
// runs it, keeps its raw samples and summarises them. Absolute times are
// TCG inside TCG: only the ratios between the rows travel to real hardware.
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { stats } from './boot.js';

const VARIANTS = {
  xen: "xl create, Xen's vif-bridge",
  lean: "xl create, tinyx's lean vif script",
  pool: 'from the pool (claim + unpause)',
};

/**
 * Runs the harness's bench suite and returns the figures for bench/results.json.
 * The results are read from the serial console's log (each a framed line), so
 * that a part that failed does not lose the others; failures are kept as such.
 * `only` runs some parts again (their own console log, `xen-console-<parts>.log`
 * next to `consoleLog`); the summary takes each part's latest result from all
 * the logs there. With `fromConsole`, only reads the logs of earlier runs.
 */
export async function xenFigures({ repo, pvh, pv, count, runs, consoleLog, only, fromConsole = false }) {
  const thisLog = only ? consoleLog.replace(/\.log$/, `-${only.replace(/,/g, '+')}.log`) : consoleLog;
  if (!fromConsole) {
    const args = [join(repo, 'test/dist/xen/harness.js'), '--suites', 'bench', '--pvh', pvh, '--pv', pv, '--bench-count', String(count), '--bench-runs', String(runs), '--timeout', '7200', '--console', thisLog, '--json'];
    if (only) args.push('--only', only);
    await promisify(execFile)(process.execPath, args, { maxBuffer: 64 * 2 ** 20 }).catch((error) => {
      // A failed part is reported below, from the console; a harness that could not run at all is an error.
      if (!error.stdout) throw new Error(`the Xen harness failed (console: ${thisLog}): ${error.stderr ?? error.message}`);
    });
  }
  const dir = dirname(consoleLog);
  const prefix = basename(consoleLog).replace(/\.log$/, '');
  const logs = [];
  for (const name of await readdir(dir)) {
    if (name === `${prefix}.log` || (name.startsWith(`${prefix}-`) && name.endsWith('.log'))) logs.push({ path: join(dir, name), mtime: (await stat(join(dir, name))).mtimeMs });
  }
  const byName = {};
  for (const log of logs.sort((a, b) => a.mtime - b.mtime)) {
    for (const line of (await readFile(log.path, 'utf8')).split('\n')) {
      if (!line.startsWith('tinyx-xen-result: ')) continue;
      const result = JSON.parse(line.slice('tinyx-xen-result: '.length));
      byName[result.name] = { ...result, log: basename(log.path) };
    }
  }
  const results = Object.values(byName);
  const failures = results.filter((r) => !r.ok).map((r) => ({ name: r.name, error: r.error }));
  for (const f of failures) console.log(`xen bench: ${f.name} failed: ${f.error}`);
  if (!byName.xen) throw new Error(`no results in ${consoleLog}: dom0 did not get as far as the tests`);
  const xen = byName.xen.details;
  const density = {};
  for (const variant of Object.keys(VARIANTS)) {
    const d = byName[`bench-density-${variant}`]?.details;
    if (!d?.createMs) continue;
    density[variant] = {
      createMs: d.createMs,
      readyMs: d.readyMs,
      summary: stats(d.createMs),
      readySummary: d.readyMs.length ? stats(d.readyMs) : null,
      ...(d.failedAt ? { failedAt: d.failedAt, error: d.error } : {}),
      hotplugOnlineMs: d.hotplug.online.length ? stats(d.hotplug.online) : null,
      hotplugOfflineMs: d.offlineHotplug.length ? stats(d.offlineHotplug) : null,
      ...(d.fillMs ? { fillMs: stats(d.fillMs), fillHotplugOnlineMs: stats(d.poolFillHotplug.online) } : {}),
      destroyAllMs: byName[`bench-density-${variant}`].ms.destroyAll,
      running: d.running,
      answered: d.answered,
      freeMemoryMiB: { before: d.freeMemoryMiBBefore, after: d.freeMemoryMiBAfter },
    };
  }
  const boot = {};
  for (const [type, samples] of Object.entries(byName['bench-boot']?.details?.samples ?? {})) {
    boot[type] = Object.fromEntries(Object.entries(samples).map(([key, xs]) => [key, stats(xs)]));
  }
  return {
    xen: xen.xen,
    dom0Kernel: xen.dom0Kernel,
    guest: { type: byName['bench-density-xen']?.details.type, memoryMiB: byName['bench-density-xen']?.details.memoryMiB, count },
    bootRuns: byName['bench-boot']?.details?.runs ?? runs,
    bootMemoryMiB: byName['bench-boot']?.details?.memoryMiB,
    density,
    boot,
    failures,
  };
}

/** The README's Xen tables. */
export function renderXen(x) {
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const out = [`### Xen (${x.date.slice(0, 10)}; Xen ${x.xen} inside QEMU TCG, dom0 with 2 vCPUs; absolute times are emulation inside emulation, only the ratios travel)`, ''];
  const variants = Object.keys(VARIANTS).filter((v) => x.density[v]);
  if (variants.length) {
    const count = x.guest.count;
    out.push(
      `Creation time of the Nth domain, N = 1..${count}: each domain (nginx, ${x.guest.type}, ${x.guest.memoryMiB} MiB) is left running while the next is created, as in LightVM's figure, and is waited for (HTTP 200) before the next, so that the toolstack, not the guests' boots, shares dom0's two emulated CPUs. "xl create" is the whole command; "from the pool" is \`tinyx run --backend xen\`'s path, a claim and \`xl unpause\` of a domain created paused ahead of time. The vif script's own time is measured by a wrapper around it. At the end every running domain answered HTTP 200.`,
      '',
    );
    const failedAt = variants.map((v) => x.density[v].failedAt).filter(Boolean);
    const rows = [...new Set([1, 2, 4, 8, 12, 16, 20, 24, ...failedAt, count].filter((n) => n <= count))].sort((a, b) => a - b);
    out.push(`| N | ${variants.map((v) => VARIANTS[v]).join(' | ')} |`);
    out.push(`|---:|${variants.map(() => '---:').join('|')}|`);
    const at = (v, n) => (x.density[v].createMs[n - 1] !== undefined ? s(x.density[v].createMs[n - 1]) : x.density[v].failedAt === n ? '**failed**' : '-');
    for (const n of rows) out.push(`| ${n} | ${variants.map((v) => at(v, n)).join(' | ')} |`);
    out.push(`| median of all | ${variants.map((v) => `**${s(x.density[v].summary.median)}**`).join(' | ')} |`);
    out.push(`| request to HTTP 200 (median) | ${variants.map((v) => (x.density[v].readySummary ? s(x.density[v].readySummary.median) : '?')).join(' | ')} |`);
    out.push(`| domains running at the end | ${variants.map((v) => `${x.density[v].running} of ${count}`).join(' | ')} |`);
    out.push(`| vif script, online (median) | ${variants.map((v) => (v === 'pool' ? `none at request (${s(x.density[v].fillHotplugOnlineMs.median)} at fill)` : s(x.density[v].hotplugOnlineMs.median))).join(' | ')} |`);
    out.push(`| vif script, offline at destroy (median) | ${variants.map((v) => (x.density[v].hotplugOfflineMs ? s(x.density[v].hotplugOfflineMs.median) : '?')).join(' | ')} |`);
    out.push(`| destroying all ${count}, 4 at a time | ${variants.map((v) => s(x.density[v].destroyAllMs)).join(' | ')} |`);
    // A series ends at its first failure: a create that failed, or a domain that did not get ready (then its create time is in the table).
    for (const v of variants) if (x.density[v].failedAt) out.push('', `${VARIANTS[v]}: the series ended at N = ${x.density[v].failedAt}: ${x.density[v].error.split('\n').slice(0, 3).join(' ').replace(/\s+/g, ' ').replace(/\|/g, '/')}`);
    if (x.density.pool?.fillMs) out.push('', `Filling the pool (\`xl create -p\` with the lean script): ${s(x.density.pool.fillMs.median)} per domain (median).`);
  }
  for (const f of x.failures ?? []) out.push('', `Failed in this run: ${f.name}: ${String(f.error).split('\n')[0]}`);
  const types = Object.keys(x.boot);
  if (types.length) {
    out.push('', `Boot, PVH against PV (nginx: the xen-pvh image as pvh, the xen-pv image as pv; ${x.bootMemoryMiB} MiB, Xen's vif script, medians of ${x.bootRuns}; times from the start of \`xl create\` or \`xl restore\`):`, '');
    const keys = [
      ['create', '`xl create` returns'],
      ['readyLine', 'ready line on the console'],
      ['http', 'first HTTP 200 from dom0'],
      ['save', `\`xl save\` (${x.bootMemoryMiB} MiB)`],
      ['restore', '`xl restore` returns'],
      ['restoreToHttp', 'restore to HTTP 200'],
      ['destroy', 'destroy'],
    ];
    out.push(`| | ${types.join(' | ')} |`);
    out.push(`|---|${types.map(() => '---:').join('|')}|`);
    for (const [key, label] of keys) out.push(`| ${label} | ${types.map((t) => (x.boot[t][key] ? s(x.boot[t][key].median) : '?')).join(' | ')} |`);
  }
  return out;
}
