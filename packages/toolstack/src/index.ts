/**
 * @tinyx/toolstack: boots tinyx image directories as virtual machines.
 *
 * The toolstack reads only an image directory (manifest.json and the files
 * next to it), never the builder. Backends (qemu, xen) implement one
 * interface and are found through a registry. This package holds the
 * interface; the backends come with the issues that add them.
 */

/** A TCP or HTTP probe, or a console line: how to tell that the guest's app is ready (from manifest.readiness). */
export type ReadinessProbe = { tcp: { port: number } } | { http: { port: number; path: string } } | { console: { line: string } };

export interface CreateOptions {
  /** Guest memory in MiB. */
  memoryMiB?: number;
  vcpus?: number;
  /** Create the VM paused; `unpause` starts it. */
  paused?: boolean;
  /** Host port -> guest port forwards (user-mode networking). */
  publish?: { host: number; guest: number }[];
  signal?: AbortSignal;
}

export type VmState = 'running' | 'paused' | 'stopped' | 'crashed';

export interface Vm {
  readonly id: string;
  readonly backend: string;
  readonly imageDir: string;
  state(): Promise<VmState>;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  destroy(): Promise<void>;
  /** The serial console's output so far. */
  console(): Promise<string>;
  save(file: string): Promise<void>;
  /** Resolves when the probe succeeds; rejects with the console tail when the guest dies or the timeout passes. */
  waitReady(probe: ReadinessProbe, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<{ ms: number }>;
}

/** One way of running VMs (QEMU, Xen). */
export interface Backend {
  readonly name: string;
  /** Why this backend cannot run on this host, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  create(imageDir: string, options?: CreateOptions): Promise<Vm>;
  restore(file: string, options?: CreateOptions): Promise<Vm>;
  list(): Promise<Vm[]>;
}

const backends = new Map<string, Backend>();

/** Adds a backend to the registry (the qemu and xen backends register themselves). */
export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

export function getBackend(name: string): Backend | undefined {
  return backends.get(name);
}

export function listBackends(): string[] {
  return [...backends.keys()].sort();
}
