import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findOnPath, renderXlConfig, run, SUBPROCESS_PATH, xenCmdline, XEN_DEFAULT_NETWORK, type RunResult } from '@tinyx/builder';
import { ensureBridge, leaseAddress, MAC_PREFIX, macFor, releaseLease, type BridgeConfig } from './bridge.js';
import { ToolstackError } from './errors.js';
import { vifScript, type Hotplug } from './hotplug.js';
import { readImage, type ImageDirectory, type ReadinessProbe } from './image.js';
import { probeHttp, probeTcp } from './probe.js';
import { runtimeDir, vmDir } from './runtime.js';
import { writeStateFile } from './state-file.js';
import type { Backend, CreateOptions, Vm, VmState } from './vm.js';
import { domainState, parseXlListLong, parseXlListTable, type XlDomain } from './xl-list.js';

/** What the image's /init prints once the app listens (the builder's READY_LINE). */
const READY_LINE = 'tinyx: ready';

/** Where xenconsoled writes each guest's console when started with --log=guest (Debian's default --log-dir). */
export const DEFAULT_XEN_CONSOLE_DIR = '/var/log/xen/console';

/** Debian's Xen bridge and the tinyx subnet: the same network the builder's `<name>.xl.cfg` uses. */
export const DEFAULT_XEN_BRIDGE: BridgeConfig = { bridge: XEN_DEFAULT_NETWORK.bridge, gateway: XEN_DEFAULT_NETWORK.gateway, prefixLength: XEN_DEFAULT_NETWORK.prefixLength };

export interface XenBackendOptions {
  /** xenconsoled's log directory (XENCONSOLED_ARGS="--log=guest --log-dir=DIR"); default /var/log/xen/console. */
  consoleDir?: string;
  /** The bridge the guests' vif is plugged into, and its subnet; default xenbr0, 10.213.0.1/16. Made when missing. */
  bridge?: BridgeConfig;
  /** How vifs are plugged (hotplug.ts): Xen's own script (default) or tinyx's lean one; TINYX_XEN_HOTPLUG=lean sets it too. */
  hotplug?: Hotplug;
  /**
   * xl.cfg lines every domain gets (before a create's own extraLines); by
   * default those of TINYX_XEN_XL_EXTRA, one per line. The Xen test harness
   * sets `tsc_mode = "native"` there (see test/xen/README.md).
   */
  extraLines?: readonly string[];
}

export interface XenCreateOptions extends CreateOptions {
  /**
   * pvh or pv; default from the image's platform (xen-pvh: pvh, xen-pv: pv).
   * A xen-pvh kernel also has XEN_PV, so it boots as pv too.
   */
  type?: 'pvh' | 'pv';
  /** xl.cfg lines added as they are (renderXlConfig's extraLines). */
  extraLines?: readonly string[];
  /** The vif hotplug script for this domain; default the backend's. */
  hotplug?: Hotplug;
  /** A vif script of your own (an absolute path, xl.cfg's `script=`), run in place of the hotplug choice's. */
  vifScript?: string;
  /** Cancels `xl create` (and cleans up). */
  signal?: AbortSignal;
}

/** The guest's network card as the toolstack records it (the vif's name is Xen's: vif<domid>.0). */
export interface XenNic {
  bridge: string;
  address: string;
  prefixLength: number;
  gateway: string;
  mac: string;
}

/** A xen VM's vm.json in the runtime directory: enough for `tinyx ps`, `stop` and the pool to find it from another process. */
export interface XenVmRecord {
  backend: 'xen';
  /** Also the domain's name. */
  id: string;
  imageDir: string;
  name: string;
  type: 'pvh' | 'pv';
  memoryMiB: number;
  vcpus: number;
  network: XenNic;
  /** Which script plugged its vif (hotplug.ts). */
  hotplug: Hotplug;
  /** The xl.cfg the domain was created from. */
  config: string;
  /** xenconsoled's log of the guest's console. */
  consoleLog: string;
  restored: boolean;
  /** A pre-created paused domain waiting in the pool (tinyx pool); false once taken. */
  pooled: boolean;
  startedAtEpochMs: number;
  /** Xen's number for the domain, asked once xl made it: what the hypervisor's own log (`xl dmesg`) calls it, after it is gone too. */
  domid?: number;
}

/** What `save` writes next to the state file (FILE.json), and `restore` reads. */
interface SavedXenVm {
  backend: 'xen';
  id: string;
  imageDir: string;
  type: 'pvh' | 'pv';
  memoryMiB: number;
  vcpus: number;
  network: XenNic;
  hotplug?: Hotplug;
}

/**
 * The xen backend: each VM is a domain created by `xl` from an xl.cfg the
 * builder's renderer writes, with a vif on a bridge and an address leased
 * the same way as the qemu backend's bridged VMs. Runs in dom0, as root.
 */
export class XenBackend implements Backend {
  readonly name = 'xen';
  readonly consoleDir: string;
  readonly bridge: BridgeConfig;
  private readonly defaultHotplug: Hotplug | undefined;
  private readonly defaultExtraLines: readonly string[] | undefined;

  constructor(options: XenBackendOptions = {}) {
    this.consoleDir = options.consoleDir ?? process.env.TINYX_XEN_CONSOLE_DIR ?? DEFAULT_XEN_CONSOLE_DIR;
    this.bridge = options.bridge ?? DEFAULT_XEN_BRIDGE;
    this.defaultHotplug = options.hotplug;
    this.defaultExtraLines = options.extraLines;
  }

  /** The xl.cfg lines every domain gets: the option, else TINYX_XEN_XL_EXTRA's lines. */
  get extraLines(): readonly string[] {
    return this.defaultExtraLines ?? (process.env.TINYX_XEN_XL_EXTRA ?? '').split('\n').map((line) => line.trim()).filter(Boolean);
  }

  /** The hotplug script domains get unless a create says otherwise: the option, else TINYX_XEN_HOTPLUG, else Xen's own. */
  get hotplug(): Hotplug {
    if (this.defaultHotplug) return this.defaultHotplug;
    const fromEnv = process.env.TINYX_XEN_HOTPLUG;
    if (fromEnv === undefined || fromEnv === '') return 'xen';
    if (fromEnv === 'xen' || fromEnv === 'lean') return fromEnv;
    throw new ToolstackError('E_USAGE', `TINYX_XEN_HOTPLUG=${fromEnv}: it takes xen (Xen's own vif script) or lean (tinyx's)`, { kind: 'user' });
  }

  async unavailable(): Promise<string | undefined> {
    return (await this.missing())?.message;
  }

  private async missing(): Promise<ToolstackError | undefined> {
    if (!(await findOnPath('xl', SUBPROCESS_PATH))) {
      return new ToolstackError('E_NO_XL', 'xl (the Xen toolstack) is not installed', { kind: 'host', hint: 'apt-get install xen-system-amd64 (the hypervisor and xl, Debian) and boot the machine with Xen; or use --backend qemu' });
    }
    const capabilities = await readFile('/proc/xen/capabilities', 'utf8').catch(() => undefined);
    if (capabilities === undefined) {
      return new ToolstackError('E_NOT_DOM0', 'this host is not running on Xen (no /proc/xen/capabilities)', {
        kind: 'host',
        hint: 'boot the machine with the Xen hypervisor and run tinyx in dom0 (test/xen boots one inside QEMU), or use --backend qemu',
      });
    }
    if (!capabilities.includes('control_d')) {
      return new ToolstackError('E_NOT_DOM0', 'this is a Xen guest, not dom0: only dom0 can create domains', { kind: 'host', hint: 'run tinyx in dom0' });
    }
    if (process.getuid?.() !== 0) return new ToolstackError('E_NOT_ROOT', 'xl needs root', { kind: 'host', hint: 'run as root in dom0' });
    return undefined;
  }

  private async requireXen(): Promise<void> {
    const missing = await this.missing();
    if (missing) throw missing;
  }

  /** Creates a domain of the image (paused with `paused`); see XenCreateOptions. */
  async create(imageDir: string, options: XenCreateOptions = {}): Promise<XenVm> {
    const image = await readImage(imageDir);
    const type = options.type ?? guestType(image);
    const kernel = kernelFor(image, type);
    await this.requireXen();
    const id = `${image.name}-${randomBytes(3).toString('hex')}`;
    return this.start(image, id, {
      type,
      memoryMiB: options.memoryMiB ?? 128,
      vcpus: options.vcpus ?? 1,
      hotplug: options.hotplug ?? this.hotplug,
      signal: options.signal,
      xl: async (record) => {
        await requireFile(kernel, 'kernel');
        await requireFile(image.initrd, 'root filesystem');
        const script = options.vifScript ?? (await vifScript(record.hotplug, runtimeDir()));
        const extraLines = [...this.extraLines, ...(options.extraLines ?? [])];
        await writeFile(record.config, xenDomainConfig(image, record, { extraLines, vifScript: script }));
        return ['create', ...(options.paused ? ['-p'] : []), record.config];
      },
      pooled: false,
      restored: false,
    });
  }

  /**
   * A domain again from a file written by XenVm.save: `xl restore` with the
   * configuration xl kept in the file (the same name, MAC and, in the saved
   * memory, the same address, which is leased again).
   */
  async restore(file: string, options: XenCreateOptions = {}): Promise<XenVm> {
    const saved = await readSaved(file);
    const image = await readImage(saved.imageDir);
    await this.requireXen();
    if (await readFile(join(vmDir(saved.id), 'vm.json')).then(() => true, () => false)) {
      throw new ToolstackError('E_RESTORE', `${saved.id} (saved in ${file}) is running already`, { kind: 'user', hint: `stop it first: tinyx stop ${saved.id}` });
    }
    return this.start(image, saved.id, {
      type: saved.type,
      memoryMiB: saved.memoryMiB,
      vcpus: saved.vcpus,
      // xl restores the vif with the script in the configuration it saved.
      hotplug: saved.hotplug ?? 'xen',
      signal: options.signal,
      restoreNic: saved.network,
      xl: async () => {
        // The saved configuration names the lean script's path: it is written again if the runtime directory was emptied since (a reboot of dom0).
        if (saved.hotplug) await vifScript(saved.hotplug, runtimeDir());
        return ['restore', ...(options.paused ? ['-p'] : []), file];
      },
      pooled: false,
      restored: true,
    });
  }

  /**
   * What create and restore share: the runtime directory, the lease, the
   * record, then xl; on any failure (xl's included, and Ctrl-C) the domain,
   * the lease and the directory are removed again.
   */
  private async start(
    image: ImageDirectory,
    id: string,
    spec: {
      type: 'pvh' | 'pv';
      memoryMiB: number;
      vcpus: number;
      hotplug: Hotplug;
      signal: AbortSignal | undefined;
      restoreNic?: XenNic;
      /** Writes what xl needs and returns its arguments. */
      xl: (record: XenVmRecord) => Promise<string[]>;
      pooled: boolean;
      restored: boolean;
    },
  ): Promise<XenVm> {
    const runtime = runtimeDir();
    const dir = vmDir(id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let address: string | undefined;
    let xlStarted = false;
    try {
      // A restored guest keeps its network: its address and gateway are in its saved memory.
      const nic = spec.restoreNic;
      const bridge: BridgeConfig = nic ? { bridge: nic.bridge, gateway: nic.gateway, prefixLength: nic.prefixLength } : this.bridge;
      await ensureBridge(bridge);
      address = await leaseAddress(id, runtime, bridge, spec.restoreNic?.address);
      const record: XenVmRecord = {
        backend: 'xen',
        id,
        imageDir: image.dir,
        name: image.name,
        type: spec.type,
        memoryMiB: spec.memoryMiB,
        vcpus: spec.vcpus,
        network: { bridge: bridge.bridge, address, prefixLength: bridge.prefixLength, gateway: bridge.gateway, mac: spec.restoreNic?.mac ?? macFor(id, MAC_PREFIX.xen) },
        hotplug: spec.hotplug,
        config: join(dir, 'xl.cfg'),
        consoleLog: join(this.consoleDir, `guest-${id}.log`),
        restored: spec.restored,
        pooled: spec.pooled,
        startedAtEpochMs: Date.now(),
      };
      const args = await spec.xl(record);
      await writeRecord(dir, record);
      // A console log left by an earlier domain of the same name (a restore) is not this one's.
      await rm(record.consoleLog, { force: true });
      const startedAt = performance.now();
      xlStarted = true;
      const result = await xl(args, spec.signal);
      if (result.exitCode !== 0) throw xlFailure(args[0]!, id, result, record.config);
      // Asked while the guest boots (a created domain runs already): it does not delay readiness.
      record.domid = await domainId(id);
      await writeRecord(dir, record);
      return new XenVm(record, image, dir, startedAt);
    } catch (error) {
      // xl removes a domain it failed to build, but not always one whose devices failed after the build.
      if (xlStarted && (await domainExists(id))) await xl(['destroy', id]).catch(() => undefined);
      if (address) await releaseLease(address, runtime);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Every xen VM in the runtime directory (this process's and other processes'), pooled ones included. */
  async list(): Promise<XenVm[]> {
    const names = await readdir(runtimeDir()).catch(() => [] as string[]);
    const vms: XenVm[] = [];
    for (const id of names.filter((name) => !name.startsWith('.')).sort()) {
      vms.push(...(await XenVm.attach(id).then((vm) => [vm], () => [] as XenVm[])));
    }
    return vms;
  }

  /** A xen VM by id. */
  async get(id: string): Promise<XenVm> {
    return XenVm.attach(id);
  }

  /** Every domain xl knows (`xl list -l`), tinyx's or not. */
  async domains(): Promise<XlDomain[]> {
    await this.requireXen();
    const listed = await xl(['list', '-l']);
    if (listed.exitCode !== 0) throw xlFailure('list', 'the domains', listed);
    return parseXlListLong(listed.stdout);
  }
}

/** A domain created by the xen backend. */
export class XenVm implements Vm {
  readonly backend = 'xen';
  private destroyed = false;

  constructor(
    readonly record: XenVmRecord,
    readonly image: ImageDirectory,
    readonly dir: string,
    /** performance.now() of the request that started the VM: the origin of waitReady's times (the pool moves it to the claim). */
    public startedAt: number,
  ) {}

  /** Finds a VM by id in the runtime directory (from another process, or a pooled one). */
  static async attach(id: string): Promise<XenVm> {
    const dir = vmDir(id);
    let record: XenVmRecord;
    try {
      record = JSON.parse(await readFile(join(dir, 'vm.json'), 'utf8')) as XenVmRecord;
    } catch {
      throw new ToolstackError('E_NO_VM', `no VM with id ${id}`, { kind: 'user', hint: 'list them with: tinyx ps' });
    }
    if (record.backend !== 'xen') throw new ToolstackError('E_NO_VM', `${id} is not a xen VM`, { kind: 'user' });
    const image = await readImage(record.imageDir).catch(() => ({ dir: record.imageDir, name: record.name, platform: 'xen-pvh', readiness: null, kernel: null, vmlinux: null, initrd: '' }));
    return new XenVm(record, image, dir, performance.now());
  }

  get id(): string {
    return this.record.id;
  }

  get imageDir(): string {
    return this.image.dir;
  }

  /** The guest's own address on the bridge. */
  get address(): string {
    return this.record.network.address;
  }

  get consoleFile(): string {
    return this.record.consoleLog;
  }

  get restored(): boolean {
    return this.record.restored;
  }

  /** Rewrites vm.json (the pool marks a claimed VM as no longer pooled). */
  async update(change: Partial<Pick<XenVmRecord, 'pooled' | 'startedAtEpochMs'>>): Promise<void> {
    Object.assign(this.record, change);
    await writeRecord(this.dir, this.record);
  }

  async state(): Promise<VmState> {
    const listed = await xl(['list', this.id]);
    if (listed.exitCode !== 0) return 'stopped';
    const row = parseXlListTable(listed.stdout).find((r) => r.name === this.id);
    return row ? domainState(row.flags) : 'stopped';
  }

  async pause(): Promise<void> {
    await this.act('pause');
  }

  async unpause(): Promise<void> {
    await this.act('unpause');
  }

  private async act(verb: 'pause' | 'unpause'): Promise<void> {
    const result = await xl([verb, this.id]);
    if (result.exitCode === 0) return;
    if (!(await domainExists(this.id))) {
      throw new ToolstackError('E_VM_GONE', `${this.id}: its domain no longer exists`, { kind: 'user', hint: `remove what it left with: tinyx stop ${this.id}` });
    }
    throw xlFailure(verb, this.id, result);
  }

  async console(): Promise<string> {
    return readFile(this.consoleFile, 'utf8').catch(() => '');
  }

  /**
   * Writes the domain's state to `file` with `xl save`, and `file.json` with
   * what restore needs. xl ends the domain once saved, and this VM is then
   * gone (its lease and files removed); with `keep` (`xl save -c`) it runs on.
   */
  async save(file: string, options: { keep?: boolean } = {}): Promise<void> {
    const saved: SavedXenVm = { backend: 'xen', id: this.id, imageDir: this.image.dir, type: this.record.type, memoryMiB: this.record.memoryMiB, vcpus: this.record.vcpus, network: this.record.network, hotplug: this.record.hotplug };
    // FILE must be new or a state tinyx saved (checked before xl touches the domain); written under a temporary name, then renamed.
    await writeStateFile(
      file,
      async (temp) => {
        const result = await xl(['save', ...(options.keep ? ['-c'] : []), this.id, temp]);
        if (result.exitCode !== 0) throw xlFailure('save', this.id, result, undefined, 'E_SAVE');
      },
      saved,
    );
    if (!options.keep) await this.destroy();
  }

  /**
   * Resolves once the app answers: the console's ready line (not for a
   * restored VM, whose console starts after it), then the probe against the
   * guest's own address. Fails with the console's tail when the domain ends
   * or panics, or the time runs out.
   */
  async waitReady(probe: ReadinessProbe | null = this.image.readiness, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ ms: number; consoleMs: number | undefined }> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const deadline = this.startedAt + timeoutMs;
    let consoleMs: number | undefined;
    let checkedDomain = performance.now();
    for (;;) {
      if (options.signal?.aborted) throw new ToolstackError('E_INTERRUPTED', 'interrupted', { kind: 'interrupted' });
      const console = await this.console();
      if (consoleMs === undefined && console.includes(READY_LINE)) consoleMs = performance.now() - this.startedAt;
      if (/Kernel panic/.test(console)) throw await this.failure('the guest kernel panicked');
      // xl is a process of its own (slow under emulation): the domain's end is checked once a second, the console far more often.
      if (performance.now() - checkedDomain > 1000) {
        checkedDomain = performance.now();
        if (!(await domainExists(this.id))) throw await this.failure('the domain ended before it was ready');
      }
      const wanted = probe && 'console' in probe ? probe.console.line : READY_LINE;
      let ok = this.restored || console.includes(wanted);
      if (ok && probe && !('console' in probe)) {
        if ('tcp' in probe) ok = await probeTcp(this.address, probe.tcp.port);
        else {
          const status = await probeHttp(this.address, probe.http.port, probe.http.path);
          ok = status !== undefined && status >= 200 && status < 300;
        }
      }
      if (ok) return { ms: Math.round(performance.now() - this.startedAt), consoleMs: consoleMs === undefined ? undefined : Math.round(consoleMs) };
      if (performance.now() > deadline) throw await this.failure(`not ready within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async failure(what: string): Promise<ToolstackError> {
    const quote = (lines: string[]): string => lines.map((l) => `  | ${l}`).join('\n');
    const consoleLines = (await this.console()).split('\n').filter((l) => l.trim() !== '').slice(-20);
    let message = `${this.image.name} (${this.id}): ${what}\nconsole (last lines):\n${quote(consoleLines.length > 0 ? consoleLines : ['(empty)'])}`;
    // A guest that dies before its console works (a triple fault in early boot) is explained only by the hypervisor.
    const said = this.record.domid === undefined ? [] : await hypervisorLines(this.record.domid);
    if (said.length > 0) message += `\nthe hypervisor about domain ${this.record.domid} (xl dmesg):\n${quote(said)}`;
    return new ToolstackError('E_NOT_READY', message, { hint: `the whole console: ${this.consoleFile}` });
  }

  /** Ends the domain (`xl destroy`) and removes its lease, files and console log. Safe to call twice, and for a domain already gone. */
  async destroy(): Promise<void> {
    if (!this.destroyed && (await domainExists(this.id))) {
      const result = await xl(['destroy', this.id]);
      if (result.exitCode !== 0 && (await domainExists(this.id))) throw xlFailure('destroy', this.id, result);
    }
    this.destroyed = true;
    await releaseLease(this.record.network.address, runtimeDir());
    await rm(this.consoleFile, { force: true });
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The xl.cfg of a VM: the builder's renderer (the one `<name>.xl.cfg` comes
 * from) with the VM's name, kernel for its type, leased address on the
 * command line and MAC on the vif.
 */
export function xenDomainConfig(
  image: ImageDirectory,
  record: Pick<XenVmRecord, 'id' | 'type' | 'memoryMiB' | 'vcpus' | 'network'>,
  options: { extraLines?: readonly string[] | undefined; vifScript?: string | undefined } = {},
): string {
  return renderXlConfig({
    name: record.id,
    type: record.type,
    kernel: kernelFor(image, record.type),
    ramdisk: image.initrd,
    cmdline: xenCmdline(record.network),
    memoryMiB: record.memoryMiB,
    vcpus: record.vcpus,
    vif: { bridge: record.network.bridge, mac: record.network.mac, ...(options.vifScript ? { script: options.vifScript } : {}) },
    ...(options.extraLines ? { extraLines: options.extraLines } : {}),
  });
}

/** The guest type an image was built for. */
export function guestType(image: ImageDirectory): 'pvh' | 'pv' {
  if (image.platform === 'xen-pvh') return 'pvh';
  if (image.platform === 'xen-pv') return 'pv';
  throw new ToolstackError('E_PLATFORM', `${image.name} was built for ${image.platform}; the xen backend boots xen-pvh and xen-pv images`, {
    kind: 'user',
    hint: `build it for Xen: tinyx build ${image.name} --platform xen-pvh`,
  });
}

/**
 * The kernel xl loads: PVH enters the ELF vmlinux at its PVH note; PV takes
 * the same ELF (its Xen notes), or the bzImage when there is no vmlinux.
 */
function kernelFor(image: ImageDirectory, type: 'pvh' | 'pv'): string {
  const kernel = type === 'pvh' ? image.vmlinux : (image.vmlinux ?? image.kernel);
  if (!kernel) {
    throw new ToolstackError('E_NO_KERNEL', `${image.dir} has no ${type === 'pvh' ? 'vmlinux (the ELF kernel PVH boots)' : 'kernel'}`, { kind: 'user', hint: `build it again: tinyx build ${image.name} --platform xen-${type}` });
  }
  return kernel;
}

async function requireFile(path: string, what: string): Promise<void> {
  await access(path).catch(() => {
    throw new ToolstackError('E_KERNEL_MISSING', `${path} is missing (the ${what} xl would load)`, { kind: 'user', hint: 'build the image again' });
  });
}

/** xl through the project's subprocess wrapper; the caller reads the exit code. */
async function xl(args: string[], signal?: AbortSignal): Promise<RunResult> {
  return run('xl', args, { allowFailure: true, signal });
}

async function domainExists(name: string): Promise<boolean> {
  return (await xl(['domid', name])).exitCode === 0;
}

async function domainId(name: string): Promise<number | undefined> {
  const result = await xl(['domid', name]);
  const domid = Number(result.stdout.trim());
  return result.exitCode === 0 && Number.isInteger(domid) ? domid : undefined;
}

/** The lines of the hypervisor's log (`xl dmesg`) about one domain, the last 16 (a register dump is 15). */
async function hypervisorLines(domid: number): Promise<string[]> {
  const result = await xl(['dmesg']);
  return result.exitCode === 0 ? linesAboutDomain(result.stdout, domid).slice(-16) : [];
}

/**
 * Xen names a domain `d5`, `d5v0` (its vcpu 0) or `Dom5` / `Domain 5`; a
 * register dump that follows a line about it (a triple fault's) is about it too.
 */
export function linesAboutDomain(log: string, domid: number): string[] {
  const about = new RegExp(`\\b(d${domid}(v\\d+)?|dom(ain)? ?${domid})\\b`, 'i');
  const lines: string[] = [];
  let dump = false;
  for (const line of log.split('\n')) {
    if (about.test(line)) {
      lines.push(line.trimEnd());
      dump = true;
    } else if (dump && /^\(XEN\)\s+(\S+:\s|----|CPU:|RIP:|RFLAGS:)/.test(line)) {
      lines.push(line.trimEnd());
    } else dump = false;
  }
  return lines;
}

/**
 * xl's failure as a ToolstackError with xl's own words: a configuration xl
 * cannot parse is the user's (E_XL_CONFIG), a toolstack that cannot reach
 * the hypervisor or xenstore is the host's, anything else a failure.
 */
export function xlFailure(verb: string, what: string, result: RunResult, config?: string, code = 'E_XL'): ToolstackError {
  const said = `${result.stderr}\n${result.stdout}`
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line !== '' && !/^Parsing config from /.test(line));
  const message = said.slice(-12).join('\n') || `exit status ${result.exitCode}`;
  if (/config parsing error|Failed to parse config|unknown .* in config|syntax error/i.test(message)) {
    return new ToolstackError('E_XL_CONFIG', `xl could not use the configuration of ${what}${config ? ` (${config})` : ''}:\n${message}`, {
      kind: 'user',
      hint: 'the lines added with extraLines (or the image) are not valid xl.cfg(5)',
    });
  }
  if (/xenstore|libxl_ctx_alloc|cannot init xl context|Permission denied|privcmd/i.test(message)) {
    return new ToolstackError('E_NOT_DOM0', `xl ${verb} ${what}: xl cannot reach Xen:\n${message}`, { kind: 'host', hint: 'run as root in dom0, with xenstored and xenconsoled started (/etc/init.d/xen start)' });
  }
  return new ToolstackError(code, `xl ${verb} ${what} failed:\n${message}`, { hint: config ? `the configuration: ${config}` : undefined });
}

async function writeRecord(dir: string, record: XenVmRecord): Promise<void> {
  // Written whole and renamed, so that another process never reads half a record.
  const temp = join(dir, `.vm.json.${process.pid}`);
  await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`);
  await rename(temp, join(dir, 'vm.json'));
}

async function readSaved(file: string): Promise<SavedXenVm> {
  try {
    await access(file);
    const saved = JSON.parse(await readFile(`${file}.json`, 'utf8')) as SavedXenVm;
    if (saved.backend !== 'xen') throw new Error('not xen');
    return saved;
  } catch {
    throw new ToolstackError('E_NO_SAVED_STATE', `${file} (and ${file}.json) is not a Xen domain saved by tinyx`, { kind: 'user', hint: 'save one with: tinyx save ID FILE' });
  }
}
