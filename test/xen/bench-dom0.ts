// The Xen benchmark (issue 5; `npm run bench -- xen`), run in dom0 by
// in-dom0.ts on the real Xen. Each part is one result line:
//
//   bench-boot      pvh vs pv, initramfs vs erofs root: create, ready line and first HTTP 200, save, restore to HTTP 200
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
import { httpStatus, type Outcome } from './backend-tests.js';

export interface BenchSuite {
  /** The image of the density series and its guest type (pv: the lighter guest under nested TCG). */
  density: { image: string; type: 'pvh' | 'pv'; count: number; memoryMiB: number; variants: DensityVariant[] };
  /** The boot comparison: one image per column (its label; the guest type by default), `runs` of each. */
  boot: { images: { type: 'pvh' | 'pv'; image: string; label?: string }[]; runs: number; memoryMiB: number };
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
 * while the next is created. Each is waited for (its ready line and HTTP 200)
 * before the next: dom0 shares the two emulated CPUs with the guests, and a
 * series created back to back measured the guests' boots more than the
 * toolstack (Xen's vif script then timed out at the 24th domain). A create
 * that fails ends the series, and is a result: where, and xl's words. Then
 * all are destroyed (timed, with the offline hotplug).
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
  const readyMs: number[] = [];
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
    }
    for (let n = 1; n <= suite.count; n++) {
      let vm: XenVm;
      try {
        if (variant === 'pool') {
          // Paused would make a new one: a running domain is what a run takes from the pool.
          vm = await backend.create(suite.image, { guest: shape.type, memoryMiB: shape.memoryMiB, vcpus: shape.vcpus, xen: { pool: true } });
          const got = vm.describe();
          if (got.origin !== 'pool') throw new Error(`request ${n} found the pool empty`);
          createMs.push(got.instantiationMs!);
        } else {
          const started = performance.now();
          vm = await backend.create(suite.image, { guest: shape.type, memoryMiB: shape.memoryMiB, vcpus: shape.vcpus, xen: { pool: false, vifScript: timed.path } });
          createMs.push(since(started));
        }
        vms.push(vm);
        readyMs.push((await vm.waitReady(undefined, { timeoutMs: 180_000 })).ms);
      } catch (error) {
        details.failedAt = n;
        details.error = (error as Error).message;
        break;
      }
    }
    details.createMs = createMs;
    details.readyMs = readyMs;
    details.hotplug = await hotplugTimes(timed.log);
    details.freeMemoryMiBAfter = await freeMemory();
    // At the end every domain that got ready still serves: one HTTP GET to each.
    const serving = vms.slice(0, readyMs.length);
    let answered = 0;
    for (const vm of serving) if ((await httpStatus(`http://${vm.address}/`, 5000).catch(() => 0)) === 200) answered++;
    details.running = serving.length;
    details.answered = answered;
    if (answered !== serving.length) throw new Error(`${serving.length - answered} of ${serving.length} domains did not answer HTTP 200 at the end`);
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
 * PVH against PV (and an erofs root against the initramfs, when the suite
 * has an erofs image), `runs` times each, alternating: create, the ready line,
 * the first HTTP 200, save, restore, HTTP 200 again, destroy. With Xen's own
 * vif script, as a user gets by default.
 */
export async function benchBoot(suite: BenchSuite['boot'], consoleDir: string): Promise<Outcome> {
  const backend = new XenBackend({ consoleDir });
  const samples: Record<string, Record<string, number[]>> = {};
  for (let run = 0; run < suite.runs; run++) {
    for (const { type, image, label } of suite.images) {
      const got = (samples[label ?? type] ??= {});
      const add = (key: string, value: number): void => void (got[key] ??= []).push(value);
      const requested = performance.now();
      let vm: XenVm | undefined = await backend.create(image, { guest: type, memoryMiB: suite.memoryMiB, xen: { pool: false } });
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
