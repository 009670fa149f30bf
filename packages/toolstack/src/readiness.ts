import { READY_LINE, TinyxError, probePort, quoteLines, type BootableImage, type Readiness } from '@tinyx/image';
import type { ReadyTimes } from './machine.js';
import { probeHttp, probeTcp } from './probe.js';

/** What waitReady needs of a VM, whatever its backend. */
export interface ReadyTarget {
  readonly image: BootableImage;
  readonly restored: boolean;
  /** performance.now() when the VMM started the VM (for a VM from the pool: the request): the origin of the times. */
  readonly startedAt: number;
  console(): Promise<string>;
  endpoint(guestPort: number): { host: string; port: number } | undefined;
  /** Why the VM has ended, or undefined while it runs. */
  ended(): Promise<string | undefined>;
  /** How often `ended` may be asked (it may start a process: xl), and the console read. */
  readonly endCheckMs: number;
  readonly pollMs: number;
  /** E_NOT_READY with the console's tail and what the backend knows. */
  failure(what: string): Promise<TinyxError>;
}

/**
 * Waits until the app answers: the console's ready line (not for a restored
 * VM, whose console starts after it), then the probe through the VM's
 * endpoint (TCP connect, with its exchange's expected answer if it has one,
 * or HTTP GET answered 2xx). Fails with the console's tail when the VM ends
 * or panics, or the time runs out.
 */
export async function waitUntilReady(target: ReadyTarget, probe: Readiness | null, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ReadyTimes> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = target.startedAt + timeoutMs;
  const wanted = probe && 'console' in probe ? probe.console.line : READY_LINE;
  const port = probePort(probe);
  let consoleMs: number | undefined;
  let checkedEnd = performance.now();
  for (;;) {
    if (options.signal?.aborted) throw new TinyxError('E_INTERRUPTED', 'interrupted', { kind: 'interrupted' });
    if (target.endCheckMs === 0 || performance.now() - checkedEnd >= target.endCheckMs) {
      checkedEnd = performance.now();
      const ended = await target.ended();
      if (ended !== undefined) throw await target.failure(ended);
    }
    const console = await target.console();
    if (consoleMs === undefined && console.includes(READY_LINE)) consoleMs = performance.now() - target.startedAt;
    if (/Kernel panic/.test(console)) throw await target.failure('the guest kernel panicked');
    let ok = target.restored || console.includes(wanted);
    const endpoint = ok && port !== undefined ? target.endpoint(port) : undefined;
    if (ok && probe && endpoint) {
      if ('tcp' in probe) {
        const { send, expect } = probe.tcp;
        ok = await probeTcp(endpoint.host, endpoint.port, expect === undefined ? 500 : 1000, expect === undefined ? undefined : { send, expect });
      }
      else if ('http' in probe) {
        const status = await probeHttp(endpoint.host, endpoint.port, probe.http.path);
        ok = status !== undefined && status >= 200 && status < 300;
      }
    }
    if (ok) return { ms: Math.round(performance.now() - target.startedAt), consoleMs: consoleMs === undefined ? undefined : Math.round(consoleMs) };
    if (performance.now() > deadline) throw await target.failure(`not ready within ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((resolve) => setTimeout(resolve, target.pollMs));
  }
}

/**
 * E_NOT_READY: what happened to whom, the console's last lines, and any
 * further sections the backend has (QEMU's own messages, the hypervisor's log).
 */
export function notReady(who: string, what: string, console: string, consoleFile: string, sections: readonly string[] = []): TinyxError {
  const lines = console.split('\n').filter((line) => line.trim() !== '').slice(-20);
  const message = [`${who}: ${what}`, 'console (last lines):', quoteLines(lines.length > 0 ? lines : ['(empty)']), ...sections].join('\n');
  return new TinyxError('E_NOT_READY', message, { hint: `the whole console: ${consoleFile}` });
}

/** The last lines of a console, quoted for an error message; empty for an empty console. */
export function consoleTail(text: string, lines: number): string {
  const kept = text.trim();
  return kept ? quoteLines(kept.split('\n').slice(-lines)) : '';
}
