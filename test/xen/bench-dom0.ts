// The Xen benchmark (issue 5; `npm run bench -- xen`), run in dom0 by
// in-dom0.ts on the real Xen. Each part is one result line:
//
//   bench-boot      pvh vs pv: create, ready line and first HTTP 200, save, restore to HTTP 200
//   bench-density-<variant>  the Nth domain's creation time for N = 1..K, K domains left running
//                   (LightVM's figure 1 on this Xen): xen = xl create with Xen's vif-bridge,
//                   lean = xl create with tinyx's vif script, pool = claimed from a pool filled ahead
//
// Every vif script runs through a wrapper that logs how long the real script
// took, so that the hotplug's share of each creation is measured, not guessed.
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '@tinyx/builder/internals';
import { XenBackend, XenPool, runtimeDir, type XenVm } from '@tinyx/toolstack';
import { leanVifScript } from '@tinyx/toolstack/internals';
import { httpStatus, waitFor, type Outcome } from './backend-tests.js';

export interface BenchSuite {
  /** The image of the density series and its guest type (pv: the lighter guest under nested TCG). */
  density: { image: string; type: 'pvh' | 'pv'; count: number; memoryMiB: number; variants: DensityVariant[] };
  /** The boot comparison: one image per type, `runs` of each. */
  boot: { images: { type: 'pvh' | 'pv'; image: string }[]; runs: number; memoryMiB: number };
}

export type DensityVariant = 'xen' | 'lean' | 'pool';

export const DENSITY_VARIANTS: readonly DensityVariant[] = ['xen', 'lean', 'pool'];

export function benchTestNames(suite: BenchSuite | undefined): string[] {
  if (!suite) return [];
  return ['bench-boot', ...suite.density.variants.map((v) => `bench-density-${v}`)];
}

const WRAPPERS = '/run/tinyx-bench';
const XEN_VIF_SCRIPT = '/etc/xen/scripts/vif-bridge';

/**
 * A wrapper around a vif script: runs it, and appends
 * "ACTION VIF NANOSECONDS STATUS" to LOG. The wrapper's own cost (a dash and
 * two `date`) is the same for both scripts.
 */
async function timedScript(name: string, script: string): Promise<{ path: string; log: string }> {
  await mkdir(WRAPPERS, { recursive: true });
  const path = join(WRAPPERS, `timed-${name}`);
  const log = join(WRAPPERS, `hotplug-${name}.log`);
  await writeFile(
    path,
    ['#!/bin/sh', 'start=$(date +%s%N)', `${script} "$@"`, 'status=$?', `echo "$1 $vif $(( $(date +%s%N) - start )) $status" >> ${log}`, 'exit $status', ''].join('\n'),
  );
  await chmod(path, 0o755);
  await rm(log, { force: true });
  return { path, log };
}

async function hotplugTimes(log: string): Promise<{ online: number[]; offline: number[]; failed: number }> {
  const lines = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
  const times = { online: [] as number[], offline: [] as number[], failed: 0 };
  for (const line of lines) {
    const [action, , ns, status] = line.split(' ');
    if (status !== '0') times.failed++;
    if (action === 'online' || action === 'offline') times[action].push(Math.round(Number(ns) / 1e6));
  }
  return times;
}

/**
 * The Nth domain's creation time, N = 1..count, each domain left running
 * (booting, then serving) while the next is created. At the end: how many
 * printed their ready line, Xen's free memory; then all are destroyed
 * (timed, with the offline hotplug) so the next variant starts from an empty Xen.
 */
export async function benchDensity(suite: BenchSuite['density'], variant: DensityVariant, consoleDir: string): Promise<Outcome> {
  const backend = new XenBackend({ consoleDir });
  const pool = new XenPool(backend);
  // The pool's domains are plugged by the lean script: the pool's point is what is left for the request.
  const scriptOf = variant === 'xen' ? XEN_VIF_SCRIPT : await leanVifScript(runtimeDir());
  const timed = await timedScript(variant, scriptOf);
  const shape = { type: suite.type, memoryMiB: suite.memoryMiB, vcpus: 1 };
  const vms: XenVm[] = [];
  const createMs: number[] = [];
  const details: Record<string, unknown> = { variant, type: suite.type, memoryMiB: suite.memoryMiB, count: suite.count, freeMemoryMiBBefore: await freeMemory() };
  const ms: Record<string, number> = {};
  try {
    if (variant === 'pool') {
      const fillStarted = performance.now();
      const filled = await pool.fill(suite.image, suite.count, { ...shape, hotplug: 'lean', vifScript: timed.path });
      ms.fill = since(fillStarted);
      details.fillMs = filled.created.map((entry) => entry.createMs);
      details.poolFillHotplug = await hotplugTimes(timed.log);
      await rm(timed.log, { force: true });
      for (let i = 0; i < suite.count; i++) {
        const got = await pool.instantiate(suite.image, shape);
        if (!got.fromPool) throw new Error(`request ${i + 1} found the pool empty`);
        vms.push(got.vm);
        createMs.push(got.instantiationMs);
      }
    } else {
      for (let i = 0; i < suite.count; i++) {
        const started = performance.now();
        vms.push(await backend.create(suite.image, { ...shape, vifScript: timed.path }));
        createMs.push(since(started));
      }
    }
    details.createMs = createMs;
    details.hotplug = await hotplugTimes(timed.log);
    details.freeMemoryMiBAfter = await freeMemory();
    // Every domain must really run: the ready line in each console (they had the whole series to boot; give them up to 5 min more).
    const waitStarted = performance.now();
    const ready = await waitFor(
      async () => {
        const count = (await Promise.all(vms.map(async (vm) => (await vm.console()).includes('tinyx: ready')))).filter(Boolean).length;
        return count === vms.length ? count : performance.now() - waitStarted > 290_000 ? count : false;
      },
      300_000,
      'the domains did not get ready',
      2000,
    );
    details.readyAtEnd = ready;
    if (ready !== vms.length) throw new Error(`${vms.length - ready} of ${vms.length} domains printed no ready line`);
    // And answer: one HTTP GET to each.
    let answered = 0;
    for (const vm of vms) if ((await httpStatus(`http://${vm.address}/`, 5000).catch(() => 0)) === 200) answered++;
    details.answered = answered;
    if (answered !== vms.length) throw new Error(`${vms.length - answered} of ${vms.length} domains did not answer HTTP 200`);
  } finally {
    const destroyStarted = performance.now();
    await destroyAll(vms);
    await pool.drain().catch(() => undefined);
    ms.destroyAll = since(destroyStarted);
    details.offlineHotplug = (await hotplugTimes(timed.log)).offline;
  }
  return { ms, details };
}

/** Destroys the domains four at a time (xl destroy of one waits on its devices; dom0 has two vCPUs). */
async function destroyAll(vms: XenVm[]): Promise<void> {
  const queue = [...vms];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let vm = queue.shift(); vm; vm = queue.shift()) await vm.destroy().catch(() => undefined);
    }),
  );
}

/**
 * PVH against PV, `runs` times each, alternating: create, the ready line,
 * the first HTTP 200, save, restore, HTTP 200 again, destroy. With Xen's own
 * vif script, as a user gets by default.
 */
export async function benchBoot(suite: BenchSuite['boot'], consoleDir: string): Promise<Outcome> {
  const backend = new XenBackend({ consoleDir });
  const samples: Record<string, Record<string, number[]>> = {};
  for (let run = 0; run < suite.runs; run++) {
    for (const { type, image } of suite.images) {
      const got = (samples[type] ??= {});
      const add = (key: string, value: number): void => void (got[key] ??= []).push(value);
      const requested = performance.now();
      let vm: XenVm | undefined = await backend.create(image, { type, memoryMiB: suite.memoryMiB });
      try {
        add('create', since(requested));
        // From the start of `xl create` (the VM's startedAt).
        const ready = await vm.waitReady(undefined, { timeoutMs: 240_000 });
        add('readyLine', ready.consoleMs ?? ready.ms);
        add('http', ready.ms);
        const state = `/run/bench-${vm.id}.state`;
        let started = performance.now();
        await vm.save(state);
        add('save', since(started));
        vm = undefined;
        started = performance.now();
        vm = await backend.restore(state);
        add('restore', since(started));
        vm.startedAt = started;
        const back = await vm.waitReady(undefined, { timeoutMs: 120_000 });
        add('restoreToHttp', back.ms);
        await rm(state, { force: true });
        await rm(`${state}.json`, { force: true });
        started = performance.now();
        await vm.destroy();
        add('destroy', since(started));
        vm = undefined;
      } finally {
        await vm?.destroy().catch(() => undefined);
      }
    }
  }
  return { details: { runs: suite.runs, memoryMiB: suite.memoryMiB, samples } };
}

async function freeMemory(): Promise<number> {
  const info = (await run('xl', ['info'])).stdout;
  return Number(info.match(/^free_memory\s*:\s*(\d+)/m)?.[1] ?? NaN);
}

function since(started: number): number {
  return Math.round(performance.now() - started);
}
