import { constants } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_MEMORY_MIB, TinyxError, guestsOf } from '@tinyx/image';
import { BACKEND_NAMES, HOTPLUGS, SYSTEM_MAP, checkTimelineFile, getBackend, profiledBoot, restoreVm, timelineSvg, writeTimeline, type BackendName, type BootProfile, type CreateOptions, type Vm } from '@tinyx/toolstack';
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

interface ProfileArgs {
  profile?: boolean;
  profileSvg?: string;
}

interface RunArgs extends BootArgs, ProfileArgs {
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
      .option('profile', {
        type: 'boolean',
        describe:
          "boot once with the kernel's timestamps and initcall_debug, wait until ready, stop, and show where the time went: the phases (VMM, kernel setup, initcalls, root, /init, the app, the probe) and the ten most expensive steps",
      })
      .option('profile-svg', { type: 'string', describe: 'with --profile: also draw the timeline into this SVG file (open it in a browser); a file already there is replaced only if it is a timeline tinyx drew' })
      .group(['tcg-cache'], 'QEMU (--backend qemu):')
      .group(['profile', 'profile-svg'], 'Boot profile:')
      .check((args) => {
        if (args.profile && (args.check || args.detach)) throw new Error('--profile boots, waits until ready and stops the VM by itself: drop --check and --detach');
        if (args.profileSvg !== undefined && !args.profile) throw new Error('--profile-svg draws the timeline of --profile: add --profile');
        return true;
      })
      .example('$0 run out/nginx --check', 'boot, wait until nginx answers HTTP, print the boot time, stop')
      .example('$0 run out/nginx --publish 8080:80', 'boot and serve on localhost:8080 until Ctrl-C; the console goes to stdout')
      .example('$0 run out/redis --check --json', 'the same, as JSON (accelerator, times, console file)')
      .example('$0 run out/nginx --detach --publish 8080:80', 'in the background; then tinyx ps, tinyx logs ID, tinyx stop ID')
      .example('sudo $0 run out/nginx --network bridge --detach', 'with an address of its own on the tinyx0 bridge (10.213.0.0/16); tinyx ps shows it')
      .example('$0 run out/nginx-pvh --backend xen --check --timeout 180', 'in dom0: a Xen domain (from the pool when tinyx pool fill made some), probed, destroyed')
      .example('$0 run out/nginx --profile --profile-svg nginx-boot.svg', "where the boot's time goes: phases, the ten most expensive steps, and a timeline picture")
      .epilog(
        'Networking: with --network user (the default) the guest is 10.0.2.15 behind QEMU, reached through --publish forwards on 127.0.0.1 (the readiness probe gets one of its own). With --network bridge each VM has its own address on tinyx0. A Xen domain (--backend xen) always has its own address on xenbr0 (10.213.0.0/16).',
      ) as unknown as Argv<RunArgs>,
  handler: (args) => {
    if (args.profile) return profile(args);
    return boot(args, (signal) => getBackend(args.backend).create(args.image, createOptions(args, signal)));
  },
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

/**
 * `tinyx run --profile`: one boot with the kernel's timestamps and a line per
 * initcall, watched from the VMM's start; once the probe answers, the VM is
 * stopped and the profile shown (text, --json, and --profile-svg's picture).
 */
async function profile(args: RunArgs): Promise<void> {
  const out = makeOutput(args);
  const interrupt = interruptSignal();
  const profiled = profiledBoot(createOptions(args, interrupt.signal));
  let vm: Vm | undefined;
  try {
    // Refused before the boot: the picture replaces only a timeline tinyx drew.
    if (args.profileSvg) await checkTimelineFile(args.profileSvg);
    vm = await getBackend(args.backend).create(args.image, profiled.options);
    introduce(vm, out);
    const ready = await vm.waitReady(undefined, { timeoutMs: args.timeout * 1000, signal: interrupt.signal });
    const result = await profiled.finish(vm, ready.ms);
    if (args.profileSvg) await writeTimeline(args.profileSvg, timelineSvg(result, `${vm.image.name} (${describeRun(vm)})`));
    if (out.json) out.result({ ok: true, ...vm.describe(), profile: result, ...(args.profileSvg ? { svg: args.profileSvg } : {}) });
    else {
      for (const line of profileText(result)) out.line(line);
      if (args.profileSvg) out.line(`timeline: ${args.profileSvg}`);
    }
    process.exitCode = 0;
  } catch (error) {
    process.exitCode = reportError(vm ? await keepConsole(vm, error) : error, out);
  } finally {
    await profiled.dispose();
    await vm?.destroy().catch((error: unknown) => reportError(new TinyxError('E_DESTROY', `could not stop ${vm?.id}: ${String(error)}`), out));
    interrupt.dispose();
  }
}

function describeRun(vm: Vm): string {
  const d = vm.describe();
  return [d.backend, d.guest, ...(d.accel ? [d.accel.accel] : [])].join(' ');
}

/** The profile as a person reads it: the phases with their share, the ten most expensive steps, and what the profiling cost. */
export function profileText(p: BootProfile): string[] {
  const ms = (n: number): string => `${n.toFixed(1)} ms`.padStart(10);
  const lines = [`ready ${p.readyMs} ms after the VMM's start`, '', 'phases'];
  for (const phase of p.phases) lines.push(`  ${ms(phase.ms)}  ${String(Math.round((phase.ms / p.readyMs) * 100)).padStart(3)} %  ${phase.title}`);
  lines.push('', 'the ten most expensive steps');
  for (const step of p.top) lines.push(`  ${ms(step.ms)}  ${step.kind.padEnd(8)}  ${step.name}${step.detail ? ` (${step.detail})` : ''}`);
  lines.push('', `${p.initcalls.length} initcalls; ${p.consoleLines} kernel lines printed at about ${p.lineCostMs} ms each (subtracted from the steps, not the phases: a quiet boot is faster).`);
  if (p.unnamed > 0) lines.push(`${p.unnamed} initcalls are shown as addresses: the image has no ${SYSTEM_MAP} (build it again with this tinyx to keep one).`);
  return lines;
}
