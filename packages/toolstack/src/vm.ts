import type { ReadinessProbe } from './image.js';

export interface CreateOptions {
  /** Guest memory in MiB (default 128). */
  memoryMiB?: number;
  vcpus?: number;
  /** Create the VM paused; `unpause` starts it. */
  paused?: boolean;
  /** Host port -> guest port forwards. A probe's port is forwarded anyway, to a free host port. */
  publish?: { host: number; guest: number }[];
}

export type VmState = 'running' | 'paused' | 'stopped' | 'crashed';

/** A running (or paused) VM of an image directory. */
export interface Vm {
  readonly id: string;
  readonly backend: string;
  readonly imageDir: string;
  state(): Promise<VmState>;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  /** Stops the VM and removes what it left on the host (sockets, files). */
  destroy(): Promise<void>;
  /** The serial console's output so far. */
  console(): Promise<string>;
  save(file: string): Promise<void>;
  /**
   * Resolves when the probe succeeds (default: the image's own readiness
   * probe), with the milliseconds since the VMM started; rejects with the
   * console's tail when the guest dies or the time runs out.
   */
  waitReady(probe?: ReadinessProbe | null, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<{ ms: number; consoleMs: number | undefined }>;
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
