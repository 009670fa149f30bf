import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { ToolstackError, XenPool, getBackend, type Instantiated, type XenBackend } from '@tinyx/toolstack';
import type { GlobalArgs } from '../global-options.js';
import { followFile } from '../follow.js';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError } from '../output.js';

export interface XenBootArgs extends GlobalArgs {
  check?: boolean;
  detach?: boolean;
  timeout: number;
  refill?: boolean;
}

export const xenBackend = (): XenBackend => getBackend('xen') as XenBackend;

/**
 * `tinyx run|restore --backend xen`: a domain (from the pool when one waits),
 * then as for qemu: --detach returns its id, --check probes and destroys it,
 * otherwise the console follows until the domain ends or Ctrl-C. The time
 * from the request to a running domain is reported (`instantiationMs`).
 */
export async function bootXen(args: XenBootArgs & { image?: string }, start: (signal: AbortSignal) => Promise<Instantiated>): Promise<void> {
  const out = makeOutput(args);
  const interrupt = interruptSignal();
  let vm: Instantiated['vm'] | undefined;
  try {
    const started = await start(interrupt.signal);
    vm = started.vm;
    const { network } = vm.record;
    const origin = started.fromPool ? 'from the pool: unpaused' : vm.restored ? 'xl restore' : 'xl create';
    out.note(`${vm.id}: Xen ${vm.record.type}, ${vm.record.memoryMiB} MiB, address ${network.address} on ${network.bridge}; console: ${vm.consoleFile}`);
    out.note(`${vm.id}: running ${started.instantiationMs} ms after the request (${origin})`);
    const described = {
      id: vm.id,
      backend: 'xen',
      type: vm.record.type,
      address: network.address,
      console: vm.consoleFile,
      fromPool: started.fromPool,
      instantiationMs: started.instantiationMs,
    };
    if (started.fromPool && args.image && args.refill !== false) refillInBackground(args.image, vm.record);
    if (args.detach) {
      if (out.json) out.result({ ok: true, ...described });
      else out.line(vm.id);
      vm = undefined; // left running on purpose
      process.exitCode = 0;
      return;
    }
    if (args.check) {
      const ready = await vm.waitReady(undefined, { timeoutMs: args.timeout * 1000, signal: interrupt.signal });
      if (out.json) out.result({ ok: true, ...described, readyMs: ready.ms, consoleReadyMs: ready.consoleMs ?? null, probe: vm.image.readiness });
      else out.line(`${vm.image.name}: running in ${started.instantiationMs} ms (${origin}), ready ${ready.ms} ms after the request`);
      process.exitCode = 0;
      return;
    }
    const running = vm;
    const follow = followFile(running.consoleFile, (chunk) => process.stdout.write(chunk), interrupt.signal);
    // Once a second: has the domain ended (the app exited, the guest powered off)?
    while (!interrupt.signal.aborted && (await running.state()) !== 'stopped') {
      await sleep(1000, undefined, { signal: interrupt.signal }).catch(() => undefined);
    }
    await follow.stop();
    process.exitCode = interrupt.signal.aborted ? 130 : 0;
    if (!interrupt.signal.aborted) out.note(`${running.id}: the domain ended`);
  } catch (error) {
    process.exitCode = reportError(error, out);
  } finally {
    await vm?.destroy().catch((error: unknown) => reportError(new ToolstackError('E_DESTROY', `could not destroy ${vm?.id}: ${String(error)}`), out));
    interrupt.dispose();
  }
}

/**
 * The pool refills itself: a detached `tinyx pool fill` up to the size last
 * asked for this image, in a process of its own so that this run returns now.
 */
function refillInBackground(image: string, shape: { type: 'pvh' | 'pv'; memoryMiB: number; vcpus: number }): void {
  const pool = new XenPool(xenBackend());
  void pool
    .target(image, shape)
    .then((target) => {
      if (target === undefined || !process.argv[1]) return;
      const args = [process.argv[1], 'pool', 'fill', image, '--size', String(target.size), '--type', shape.type, '--memory', String(shape.memoryMiB), '--vcpus', String(shape.vcpus)];
      if (target.hotplug) args.push('--hotplug', target.hotplug);
      spawn(process.execPath, args, { detached: true, stdio: 'ignore' }).unref();
    })
    .catch(() => undefined);
}
