// The xen backend's tests (packages/toolstack/src/xen.ts, pool.ts and the
// CLI on top), run in dom0 by in-dom0.ts on the real Xen.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { run } from '@tinyx/builder/internals';
import { TinyxError, XenBackend, XenPool, runtimeDir, type Hotplug, type XenVm } from '@tinyx/toolstack';

/** What a test returns into its result line. */
export interface Outcome {
  ms?: Record<string, number>;
  details?: Record<string, unknown>;
}

export interface BackendTestConfig {
  /** dom0's bridge the guests' vifs are plugged into. */
  bridge: string;
  consoleDir: string;
  readySeconds: number;
  /** The CLI's entry point inside dom0 (packages/cli/bin/tinyx.js). */
  cli: string;
}

/** The backend suite's part of the harness's config.json. */
export interface BackendSuite {
  /**
   * One lifecycle each; `hotplug` picks the vif and block scripts (both are
   * tested: pvh with Xen's, pv with tinyx's lean ones). `label` names the
   * test (backend-LABEL; the type by default).
   */
  guests: { type: 'pvh' | 'pv'; image: string; hotplug: Hotplug; label?: string }[];
  pool: { type: 'pvh' | 'pv'; image: string };
  cli: string;
}

/** The names of the backend suite's results, in order (the harness checks each came back). */
export function backendTestNames(config: { backend?: BackendSuite | undefined }): string[] {
  if (!config.backend) return [];
  return ['backend-errors', ...config.backend.guests.map((g) => `backend-${g.label ?? g.type}`), `pool-${config.backend.pool.type}`];
}

/**
 * One VM's life under the backend: create, ready, HTTP 200 from dom0 at its
 * leased address, pause (no answer), unpause (200), save (the domain is gone),
 * restore (200 at the same address), destroy (no domain, vif, lease or files).
 * `via: 'cli'` does each step as a user types it in dom0 (`tinyx run --backend
 * xen --detach`, `pause`, `unpause`, `save`, `restore --detach`, `stop`),
 * `via: 'library'` with the backend's calls; the checks are the same.
 */
export async function backendLifecycle(config: BackendTestConfig, image: string, type: 'pvh' | 'pv', hotplug: Hotplug, via: 'library' | 'cli' = 'library'): Promise<Outcome> {
  const backend = new XenBackend({ consoleDir: config.consoleDir });
  const ms: Record<string, number> = {};
  const details: Record<string, unknown> = { type, image, hotplug, via };
  const cli = async (args: string[], id: string | undefined): Promise<Record<string, unknown>> => {
    const result = await tinyx(config, args);
    if (result.ok !== true || (id !== undefined && result.id !== id)) throw new Error(`tinyx ${args.join(' ')}: ${JSON.stringify(result)}`);
    return result;
  };
  let vm: XenVm | undefined;
  try {
    let started = performance.now();
    if (via === 'cli') {
      const ran = await cli(['run', '--backend', 'xen', image, '--type', type, '--hotplug', hotplug, '--memory', '128', '--detach'], undefined);
      vm = await backend.get(String(ran.id));
      vm.startedAt = started;
      if (ran.address !== vm.address || ran.origin !== 'created') throw new Error(`tinyx run --detach: ${JSON.stringify(ran)}`);
    } else vm = await backend.create(image, { guest: type, memoryMiB: 128, xen: { hotplug, pool: false } });
    ms.create = since(started);
    details.id = vm.id;
    details.address = vm.address;
    details.mac = vm.record.network.mac;
    const xlConfig = await readFile(vm.record.config, 'utf8');
    const vif = xlConfig.match(/^vif = .*$/m)?.[0];
    details.vif = vif;
    if (hotplug === 'lean' ? !vif?.includes(',script=/') : vif?.includes('script=')) throw new Error(`hotplug ${hotplug}, but the xl.cfg has ${vif}`);
    if (vm.image.rootAs === 'disk') {
      // An erofs root: a read-only disk, attached by Xen's block script or tinyx's lean one, each on a loop device of its own.
      const disk = xlConfig.match(/^disk = .*$/m)?.[0];
      details.disk = disk;
      if (!disk?.includes('access=ro') || (hotplug === 'lean' ? !disk.includes('script=/') : disk.includes('script='))) throw new Error(`hotplug ${hotplug}, but the xl.cfg has ${disk}`);
      details.loopDevices = await loopDevicesOf(vm.image.rootfs);
      if ((details.loopDevices as string[]).length !== 1) throw new Error(`the running domain's root ${vm.image.rootfs} is on ${JSON.stringify(details.loopDevices)}, not on one loop device`);
    }
    const ready = await vm.waitReady(undefined, { timeoutMs: config.readySeconds * 1000 });
    ms.ready = ready.ms;
    if (ready.consoleMs !== undefined) ms.consoleReady = ready.consoleMs;
    const url = `http://${vm.address}/`;
    await expectStatus(url, 200, 'after create');
    await expectState(vm, 'running');
    await expectPs(config, vm, 'running');

    if (via === 'cli') await cli(['pause', vm.id], vm.id);
    else await vm.pause();
    await expectState(vm, 'paused');
    await expectPs(config, vm, 'paused');
    await expectNoAnswer(url, 'while paused');
    started = performance.now();
    if (via === 'cli') await cli(['unpause', vm.id], vm.id);
    else await vm.unpause();
    await waitForStatus(url, 200, 20_000, 'after unpause');
    ms.unpauseToHttp = since(started);

    const stateFile = `/run/${vm.id}.state`;
    const address = vm.address;
    const id = vm.id;
    started = performance.now();
    if (via === 'cli') {
      const saved = await cli(['save', id, stateFile], id);
      if (saved.stopped !== true) throw new Error(`tinyx save: ${JSON.stringify(saved)}`);
    } else await vm.save(stateFile);
    ms.save = since(started);
    await expectGone(backend, config, id, address, 'after save');
    if (via === 'cli' && (await listedIds(config)).includes(id)) throw new Error(`tinyx ps lists ${id} after save`);
    vm = undefined;

    started = performance.now();
    if (via === 'cli') {
      await cli(['restore', stateFile, '--detach'], id);
      vm = await backend.get(id);
      vm.startedAt = started;
    } else vm = await backend.restore(stateFile);
    ms.restore = since(started);
    if (vm.address !== address) throw new Error(`restored at ${vm.address}, saved at ${address}`);
    await vm.waitReady(undefined, { timeoutMs: config.readySeconds * 1000 });
    await expectStatus(url, 200, 'after restore');
    ms.restoreToHttp = since(started);
    await rm(stateFile, { force: true });
    await rm(`${stateFile}.json`, { force: true });

    started = performance.now();
    if (via === 'cli') await cli(['stop', id], id);
    else await vm.destroy();
    ms.destroy = since(started);
    vm = undefined;
    details.left = await expectGone(backend, config, id, address, 'after destroy');
    if (via === 'cli' && (await listedIds(config)).includes(id)) throw new Error(`tinyx ps lists ${id} after stop`);
    if (via === 'cli') {
      // The boot profiler on a Xen domain: xl create's start to the probe, from the domain's console (hvc0).
      const profiled = await cli(['run', '--backend', 'xen', image, '--type', type, '--hotplug', hotplug, '--profile', '--timeout', String(config.readySeconds)], undefined);
      const profile = profiled.profile as { readyMs: number; phases: { id: string; startMs: number; ms: number }[]; initcalls: unknown[]; unnamed: number; top: unknown[] };
      const ids = profile.phases.map((p) => p.id).join(' ');
      let end = 0;
      for (const p of profile.phases) end = Math.abs(p.startMs - end) < 0.02 ? p.startMs + p.ms : NaN;
      if (ids !== 'vmm kernel-setup initcalls root kernel-finish init app probe' || Math.abs(end - profile.readyMs) > 0.05 || profile.initcalls.length < 50 || profile.unnamed !== 0 || profile.top.length !== 10) {
        throw new Error(`tinyx run --profile on xen-${type}: phases ${ids} ending at ${end} of ${profile.readyMs} ms, ${profile.initcalls.length} initcalls (${profile.unnamed} unnamed), ${profile.top.length} steps`);
      }
      details.profile = Object.fromEntries(profile.phases.map((p) => [p.id, p.ms]));
      details.left = await expectGone(backend, config, String(profiled.id), undefined, 'after the profiled boot');
    }
    return { ms, details };
  } catch (error) {
    throw await withConsole(error, vm);
  } finally {
    await vm?.destroy().catch(() => undefined);
  }
}

/**
 * The split toolstack through the CLI: `tinyx pool fill --size 3`, `tinyx run
 * --backend xen --check` takes one from the pool (instantiation time), the
 * pool refills itself to 3 in the background, `pool ls`, `pool drain`; then
 * nothing is left. Then Ctrl-C in the middle of a `pool fill`.
 */
export async function poolThroughCli(config: BackendTestConfig, image: string, type: 'pvh' | 'pv'): Promise<Outcome> {
  const backend = new XenBackend({ consoleDir: config.consoleDir });
  const pool = new XenPool(backend);
  const ms: Record<string, number> = {};
  const details: Record<string, unknown> = { type, image };
  try {
    let started = performance.now();
    const filled = await tinyx(config, ['pool', 'fill', image, '--size', '3', '--type', type]);
    ms.fill3 = since(started);
    details.createMs = (filled.created as { createMs: number }[]).map((e) => e.createMs);
    const waiting = await pool.entries({ imageDir: image });
    if (waiting.length !== 3) throw new Error(`the pool holds ${waiting.length} domains after fill --size 3`);
    for (const entry of waiting) await expectState(await backend.get(entry.id), 'paused');
    // A real sample of xl's output for the parsers' unit tests (test/fixtures/xen).
    details.xlListLong = (await run('xl', ['list', '-l'])).stdout;
    details.xlList = (await run('xl', ['list'])).stdout;

    started = performance.now();
    const ran = await tinyx(config, ['run', '--backend', 'xen', image, '--type', type, '--check', '--timeout', String(config.readySeconds)]);
    ms.runCheck = since(started);
    if (ran.origin !== 'pool') throw new Error(`tinyx run did not take a domain from the pool: ${JSON.stringify(ran)}`);
    ms.instantiation = ran.instantiationMs as number;
    ms.ready = ran.readyMs as number;
    details.ranId = ran.id;

    // The run's background `pool fill` brings the pool back to 3.
    started = performance.now();
    await waitFor(async () => (await pool.entries({ imageDir: image })).length >= 3, 120_000, 'the pool did not refill to 3');
    ms.refill = since(started);
    const listed = await tinyx(config, ['pool', 'ls']);
    const rows = listed.pool as { id: string; state: string }[];
    details.poolLs = rows.map((e) => `${e.id} ${e.state}`);
    // `pool ls` lists exactly the waiting domains, each paused, and not the one the run took.
    const waitingIds = (await pool.entries({ imageDir: image })).map((e) => e.id).sort();
    if (JSON.stringify(rows.map((e) => e.id).sort()) !== JSON.stringify(waitingIds) || rows.some((e) => e.state !== 'paused') || rows.some((e) => e.id === ran.id)) {
      throw new Error(`tinyx pool ls: ${JSON.stringify(rows)}; the pool holds ${waitingIds.join(', ')} (paused), the run took ${String(ran.id)}`);
    }

    started = performance.now();
    const drained = await tinyx(config, ['pool', 'drain', image]);
    ms.drain = since(started);
    details.drained = (drained.destroyed as string[]).length;
    if ((await pool.entries()).length !== 0) throw new Error('pool entries are left after drain');
    details.left = await expectGone(backend, config, undefined, undefined, 'after drain');

    // Ctrl-C in the middle of `pool fill`: exit 130; the domains made before it wait in the pool, each
    // with its entry; the one being made is not left half-made (no domain, lease or directory without an entry).
    const filling = spawn(process.execPath, [config.cli, 'pool', 'fill', image, '--size', '3', '--type', type, '--json'], { env: { ...process.env, TINYX_XEN_CONSOLE_DIR: config.consoleDir }, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => filling.once('exit', (code) => resolve(code)));
    await waitFor(async () => (await pool.entries({ imageDir: image })).length >= 1, 120_000, 'pool fill made no entry');
    filling.kill('SIGINT');
    const code = await exited;
    if (code !== 130) throw new Error(`pool fill interrupted: exit ${code}, not 130`);
    const kept = (await pool.entries({ imageDir: image })).map((e) => e.id).sort();
    const domains = (await backend.domains()).filter((d) => d.domid !== 0).map((d) => d.name).sort();
    const dirs = (await readdir(runtimeDir())).filter((n) => !n.startsWith('.')).sort();
    if (kept.length === 0 || JSON.stringify(domains) !== JSON.stringify(kept) || JSON.stringify(dirs) !== JSON.stringify(kept)) {
      throw new Error(`after Ctrl-C in pool fill: entries ${kept.join(', ')}; domains ${domains.join(', ')}; runtime directories ${dirs.join(', ')}`);
    }
    for (const id of kept) await expectState(await backend.get(id), 'paused');
    details.interruptedFill = { exit: code, kept: kept.length };
    await tinyx(config, ['pool', 'drain', image]);
    await expectGone(backend, config, undefined, undefined, 'after the interrupted fill was drained');
    return { ms, details };
  } catch (error) {
    await tinyx(config, ['pool', 'drain']).catch(() => undefined);
    throw error;
  }
}

/** A configuration xl rejects and a missing kernel are named errors, and leave nothing behind. */
export async function backendErrors(config: BackendTestConfig, image: string): Promise<Outcome> {
  const backend = new XenBackend({ consoleDir: config.consoleDir });
  const details: Record<string, unknown> = {};

  const bad = await backend.create(image, { xen: { extraLines: ['vif = [ "bridge=xenbr0"'], pool: false } }).then(
    (vm) => vm.destroy().then(() => undefined),
    (error: unknown) => error,
  );
  if (!(bad instanceof TinyxError) || bad.code !== 'E_XL_CONFIG') throw new Error(`a bad xl.cfg line gave ${describe(bad)}, not E_XL_CONFIG`);
  if (!/config parsing error|syntax error/i.test(bad.message)) throw new Error(`E_XL_CONFIG without xl's own message: ${bad.message}`);
  details.badConfig = bad.message;

  // The image without its kernel: a copy that has everything else.
  const broken = '/run/tinyx-test-no-kernel';
  await mkdir(broken, { recursive: true });
  for (const name of await readdir(image)) if (name !== 'vmlinux') await copyFile(join(image, name), join(broken, name));
  try {
    const missing = await backend.create(broken).then(
      (vm) => vm.destroy().then(() => undefined),
      (error: unknown) => error,
    );
    if (!(missing instanceof TinyxError) || !missing.message.includes(join(broken, 'vmlinux'))) throw new Error(`a missing kernel gave ${describe(missing)}, without the kernel's path`);
    details.missingKernel = `${missing.code}: ${missing.message}`;
    const cli = await tinyx(config, ['run', '--backend', 'xen', broken, '--check'], { expectFailure: true });
    details.cliMissingKernel = cli.error;
  } finally {
    await rm(broken, { recursive: true, force: true });
  }
  details.left = await expectGone(backend, config, undefined, undefined, 'after the failures');
  return { details };
}

/** Nothing of a VM (or of any VM, without an id) is left: no domain but dom0, no vif on the bridge, no lease, no runtime directory. */
async function expectGone(backend: XenBackend, config: BackendTestConfig, id: string | undefined, address: string | undefined, when: string): Promise<Record<string, number>> {
  const domains = (await backend.domains()).filter((d) => d.domid !== 0 && (id === undefined || d.name === id));
  if (domains.length > 0) throw new Error(`${when}: domains left: ${domains.map((d) => d.name).join(', ')}`);
  const ports = (await run('ip', ['-o', 'link', 'show', 'master', config.bridge])).stdout.split('\n').filter((l) => /\bvif\d+\.\d+/.test(l));
  if (ports.length > 0) throw new Error(`${when}: vifs left on ${config.bridge}: ${ports.join('; ')}`);
  const leases = (await readdir(join(runtimeDir(), '.leases')).catch(() => [] as string[])).filter((a) => address === undefined || a === address);
  if (leases.length > 0) throw new Error(`${when}: leases left: ${leases.join(', ')}`);
  const dirs = (await readdir(runtimeDir()).catch(() => [] as string[])).filter((n) => !n.startsWith('.') && (id === undefined || n === id));
  if (dirs.length > 0) throw new Error(`${when}: runtime directories left: ${dirs.join(', ')}`);
  // The block scripts detach the loop device of an erofs root when its domain goes.
  const loops = await loopDevicesOf();
  if (loops.length > 0) throw new Error(`${when}: loop devices left: ${loops.join('; ')}`);
  return { domains: domains.length, vifs: ports.length, leases: leases.length, runtimeDirs: dirs.length, loopDevices: loops.length };
}

/** dom0's loop devices (`losetup --list`), those over `file` when given: "NAME BACK-FILE" each. */
async function loopDevicesOf(file?: string): Promise<string[]> {
  const listed = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], { allowFailure: true });
  return listed.stdout
    .split('\n')
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .filter((line) => line && (file === undefined || line.endsWith(` ${file}`)));
}

/** The CLI in dom0 with --json: its one result, or its error when it was expected to fail. */
async function tinyx(config: BackendTestConfig, args: string[], options: { expectFailure?: boolean } = {}): Promise<Record<string, unknown>> {
  const result = await run(process.execPath, [config.cli, ...args, '--json'], { allowFailure: true, env: { TINYX_XEN_CONSOLE_DIR: config.consoleDir } });
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(result.stdout) as Record<string, unknown>;
  } catch {
    throw new Error(`tinyx ${args.join(' ')}: exit ${result.exitCode}, not JSON: ${result.stdout.slice(-500)} ${result.stderr.slice(-500)}`);
  }
  if (options.expectFailure) {
    if (result.exitCode === 0) throw new Error(`tinyx ${args.join(' ')} succeeded where it should have failed`);
    return parsed;
  }
  if (result.exitCode !== 0) throw new Error(`tinyx ${args.join(' ')}: exit ${result.exitCode}: ${JSON.stringify(parsed.error ?? parsed)}`);
  return parsed;
}

async function listedIds(config: BackendTestConfig): Promise<string[]> {
  return ((await tinyx(config, ['ps'])).vms as { id: string }[]).map((r) => r.id);
}

/** `tinyx ps --json`, run as a user would in dom0, lists the VM with its backend, type, address and state. */
async function expectPs(config: BackendTestConfig, vm: XenVm, state: string): Promise<void> {
  const listed = await tinyx(config, ['ps']);
  const row = (listed.vms as { id: string; backend: string; state: string; address: string | null; accel: string }[]).find((r) => r.id === vm.id);
  const wanted = { id: vm.id, backend: 'xen', state, address: vm.address, accel: `xen-${vm.record.type}` };
  if (!row || JSON.stringify({ id: row.id, backend: row.backend, state: row.state, address: row.address, accel: row.accel }) !== JSON.stringify(wanted)) {
    throw new Error(`tinyx ps: ${JSON.stringify(row ?? listed.vms)}, wanted ${JSON.stringify(wanted)}`);
  }
}

async function expectState(vm: XenVm, wanted: string): Promise<void> {
  const state = await vm.state();
  if (state !== wanted) throw new Error(`${vm.id} is ${state}, not ${wanted}`);
}

async function expectStatus(url: string, wanted: number, when: string): Promise<void> {
  const status = await httpStatus(url, 5000).catch((error: Error) => error.message);
  if (status !== wanted) throw new Error(`${url} ${when}: ${status}, not ${wanted}`);
}

async function waitForStatus(url: string, wanted: number, timeoutMs: number, when: string): Promise<void> {
  await waitFor(async () => (await httpStatus(url, 2000).catch(() => undefined)) === wanted, timeoutMs, `${url} did not answer ${wanted} ${when}`);
}

async function expectNoAnswer(url: string, when: string): Promise<void> {
  const answer = await httpStatus(url, 3000).then(
    (status) => `answered ${status}`,
    () => undefined,
  );
  if (answer) throw new Error(`${url} ${answer} ${when}`);
}

/** Polls `check` every `intervalMs` until it gives a value (not false or undefined), or fails after `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | false | undefined>, timeoutMs: number, message: string, intervalMs = 200): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== false && value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** One HTTP GET from dom0: the status code; rejects when nothing answers in time. */
export function httpStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function withConsole(error: unknown, vm: XenVm | undefined): Promise<Error> {
  const failure = error instanceof Error ? error : new Error(String(error));
  const text = vm ? await vm.console() : '';
  return Object.assign(failure, text ? { consoleTail: text.split('\n').slice(-25).join('\n') } : {});
}

function describe(value: unknown): string {
  if (value === undefined) return 'success';
  if (value instanceof TinyxError) return `${value.code}: ${value.message}`;
  return value instanceof Error ? value.message : String(value);
}

function since(started: number): number {
  return Math.round(performance.now() - started);
}
