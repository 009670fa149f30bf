import type { BootableImage, Readiness } from '@tinyx/image';
import type { AccelChoice, Accelerator } from './accel.js';
import type { Hotplug } from './xen/hotplug.js';

/**
 * The machine contract (kraftkit's MachineService is the model): every
 * backend creates, lists and finds VMs the same way, and every VM answers the
 * same calls. The CLI sees only this.
 */

/** QEMU's own settings of a VM; other backends ignore them. */
export interface QemuCreateOptions {
  /** auto (default): KVM when the host can run a Linux guest with it, else TCG. */
  accel?: Accelerator | 'auto';
  /**
   * user: QEMU's user-mode network, reached through port forwards (the
   * default; no privileges). bridge: a tap on the tinyx0 bridge and an
   * address of the VM's own (root only).
   */
  network?: 'user' | 'bridge';
  /**
   * TCG only: the translation cache's size in MiB (QEMU's -accel tcg,tb-size).
   * Translated code is most of a TCG VM's host memory; a bound trades some
   * retranslation for density. Default: QEMU's own.
   */
  tcgCacheMiB?: number;
  /**
   * TCG only: the host's TSC rate in kHz that the guest keeps its TSC clock
   * with (tsc_early_khz=), so that NO_HZ_IDLE stops its tick when idle.
   * Default: read from /proc/cpuinfo where the host states it (hostTscKhz);
   * null: none given, and the guest falls back to jiffies, which ticks at HZ.
   */
  tscKhz?: number | null;
  /** Leave QEMU running when this process exits (tinyx run --detach). */
  detach?: boolean;
}

/** Xen's own settings of a domain; other backends ignore them. */
export interface XenCreateOptions {
  /** xl.cfg lines added as they are, after the backend's own extraLines. */
  extraLines?: readonly string[];
  /** The hotplug scripts for this domain's vif and root disk (Xen's or tinyx's lean ones); default the backend's. */
  hotplug?: Hotplug;
  /** A vif script of your own (an absolute path, xl.cfg's `script=`), run in place of the hotplug choice's. */
  vifScript?: string;
  /**
   * Take a domain of the same shape waiting in the pool (tinyx pool fill)
   * when there is one, and unpause it, instead of creating one (default
   * true; a paused create always makes a new domain).
   */
  pool?: boolean;
  /** After taking one from the pool, refill the pool in the background to the size its last fill asked for. */
  refill?: boolean;
}

export interface CreateOptions {
  /** Guest memory in MiB (default DEFAULT_MEMORY_MIB, 128). */
  memoryMiB?: number;
  vcpus?: number;
  /**
   * How the backend boots the image: a QEMU machine (microvm, q35), a Xen
   * guest type (pvh, pv). Default: the first of its platform's (PLATFORMS).
   */
  guest?: string;
  /** Create the VM paused; `unpause` starts it. */
  paused?: boolean;
  /** Host port -> guest port forwards (QEMU's user-mode network). A probe's port is forwarded anyway, to a free host port. */
  publish?: { host: number; guest: number }[];
  /** Cancels the creation (and cleans up). */
  signal?: AbortSignal;
  /**
   * Words added to the guest's kernel command line after the backend's own
   * (a profiled boot's `printk.time=1 initcall_debug`). Xen: never from the
   * pool, whose domains booted with the plain command line.
   */
  kernelArgs?: readonly string[];
  /**
   * Called the moment the VMM is started (QEMU's spawn, `xl create`), with
   * the console file it writes and the start's performance.now(): whoever
   * watches the console from the first line (the boot profiler) starts here.
   * QEMU started again (a probe port taken meanwhile) calls it again.
   */
  onStarted?: (started: { consoleFile: string; startedAt: number }) => void;
  qemu?: QemuCreateOptions;
  xen?: XenCreateOptions;
}

export type VmState = 'running' | 'paused' | 'stopped' | 'crashed';

/** Where a VM came from. */
export type VmOrigin = 'created' | 'pool' | 'restored';

/** What `tinyx ps` and `--json` show of a VM: the same fields for every backend. */
export interface VmDescription {
  id: string;
  backend: string;
  /** The image directory. */
  image: string;
  name: string;
  /** How the backend boots it: a QEMU machine, a Xen guest type. */
  guest: string;
  /** What runs it, in a word for tinyx ps: the accelerator (kvm, tcg), or xen-<type>, "(pool)" while it waits in the pool. */
  runsAs: string;
  /** QEMU's accelerator and why; null for a Xen domain. */
  accel: AccelChoice | null;
  memoryMiB: number;
  vcpus: number;
  /** The VM's own address on a bridge, or null (QEMU's user-mode network). */
  address: string | null;
  bridge: string | null;
  /** The host's loopback ports forwarded to guest ports. */
  forwards: { host: number; guest: number }[];
  /** The VMM's process, where there is one of the VM's own (QEMU). */
  pid: number | null;
  /** Waiting in the pool, paused, for a run to take it. */
  pooled: boolean;
  /** The file the serial console is written to. */
  console: string;
  origin: VmOrigin;
  /** From the request to a running VM, for a VM this process started; null otherwise. */
  instantiationMs: number | null;
  started: string;
}

/** The times waitReady reports, in ms since the VMM started the VM (QEMU's start, `xl create`), or since the request for a VM taken from the pool. */
export interface ReadyTimes {
  ms: number;
  /** When the console's ready line appeared (not for a restored VM, whose console starts after it). */
  consoleMs: number | undefined;
}

/** A VM of an image directory, running, paused or stopped. */
export interface Vm {
  readonly id: string;
  readonly backend: string;
  readonly image: BootableImage;
  readonly consoleFile: string;
  /** performance.now() when the VMM started it (for a domain from the pool: the request): the origin of its boot times. */
  readonly startedAt: number;
  /** Started from a saved state: its console begins after the ready line, so only the network probe counts. */
  readonly restored: boolean;
  state(): Promise<VmState>;
  describe(): VmDescription;
  pause(): Promise<void>;
  unpause(): Promise<void>;
  /** The serial console's output so far. */
  console(): Promise<string>;
  /**
   * Writes the VM's whole state to `file` (and what restore needs to
   * `file.json`). The VM then ends and its files go; with `keep` it runs on.
   */
  save(file: string, options?: { keep?: boolean }): Promise<void>;
  /**
   * Resolves when the probe succeeds (default: the image's own readiness
   * probe); rejects with the console's tail when the guest dies or the time
   * runs out.
   */
  waitReady(probe?: Readiness | null, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<ReadyTimes>;
  /** Where the host reaches a guest port: the VM's own address, or a loopback forward; undefined when it cannot. */
  endpoint(guestPort: number): { host: string; port: number } | undefined;
  /** Resolves once the VM has ended, with the VMM's exit status where there is one. */
  readonly exited: Promise<number | null>;
  /** Lets go of the VM without stopping it: it runs on, detached from this process. */
  release(): void;
  /** Stops the VM and removes what it left on the host (sockets, files, lease). Safe to call twice. */
  destroy(): Promise<void>;
}

/** One way of running VMs (QEMU, Xen). */
export interface Backend {
  readonly name: string;
  /** Why this backend cannot run on this host, or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  create(imageDir: string, options?: CreateOptions): Promise<Vm>;
  /** A VM again from a state `save` wrote. */
  restore(file: string, options?: CreateOptions): Promise<Vm>;
  /** The backend's VMs in the runtime store (this process's and others'). */
  list(): Promise<Vm[]>;
  get(id: string): Promise<Vm>;
}
