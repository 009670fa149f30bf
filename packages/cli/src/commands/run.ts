import { readFile } from 'node:fs/promises';
import type { Argv, CommandModule } from 'yargs';
import { ToolstackError, XenPool, getBackend, type QemuBackend, type QemuVm } from '@tinyx/toolstack';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError } from '../output.js';
import { followFile } from '../follow.js';
import { bootXen, xenBackend } from './run-xen.js';

interface BootArgs extends GlobalArgs {
  backend: 'qemu' | 'xen';
  type?: 'pvh' | 'pv';
  refill?: boolean;
  hotplug?: 'xen' | 'lean';
  network: 'user' | 'bridge';
  publish: string[];
  accel: 'auto' | 'kvm' | 'tcg';
  check?: boolean;
  detach?: boolean;
  timeout: number;
}

interface RunArgs extends BootArgs {
  image: string;
  memory: number;
  machine: 'microvm' | 'q35';
  tcgCache?: number;
}

interface RestoreArgs extends BootArgs {
  file: string;
}

/** What `run` and `restore` share: the network, the accelerator, and what to do once QEMU runs. */
function bootOptions<T>(yargs: Argv<T>): Argv<T & BootArgs> {
  return globalOptions(yargs as Argv<object>)
    .option('backend', {
      choices: ['qemu', 'xen'] as const,
      default: 'qemu' as const,
      describe: 'qemu: QEMU/KVM (kvm images); xen: a Xen domain through xl, run in dom0 (xen-pvh and xen-pv images), taken from the pool (tinyx pool) when one waits',
    })
    .option('type', { choices: ['pvh', 'pv'] as const, describe: "xen: the guest type (default: the image's platform; a xen-pvh kernel boots as pv too)" })
    .option('hotplug', {
      choices: ['xen', 'lean'] as const,
      describe: "xen: the script that plugs the domain's vif into the bridge: xen is Xen's own vif-bridge (the default, or TINYX_XEN_HOTPLUG), lean is tinyx's (three commands, no iptables rules)",
    })
    .option('refill', { type: 'boolean', default: true, describe: 'xen: after taking a domain from the pool, refill the pool in the background to the size of the last pool fill' })
    .option('network', {
      choices: ['user', 'bridge'] as const,
      default: 'user' as const,
      describe: "user: QEMU's user-mode network, reached through port forwards on 127.0.0.1; bridge (root): a tap on the tinyx0 bridge and an address of the VM's own",
    })
    .option('publish', { type: 'string', array: true, default: [] as string[], describe: 'forward a host port to a guest port: HOST:GUEST (repeatable; user network)' })
    .option('accel', { choices: ['auto', 'kvm', 'tcg'] as const, default: 'auto' as const, describe: 'auto: KVM when the host can run a Linux guest with it, else TCG' })
    .option('check', { type: 'boolean', describe: "wait for the image's readiness probe, print the time to ready, stop the VM" })
    .option('detach', { type: 'boolean', describe: 'leave the VM running and return its id (see tinyx ps, logs, pause, save, stop)' })
    .option('timeout', { type: 'number', default: 60, describe: 'seconds --check waits for the probe' })
    .check((args) => {
      if (args.check && args.detach) throw new Error('--check stops the VM when it is ready; --detach leaves it running: give one');
      for (const p of args.publish) if (!/^\d{1,5}:\d{1,5}$/.test(p)) throw new Error(`--publish ${p}: give HOST:GUEST, for example 8080:80`);
      if (args.network === 'bridge' && args.publish.length) throw new Error('--publish goes with --network user; a bridged VM is reached at its own address');
      if (args.backend === 'xen' && args.publish.length) throw new Error('--publish is for QEMU; a Xen domain has an address of its own on xenbr0');
      if (args.backend !== 'xen' && args.type) throw new Error('--type (pvh, pv) is for --backend xen');
      if (args.backend !== 'xen' && args.hotplug) throw new Error('--hotplug (xen, lean) is for --backend xen');
      return true;
    }) as unknown as Argv<T & BootArgs>;
}

function bootCreateOptions(args: BootArgs) {
  return {
    network: args.network,
    publish: args.publish.map((p) => {
      const [host, guest] = p.split(':').map(Number);
      return { host: host!, guest: guest! };
    }),
    accel: args.accel,
    detach: !!args.detach,
  };
}

export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run <image>',
  describe: 'Boot an image directory under QEMU (KVM where the host can, TCG otherwise)',
  builder: (yargs) =>
    bootOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory (out/<name>)' })
      .option('memory', { type: 'number', default: 128, describe: 'guest memory in MiB' })
      .option('machine', { choices: ['microvm', 'q35'] as const, default: 'microvm' as const, describe: 'microvm boots vmlinux through PVH (fastest); q35 boots the bzImage' })
      .option('tcg-cache', { type: 'number', describe: "TCG only: bound the translation cache (MiB), most of a TCG VM's host memory after its own RAM (QEMU's default: up to 1 GiB)" })
      .example('$0 run out/nginx --check', 'boot, wait until nginx answers HTTP, print the boot time, stop')
      .example('$0 run out/nginx --publish 8080:80', 'boot and serve on localhost:8080 until Ctrl-C; the console goes to stdout')
      .example('$0 run out/redis --check --json', 'the same, as JSON (accelerator, times, console file)')
      .example('$0 run out/nginx --detach --publish 8080:80', 'in the background; then tinyx ps, tinyx logs ID, tinyx stop ID')
      .example('sudo $0 run out/nginx --network bridge --detach', 'with an address of its own on the tinyx0 bridge (10.213.0.0/16); tinyx ps shows it')
      .example('$0 run out/nginx-pvh --backend xen --check --timeout 180', 'in dom0: a Xen domain (from the pool when tinyx pool fill made some), probed, destroyed')
      .epilog(
        'Networking: with --network user (the default) the guest is 10.0.2.15 behind QEMU, reached through --publish forwards on 127.0.0.1 (the readiness probe gets one of its own). With --network bridge each VM has its own address on tinyx0. A Xen domain (--backend xen) always has its own address on xenbr0 (10.213.0.0/16).',
      ) as unknown as Argv<RunArgs>,
  handler: (args) =>
    args.backend === 'xen'
      ? bootXen(args, (signal) => new XenPool(xenBackend()).instantiate(args.image, { memoryMiB: args.memory, signal, ...(args.type ? { type: args.type } : {}), ...(args.hotplug ? { hotplug: args.hotplug } : {}) }))
      : boot(args, (backend) =>
          backend.create(args.image, { ...bootCreateOptions(args), memoryMiB: args.memory, machine: args.machine, ...(args.tcgCache ? { tcgCacheMiB: args.tcgCache } : {}) }),
        ),
};

export const restoreCommand: CommandModule<object, RestoreArgs> = {
  command: 'restore <file>',
  describe: 'Start a VM again from a state written by tinyx save',
  builder: (yargs) =>
    bootOptions(yargs as Argv<object>)
      .positional('file', { type: 'string', demandOption: true, describe: 'a state file written by tinyx save' })
      .example('$0 restore nginx.state --detach', 'the VM runs on from where it was saved')
      .example('$0 restore nginx.state --check', 'restore, probe the app, print the time, stop')
      .epilog('The image directory, memory and machine are those of the saved VM (kept in FILE.json). A bridged VM comes back with its address.') as unknown as Argv<RestoreArgs>,
  handler: async (args) =>
    args.backend === 'xen' || (await savedBackend(args.file)) === 'xen'
      ? bootXen(args, async (signal) => {
          const requested = performance.now();
          const vm = await xenBackend().restore(args.file, { signal });
          vm.startedAt = requested;
          return { vm, fromPool: false, instantiationMs: Math.round(performance.now() - requested) };
        })
      : boot(args, (backend) => backend.restore(args.file, bootCreateOptions(args))),
};

/** Which backend saved a state file (FILE.json says; qemu's older files do not). */
async function savedBackend(file: string): Promise<string | undefined> {
  const saved = await readFile(`${file}.json`, 'utf8').then((text) => JSON.parse(text) as { backend?: string }, () => undefined);
  return saved?.backend;
}

/** Starts a VM, then: --detach returns its id, --check probes and stops it, otherwise the console follows until it ends or Ctrl-C. */
async function boot(args: BootArgs, start: (backend: QemuBackend) => Promise<QemuVm>): Promise<void> {
  const out = makeOutput(args);
  const interrupt = interruptSignal();
  let vm: QemuVm | undefined;
  try {
    vm = await start(getBackend('qemu') as QemuBackend);
    const network = vm.record.network;
    out.note(`${vm.id}: QEMU ${vm.record.machine}, ${vm.accel.accel} (${vm.accel.reason}), ${vm.record.memoryMiB} MiB; console: ${vm.consoleFile}`);
    if (network) out.note(`  address ${network.address} on ${network.bridge} (tap ${network.tap})`);
    for (const f of vm.forwards) out.note(`  127.0.0.1:${f.host} -> guest:${f.guest}`);
    const described = { id: vm.id, accel: vm.accel, machine: vm.record.machine, forwards: vm.forwards, address: network?.address ?? null, console: vm.consoleFile };
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
      else out.line(`${vm.image.name}: ready ${ready.ms} ms after QEMU started${vm.restored ? ' (restored)' : ` (console ready line at ${ready.consoleMs ?? '?'} ms)`}`);
      process.exitCode = 0;
      return;
    }
    // In the foreground: the console to stdout until the guest stops or Ctrl-C.
    const follow = followFile(vm.consoleFile, (chunk) => process.stdout.write(chunk), interrupt.signal);
    const status = await Promise.race([vm.exited, new Promise<'interrupted'>((resolve) => interrupt.signal.addEventListener('abort', () => resolve('interrupted')))]);
    await follow.stop();
    if (status === 'interrupted') process.exitCode = 130;
    else {
      out.note(`${vm.id}: QEMU exited (status ${status})`);
      process.exitCode = status === 0 ? 0 : 1;
    }
  } catch (error) {
    process.exitCode = reportError(error, out);
  } finally {
    await vm?.destroy().catch((error: unknown) => reportError(new ToolstackError('E_DESTROY', `could not stop ${vm?.id}: ${String(error)}`), out));
    interrupt.dispose();
  }
}
