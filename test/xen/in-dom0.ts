// The Xen tests, run inside dom0 by the harness (harness.ts) with the host's
// Node.js. Each test's outcome is one framed line on the console,
// `tinyx-xen-result: {json}`, which the harness reads from QEMU's serial
// port. Two suites: `xl` (plain xl, the ground truth) and `backend` (the
// toolstack's xen backend, the pool and the CLI: backend-tests.ts).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { READY_LINE, run } from '@tinyx/image';
import { backendErrors, backendLifecycle, backendTestNames, httpStatus, poolThroughCli, waitFor, type BackendSuite, type BackendTestConfig } from './backend-tests.js';
import { benchBoot, benchDensity, benchTestNames, type BenchSuite } from './bench-dom0.js';
import { FRAME } from './dom0-init.js';

/** What the harness writes to /opt/tinyx-xen/config.json. */
export interface XenTestConfig {
  /** dom0's side of xenbr0 (the guests' gateway) and the prefix length. */
  bridge: { name: string; gateway: string; prefix: number };
  /** Plain-xl guests (the `xl` suite); empty when that suite is not run. */
  guests: GuestSpec[];
  /** A guest that has not printed its ready line by then has failed. */
  readySeconds: number;
  /** The backend suite: one lifecycle per guest type, the pool, the errors; absent when not run. */
  backend?: BackendSuite;
  /** The benchmark (bench-dom0.ts); absent when not run. */
  bench?: BenchSuite;
  /** Run only the tests of these names (and `xen`); all when absent. */
  only?: string[];
}

export interface GuestSpec {
  /** The test's name and the domain's. */
  name: string;
  type: 'pvh' | 'pv';
  /** The image directory inside dom0. */
  image: string;
  address: string;
  memoryMiB: number;
}

export interface TestResult {
  name: string;
  ok: boolean;
  seconds: number;
  /** Named measurements, in milliseconds. */
  ms?: Record<string, number>;
  details?: Record<string, unknown>;
  error?: string;
  consoleTail?: string;
  /** The errors of the attempts before, when the test ran again after guests' triple faults (see main). */
  retriedAfter?: string;
}

const CONSOLE_DIR = '/var/log/xen/console';

interface Manifest {
  name: string;
  artifacts: { rootfs: string; kernel: string | null; vmlinux: string | null };
}

async function main(configFile: string): Promise<number> {
  const config = JSON.parse(await readFile(configFile, 'utf8')) as XenTestConfig;
  const tests: { name: string; run: () => Promise<Omit<TestResult, 'name' | 'ok' | 'seconds'>> }[] = [
    { name: 'xen', run: describeXen },
    ...config.guests.map((guest) => ({ name: guest.name, run: () => bootGuest(config, guest) })),
  ];
  if (config.backend) {
    const b = config.backend;
    const shared: BackendTestConfig = { bridge: config.bridge.name, consoleDir: CONSOLE_DIR, readySeconds: config.readySeconds, cli: b.cli };
    const [errors, ...rest] = backendTestNames(config);
    tests.push({ name: errors!, run: () => backendErrors(shared, b.guests[0]?.image ?? b.pool.image) });
    // PVH's life through the library's calls, PV's through the CLI's verbs (run --detach, pause, unpause, save, restore, stop).
    b.guests.forEach((guest, i) => tests.push({ name: rest[i]!, run: () => backendLifecycle(shared, guest.image, guest.type, guest.hotplug, guest.type === 'pv' ? 'cli' : 'library') }));
    tests.push({ name: rest.at(-1)!, run: () => poolThroughCli(shared, b.pool.image, b.pool.type) });
  }
  if (config.bench) {
    const bench = config.bench;
    const [boot, ...density] = benchTestNames(bench);
    tests.push({ name: boot!, run: () => benchBoot(bench.boot, CONSOLE_DIR) });
    bench.density.variants.forEach((variant, i) => tests.push({ name: density[i]!, run: () => benchDensity(bench.density, variant, CONSOLE_DIR) }));
  }
  let failed = 0;
  for (const test of tests.filter((t) => !config.only || t.name === 'xen' || config.only.includes(t.name))) {
    const started = performance.now();
    let result = await attempt(test);
    // Xen under QEMU's TCG (the only Xen this host has) triple-faulted PVH
    // guests in their first instructions, about one boot in three: always in
    // the kernel's PIT calibration (quick_pit_calibrate's port reads, before
    // its console works; fixture xen-console-triple-fault.txt), an artifact
    // of the emulated SVM, not of tinyx. tinyx's kernels no longer calibrate
    // against the PIT under Xen (kernel patch 0004; no fault in the first
    // full run with it, 2026-12-03). Should a guest still fault so, the test
    // runs again, up to twice, and says so; any other failure stands.
    const faults: string[] = [];
    while (!result.ok && /Triple fault/.test(result.error ?? '') && faults.length < 2) {
      faults.push(result.error!);
      result = { ...(await attempt(test)), retriedAfter: faults.join('\n-- then --\n') };
    }
    result.seconds = round((performance.now() - started) / 1000);
    if (!result.ok) failed++;
    console.log(`${FRAME.result} ${JSON.stringify(result)}`);
  }
  return failed === 0 ? 0 : 1;
}

async function attempt(test: { name: string; run: () => Promise<Omit<TestResult, 'name' | 'ok' | 'seconds'>> }): Promise<TestResult> {
  try {
    return { name: test.name, ok: true, seconds: 0, ...(await test.run()) };
  } catch (error) {
    const failure = error as Error & { consoleTail?: string };
    return { name: test.name, ok: false, seconds: 0, error: failure.message, ...(failure.consoleTail ? { consoleTail: failure.consoleTail } : {}) };
  }
}

/** What Xen this is, and what dom0 sees of it: part of the record, and a check that xl can talk to the hypervisor. */
async function describeXen(): Promise<Omit<TestResult, 'name' | 'ok' | 'seconds'>> {
  const info = (await run('xl', ['info'])).stdout;
  const field = (name: string): string | undefined => info.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1];
  const uptime = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
  return {
    details: {
      xen: `${field('xen_major')}.${field('xen_minor')}${field('xen_extra')}`,
      caps: field('xen_caps'),
      freeMemoryMiB: Number(field('free_memory')),
      dom0Kernel: field('release'),
      dom0UptimeSeconds: uptime,
    },
  };
}

/**
 * One guest's life under plain xl: create, the ready line on its console, the
 * page over xenbr0, pause (no answer), unpause (answers), destroy (gone).
 */
async function bootGuest(config: XenTestConfig, guest: GuestSpec): Promise<Omit<TestResult, 'name' | 'ok' | 'seconds'>> {
  const manifest = JSON.parse(await readFile(join(guest.image, 'manifest.json'), 'utf8')) as Manifest;
  // Both boot the uncompressed ELF: PVH through its entry note, PV through its Xen notes (no decompressor in libxc's loader).
  const kernelName = manifest.artifacts.vmlinux ?? manifest.artifacts.kernel;
  if (!kernelName) throw new Error(`${guest.image} has no kernel`);
  const cfgFile = `/run/${guest.name}.cfg`;
  const cfg = [
    `name = "${guest.name}"`,
    `type = "${guest.type}"`,
    `kernel = "${join(guest.image, kernelName)}"`,
    `ramdisk = "${join(guest.image, manifest.artifacts.rootfs)}"`,
    `extra = "console=hvc0 tinyx.ip=${guest.address}/${config.bridge.prefix} tinyx.gw=${config.bridge.gateway}"`,
    `memory = ${guest.memoryMiB}`,
    'vcpus = 1',
    `vif = [ "bridge=${config.bridge.name}" ]`,
    // /init ends the VM with a reset when the app exits: that must end the domain, not restart it.
    'on_reboot = "destroy"',
    'on_crash = "destroy"',
    // As the backend's domains get it (payload.ts, XL_EXTRA_EXPORT).
    ...(process.env.TINYX_XEN_XL_EXTRA ?? '').split('\n').filter(Boolean),
  ].join('\n');
  await writeFile(cfgFile, `${cfg}\n`);
  const consoleLog = join(CONSOLE_DIR, `guest-${guest.name}.log`);
  const ms: Record<string, number> = {};
  const started = performance.now();
  try {
    await run('xl', ['create', cfgFile]);
    ms.xlCreate = Math.round(performance.now() - started);
    await waitFor(async () => {
      const text = await readFile(consoleLog, 'utf8').catch(() => '');
      if (text.includes(READY_LINE)) return true;
      const listed = await run('xl', ['domid', guest.name], { allowFailure: true });
      if (listed.exitCode !== 0) throw new Error(`${guest.name} ended before its ready line`);
      return false;
    }, config.readySeconds * 1000, `${guest.name} printed no "${READY_LINE}" within ${config.readySeconds} s`, 50);
    ms.ready = Math.round(performance.now() - started);
    const url = `http://${guest.address}/`;
    const first = await waitFor(() => httpStatus(url, 2000).catch(() => undefined), 20_000, `${url} did not answer`, 50);
    if (first !== 200) throw new Error(`${url} answered ${first}, not 200`);
    ms.http = Math.round(performance.now() - started);

    await run('xl', ['pause', guest.name]);
    const whilePaused = await httpStatus(url, 3000).then(
      (status) => `answered ${status}`,
      () => 'no answer',
    );
    if (whilePaused !== 'no answer') throw new Error(`${url} ${whilePaused} while the domain was paused`);
    const unpaused = performance.now();
    await run('xl', ['unpause', guest.name]);
    const after = await waitFor(() => httpStatus(url, 2000).catch(() => undefined), 20_000, `${url} did not answer after unpause`, 50);
    if (after !== 200) throw new Error(`${url} answered ${after} after unpause`);
    ms.unpauseToHttp = Math.round(performance.now() - unpaused);

    const destroying = performance.now();
    await run('xl', ['destroy', guest.name]);
    ms.destroy = Math.round(performance.now() - destroying);
    const left = await run('xl', ['domid', guest.name], { allowFailure: true });
    if (left.exitCode === 0) throw new Error(`${guest.name} is still listed after xl destroy`);
    const links = (await run('ip', ['-o', 'link', 'show', 'master', config.bridge.name])).stdout.trim();
    return { ms, details: { kernel: kernelName, bridgePortsAfterDestroy: links ? links.split('\n').length : 0 } };
  } catch (error) {
    const text = await readFile(consoleLog, 'utf8').catch(() => '(no console log)');
    await run('xl', ['destroy', guest.name], { allowFailure: true });
    throw Object.assign(error as Error, { consoleTail: text.split('\n').slice(-25).join('\n') });
  }
}


function round(value: number): number {
  return Math.round(value * 100) / 100;
}

const configFile = process.argv[2];
if (!configFile) {
  console.error('usage: in-dom0.js CONFIG.json');
  process.exitCode = 2;
} else {
  process.exitCode = await main(configFile).catch((error: unknown) => {
    console.log(`${FRAME.result} ${JSON.stringify({ name: 'in-dom0', ok: false, seconds: 0, error: String((error as Error).stack ?? error) })}`);
    return 1;
  });
}
