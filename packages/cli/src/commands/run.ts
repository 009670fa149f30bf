import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Argv, CommandModule } from 'yargs';
import { ToolstackError, getBackend, type QemuBackend, type QemuVm } from '@tinyx/toolstack';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError } from '../output.js';

interface RunArgs extends GlobalArgs {
  image: string;
  memory: number;
  publish: string[];
  accel: 'auto' | 'kvm' | 'tcg';
  machine: 'microvm' | 'q35';
  check?: boolean;
  detach?: boolean;
  timeout: number;
}

export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run <image>',
  describe: 'Boot an image directory under QEMU (KVM where the host can, TCG otherwise)',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory (out/<name>)' })
      .option('memory', { type: 'number', default: 128, describe: 'guest memory in MiB' })
      .option('publish', { type: 'string', array: true, default: [] as string[], describe: 'forward a host port to a guest port: HOST:GUEST (repeatable)' })
      .option('accel', { choices: ['auto', 'kvm', 'tcg'] as const, default: 'auto' as const, describe: 'auto: KVM when the host can run a Linux guest with it, else TCG' })
      .option('machine', { choices: ['microvm', 'q35'] as const, default: 'microvm' as const, describe: 'microvm boots vmlinux through PVH (fastest); q35 boots the bzImage' })
      .option('check', { type: 'boolean', describe: "boot, wait for the image's readiness probe, print the time to ready, stop the VM" })
      .option('detach', { type: 'boolean', describe: 'leave the VM running and return its id (see tinyx ps, logs, pause, stop)' })
      .option('timeout', { type: 'number', default: 60, describe: 'seconds --check waits for the probe' })
      .check((args) => {
        if (args.check && args.detach) throw new Error('--check stops the VM when it is ready; --detach leaves it running: give one');
        for (const p of args.publish) if (!/^\d{1,5}:\d{1,5}$/.test(p)) throw new Error(`--publish ${p}: give HOST:GUEST, for example 8080:80`);
        return true;
      })
      .example('$0 run out/nginx --check', 'boot, wait until nginx answers HTTP, print the boot time, stop')
      .example('$0 run out/nginx --publish 8080:80', 'boot and serve on localhost:8080 until Ctrl-C; the console goes to stdout')
      .example('$0 run out/redis --check --json', 'the same, as JSON (accelerator, times, console file)')
      .example('$0 run out/nginx --detach --publish 8080:80', 'in the background; then tinyx ps, tinyx logs ID, tinyx stop ID')
      .epilog('Networking is QEMU user-mode: the guest is 10.0.2.15, reachable through --publish forwards on 127.0.0.1.') as unknown as Argv<RunArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    const interrupt = interruptSignal();
    let vm: QemuVm | undefined;
    try {
      const backend = getBackend('qemu') as QemuBackend;
      vm = await backend.create(args.image, {
        memoryMiB: args.memory,
        publish: args.publish.map((p) => {
          const [host, guest] = p.split(':').map(Number);
          return { host: host!, guest: guest! };
        }),
        accel: args.accel,
        machine: args.machine,
        detach: !!args.detach,
      });
      out.note(`${vm.id}: QEMU ${args.machine}, ${vm.accel.accel} (${vm.accel.reason}), ${args.memory} MiB; console: ${vm.consoleFile}`);
      for (const f of vm.forwards) out.note(`  127.0.0.1:${f.host} -> guest:${f.guest}`);
      if (args.detach) {
        if (out.json) out.result({ ok: true, id: vm.id, accel: vm.accel, forwards: vm.forwards, console: vm.consoleFile });
        else out.line(vm.id);
        vm.release();
        vm = undefined; // left running on purpose
        process.exitCode = 0;
        return;
      }
      if (args.check) {
        const ready = await vm.waitReady(undefined, { timeoutMs: args.timeout * 1000, signal: interrupt.signal });
        const result = { ok: true, id: vm.id, accel: vm.accel, machine: args.machine, readyMs: ready.ms, consoleReadyMs: ready.consoleMs ?? null, forwards: vm.forwards, probe: vm.image.readiness };
        if (out.json) out.result(result);
        else out.line(`${vm.image.name}: ready ${ready.ms} ms after QEMU started (console ready line at ${ready.consoleMs ?? '?'} ms)`);
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
  },
};

/** Copies what is appended to a file as it grows (the console log), like tail -f. */
function followFile(path: string, write: (chunk: Buffer) => void, signal: AbortSignal): { stop(): Promise<void> } {
  let offset = 0;
  let stopped = false;
  const pump = async (): Promise<void> => {
    const size = (await stat(path).catch(() => ({ size: 0 }))).size;
    if (size > offset) {
      for await (const chunk of createReadStream(path, { start: offset, end: size - 1 })) write(chunk as Buffer);
      offset = size;
    }
  };
  const loop = (async () => {
    while (!stopped && !signal.aborted) {
      await pump();
      await new Promise((r) => setTimeout(r, 100));
    }
    await pump();
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}
