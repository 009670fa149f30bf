import { constants } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_MEMORY_MIB, TinyxError, guestsOf } from '@tinyx/image';
import { BACKEND_NAMES, HOTPLUGS, getBackend, restoreVm, type BackendName, type CreateOptions, type Vm } from '@tinyx/toolstack';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError, type Output } from '../output.js';
import { followFile } from '../follow.js';

interface BootArgs extends GlobalArgs {
  hotplug?: 'xen' | 'lean';
  refill?: boolean;
  network?: 'user' | 'bridge';
  publish: string[];
  accel?: 'auto' | 'kvm' | 'tcg';
  check?: boolean;
  detach?: boolean;
  timeout: number;
}

interface RunArgs extends BootArgs {
  image: string;
  backend: BackendName;
  guest?: string;
  memory: number;
  tcgCache?: number;
}

interface RestoreArgs extends BootArgs {
  file: string;
}

/**
 * The options only one backend reads, by the backend: given with another
 * backend they are refused rather than ignored.
 */
const BACKEND_OPTIONS: Record<string, BackendName> = { hotplug: 'xen', refill: 'xen', network: 'qemu', accel: 'qemu', 'tcg-cache': 'qemu' };

/** What `run` and `restore` share: the backends' settings, and what to do once the VM runs. */
function bootOptions<T>(yargs: Argv<T>): Argv<T & BootArgs> {
  return globalOptions(yargs as Argv<object>)
    .option('hotplug', {
      choices: HOTPLUGS,
      describe: "xen: the scripts that plug the domain's vif into the bridge and its erofs root disk into blkback: xen is Xen's own vif-bridge and block (the default, or TINYX_XEN_HOTPLUG), lean is tinyx's (a few commands each, no iptables rules, no lock)",
    })
    .option('refill', { type: 'boolean', describe: 'xen: after taking a domain from the pool, refill the pool in the background to the size of the last pool fill (default: yes; --no-refill)' })
    .option('network', {
      choices: ['user', 'bridge'] as const,
      describe: "qemu: user (the default) is QEMU's user-mode network, reached through port forwards on 127.0.0.1; bridge (root): a tap on the tinyx0 bridge and an address of the VM's own",
    })
    .option('publish', { type: 'string', array: true, default: [] as string[], describe: 'qemu, user network: forward a host port to a guest port: HOST:GUEST (repeatable)' })
    .option('accel', { choices: ['auto', 'kvm', 'tcg'] as const, describe: 'qemu: auto (the default) is KVM when the host can run a Linux guest with it, else TCG' })
    .option('check', { type: 'boolean', describe: "wait for the image's readiness probe, print the time to ready, stop the VM" })
    .option('detach', { type: 'boolean', describe: 'leave the VM running and return its id (see tinyx ps, logs, pause, save, stop)' })
    .option('timeout', { type: 'number', default: 60, describe: 'seconds --check waits for the probe' })
    .group(['network', 'publish', 'accel'], 'QEMU (--backend qemu):')
    .group(['hotplug', 'refill'], 'Xen (--backend xen):')
    .check((args) => {
      if (args.check && args.detach) throw new Error('--check stops the VM when it is ready; --detach leaves it running: give one');
      for (const p of args.publish) if (!/^\d{1,5}:\d{1,5}$/.test(p)) throw new Error(`--publish ${p}: give HOST:GUEST, for example 8080:80`);
      if (args.network === 'bridge' && args.publish.length) throw new Error('--publish goes with --network user; a bridged VM is reached at its own address');
      const backend = (args as { backend?: string }).backend;
      for (const [option, owner] of Object.entries(BACKEND_OPTIONS)) {
        if (backend !== undefined && args[option] !== undefined && owner !== backend) throw new Error(`--${option} is for --backend ${owner}`);
      }
      return true;
    }) as unknown as Argv<T & BootArgs>;
}

/** The create options of a run or restore: the common ones, and each backend's own group. */
function createOptions(args: BootArgs & Partial<Pick<RunArgs, 'memory' | 'guest' | 'tcgCache'>>, signal: AbortSignal): CreateOptions {
  return {
    signal,
    ...(args.memory !== undefined ? { memoryMiB: args.memory } : {}),
    ...(args.guest !== undefined ? { guest: args.guest } : {}),
    publish: args.publish.map((p) => {
      const [host, guest] = p.split(':').map(Number);
      return { host: host!, guest: guest! };
    }),
    qemu: {
      detach: !!args.detach,
      ...(args.network ? { network: args.network } : {}),
      ...(args.accel ? { accel: args.accel } : {}),
      ...(args.tcgCache ? { tcgCacheMiB: args.tcgCache } : {}),
    },
    xen: { refill: args.refill ?? true, ...(args.hotplug ? { hotplug: args.hotplug } : {}) },
  };
}

export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run <image>',
  describe: 'Boot an image directory under QEMU (KVM where the host can, TCG otherwise) or as a Xen domain',
  builder: (yargs) =>
    bootOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory (out/<name>)' })
      .option('backend', {
        choices: BACKEND_NAMES,
        default: 'qemu' as BackendName,
        describe: 'qemu: QEMU/KVM (kvm images); xen: a Xen domain through xl, run in dom0 (xen-pvh and xen-pv images), taken from the pool (tinyx pool) when one waits',
      })
      .option('guest', {
        alias: ['machine', 'type'],
        choices: BACKEND_NAMES.flatMap(guestsOf),
        describe: "how the backend boots the image (default: its platform's first): qemu --machine microvm (vmlinux through PVH, fastest) or q35 (the bzImage); xen --type pvh or pv (a xen-pvh kernel boots as pv too)",
      })
      .option('memory', { type: 'number', default: DEFAULT_MEMORY_MIB, describe: 'guest memory in MiB' })
      .option('tcg-cache', { type: 'number', describe: "qemu, TCG only: bound the translation cache (MiB), most of a TCG VM's host memory after its own RAM (QEMU's default: up to 1 GiB)" })
      .group(['tcg-cache'], 'QEMU (--backend qemu):')
      .example('$0 run out/nginx --check', 'boot, wait until nginx answers HTTP, print the boot time, stop')
      .example('$0 run out/nginx --publish 8080:80', 'boot and serve on localhost:8080 until Ctrl-C; the console goes to stdout')
      .example('$0 run out/redis --check --json', 'the same, as JSON (accelerator, times, console file)')
      .example('$0 run out/nginx --detach --publish 8080:80', 'in the background; then tinyx ps, tinyx logs ID, tinyx stop ID')
      .example('sudo $0 run out/nginx --network bridge --detach', 'with an address of its own on the tinyx0 bridge (10.213.0.0/16); tinyx ps shows it')
      .example('$0 run out/nginx-pvh --backend xen --check --timeout 180', 'in dom0: a Xen domain (from the pool when tinyx pool fill made some), probed, destroyed')
      .epilog(
        'Networking: with --network user (the default) the guest is 10.0.2.15 behind QEMU, reached through --publish forwards on 127.0.0.1 (the readiness probe gets one of its own). With --network bridge each VM has its own address on tinyx0. A Xen domain (--backend xen) always has its own address on xenbr0 (10.213.0.0/16).',
      ) as unknown as Argv<RunArgs>,
  handler: (args) => boot(args, (signal) => getBackend(args.backend).create(args.image, createOptions(args, signal))),
};

export const restoreCommand: CommandModule<object, RestoreArgs> = {
  command: 'restore <file>',
  describe: 'Start a VM again from a state written by tinyx save',
  builder: (yargs) =>
    bootOptions(yargs as Argv<object>)
      .positional('file', { type: 'string', demandOption: true, describe: 'a state file written by tinyx save' })
      .example('$0 restore nginx.state --detach', 'the VM runs on from where it was saved')
      .example('$0 restore nginx.state --check', 'restore, probe the app, print the time, stop')
      .epilog('The backend, image directory, memory and machine are those of the saved VM (kept in FILE.json). A bridged VM or a Xen domain comes back with its address.') as unknown as Argv<RestoreArgs>,
  handler: (args) => boot(args, (signal) => restoreVm(args.file, createOptions(args, signal))),
};

/** Says where the VM is and how to reach it. */
function introduce(vm: Vm, out: Output): void {
  const d = vm.describe();
  const how = [`${d.backend} ${d.guest}`, ...(d.accel ? [`${d.accel.accel} (${d.accel.reason})`] : []), `${d.memoryMiB} MiB`];
  out.note(`${d.id}: ${how.join(', ')}; console: ${d.console}`);
  if (d.address) out.note(`  address ${d.address}${d.bridge ? ` on ${d.bridge}` : ''}`);
  for (const f of d.forwards) out.note(`  127.0.0.1:${f.host} -> guest:${f.guest}`);
  if (d.instantiationMs !== null) out.note(`${d.id}: running ${d.instantiationMs} ms after the request (${ORIGINS[d.origin]})`);
}

/**
 * An error that points at the VM's console file, which the VM's destruction
 * is about to remove: the console is copied to a new file in the temporary
 * directory first and the error points there instead.
 */
async function keepConsole(vm: Vm, error: unknown): Promise<unknown> {
  if (!(error instanceof TinyxError) || !error.hint?.includes(vm.consoleFile)) return error;
  const kept = join(tmpdir(), `tinyx-${vm.id}.console.log`);
  // COPYFILE_EXCL: never over a file that is not this one's.
  const copied = await copyFile(vm.consoleFile, kept, constants.COPYFILE_EXCL).then(() => true, () => false);
  if (!copied) return error;
  return new TinyxError(error.code, error.message, { hint: error.hint.replace(vm.consoleFile, kept), kind: error.kind, cause: error.cause });
}

const ORIGINS = { created: 'created', pool: 'from the pool: unpaused', restored: 'restored' } as const;

/**
 * The one boot flow of every backend: start the VM, then --detach returns its
 * id, --check probes and stops it, otherwise the console follows until the VM
 * ends or Ctrl-C (which stops it).
 */
async function boot(args: BootArgs, start: (signal: AbortSignal) => Promise<Vm>): Promise<void> {
  const out = makeOutput(args);
  const interrupt = interruptSignal();
  let vm: Vm | undefined;
  try {
    vm = await start(interrupt.signal);
    introduce(vm, out);
    const described = vm.describe();
    if (args.detach) {
      if (out.json) out.result({ ok: true, ...described });
      else out.line(vm.id);
      vm.release();
      vm = undefined; // left running on purpose
      process.exitCode = 0;
      return;
    }
    if (args.check) {
      const ready = await vm.waitReady(undefined, { timeoutMs: args.timeout * 1000, signal: interrupt.signal });
      if (out.json) out.result({ ok: true, ...described, readyMs: ready.ms, consoleReadyMs: ready.consoleMs ?? null, probe: vm.image.readiness });
      else out.line(`${vm.image.name}: ready ${ready.ms} ms after ${described.origin === 'pool' ? 'the request' : 'the VM was started'}${vm.restored ? ' (restored)' : ` (console ready line at ${ready.consoleMs ?? '?'} ms)`}`);
      process.exitCode = 0;
      return;
    }
    // In the foreground: the console to stdout until the guest stops or Ctrl-C.
    const follow = followFile(vm.consoleFile, (chunk) => process.stdout.write(chunk), interrupt.signal);
    const status = await Promise.race([vm.exited, new Promise<'interrupted'>((resolve) => interrupt.signal.addEventListener('abort', () => resolve('interrupted')))]);
    await follow.stop();
    if (status === 'interrupted') process.exitCode = 130;
    else {
      out.note(`${vm.id}: the VM ended${status === null ? '' : ` (exit status ${status})`}`);
      process.exitCode = status === 0 || status === null ? 0 : 1;
    }
  } catch (error) {
    process.exitCode = reportError(vm ? await keepConsole(vm, error) : error, out);
  } finally {
    await vm?.destroy().catch((error: unknown) => reportError(new TinyxError('E_DESTROY', `could not stop ${vm?.id}: ${String(error)}`), out));
    interrupt.dispose();
  }
}
