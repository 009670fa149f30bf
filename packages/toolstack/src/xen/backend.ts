import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MEMORY_MIB, SUBPROCESS_PATH, TinyxError, chooseGuest, findOnPath, kernelFor, openImage, type BootableImage } from '@tinyx/image';
import { ensureBridge, leaseAddress, MAC_PREFIX, macFor, releaseLease, type BridgeConfig } from '../bridge.js';
import type { Backend, CreateOptions } from '../machine.js';
import { runtimeDir, vmDir } from '../runtime.js';
import { readSavedState } from '../state-file.js';
import { listRecords, readRecord, recordedImage, writeRecord, type XenNic, type XenRecord } from '../store.js';
import { DEFAULT_XEN_BRIDGE, xenDomainConfig } from './domain-config.js';
import { blockScript, vifScript, type Hotplug } from './hotplug.js';
import { XenPool } from './pool.js';
import { refillInBackground } from './refill.js';
import { XenVm } from './vm.js';
import { domainExists, domainId, xl, xlFailure } from './xl.js';
import { parseXlListLong, type XlDomain } from './xl-list.js';

/** Where xenconsoled writes each guest's console when started with --log=guest (Debian's default --log-dir). */
export const DEFAULT_XEN_CONSOLE_DIR = '/var/log/xen/console';

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

/** What create and restore share, once the image and the guest type are known. */
interface DomainSpec {
  type: 'pvh' | 'pv';
  memoryMiB: number;
  vcpus: number;
  hotplug: Hotplug;
  signal: AbortSignal | undefined;
  restoreNic?: XenNic;
  /** Writes what xl needs and returns its arguments. */
  xl: (record: XenRecord) => Promise<string[]>;
  restored: boolean;
  requested: number;
  onStarted?: CreateOptions['onStarted'];
}

/**
 * The xen backend: each VM is a domain created by `xl` from an xl.cfg (the
 * renderer of @tinyx/image), with a vif on a bridge and an address leased the
 * same way as the qemu backend's bridged VMs. Runs in dom0, as root. Creating
 * a running domain takes one waiting in the pool when there is one (the split
 * toolstack: pool.ts), else makes one.
 */
export class XenBackend implements Backend {
  readonly name = 'xen';
  readonly consoleDir: string;
  readonly bridge: BridgeConfig;
  private poolOfBackend: XenPool | undefined;
  private readonly defaultHotplug: Hotplug | undefined;
  private readonly defaultExtraLines: readonly string[] | undefined;

  constructor(readonly options: XenBackendOptions = {}) {
    this.consoleDir = options.consoleDir ?? process.env.TINYX_XEN_CONSOLE_DIR ?? DEFAULT_XEN_CONSOLE_DIR;
    this.bridge = options.bridge ?? DEFAULT_XEN_BRIDGE;
    this.defaultHotplug = options.hotplug;
    this.defaultExtraLines = options.extraLines;
  }

  /** The pool of paused domains (pool.ts), made on first use: the runtime directory is checked then, not when the registry loads. */
  get pool(): XenPool {
    this.poolOfBackend ??= new XenPool(this);
    return this.poolOfBackend;
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
    throw new TinyxError('E_USAGE', `TINYX_XEN_HOTPLUG=${fromEnv}: it takes xen (Xen's own vif script) or lean (tinyx's)`, { kind: 'user' });
  }

  async unavailable(): Promise<string | undefined> {
    return (await this.missing())?.message;
  }

  private async missing(): Promise<TinyxError | undefined> {
    if (!(await findOnPath('xl', SUBPROCESS_PATH))) {
      return new TinyxError('E_NO_XL', 'xl (the Xen toolstack) is not installed', { kind: 'host', hint: 'apt-get install xen-system-amd64 (the hypervisor and xl, Debian) and boot the machine with Xen; or use --backend qemu' });
    }
    const capabilities = await readFile('/proc/xen/capabilities', 'utf8').catch(() => undefined);
    if (capabilities === undefined) {
      return new TinyxError('E_NOT_DOM0', 'this host is not running on Xen (no /proc/xen/capabilities)', {
        kind: 'host',
        hint: 'boot the machine with the Xen hypervisor and run tinyx in dom0 (test/xen boots one inside QEMU), or use --backend qemu',
      });
    }
    if (!capabilities.includes('control_d')) {
      return new TinyxError('E_NOT_DOM0', 'this is a Xen guest, not dom0: only dom0 can create domains', { kind: 'host', hint: 'run tinyx in dom0' });
    }
    if (process.getuid?.() !== 0) return new TinyxError('E_NOT_ROOT', 'xl needs root', { kind: 'host', hint: 'run as root in dom0' });
    return undefined;
  }

  private async requireXen(): Promise<void> {
    const missing = await this.missing();
    if (missing) throw missing;
  }

  /** The image and the guest type a create boots it as; refused when it is not a Xen image. */
  async openImage(imageDir: string, guest: string | undefined): Promise<{ image: BootableImage; type: 'pvh' | 'pv' }> {
    const image = await openImage(imageDir);
    if (image.facts.backend !== this.name) {
      throw new TinyxError('E_PLATFORM', `${image.name} was built for ${image.platform}; the xen backend boots xen-pvh and xen-pv images`, {
        kind: 'user',
        hint: `build it for Xen: tinyx build ${image.name} --platform xen-pvh`,
      });
    }
    return { image, type: chooseGuest(image, guest) as 'pvh' | 'pv' };
  }

  /**
   * A domain of the image: one waiting in the pool when one of this shape
   * does (unpaused), else created with `xl create` (paused with `paused`, and
   * then never taken from the pool).
   */
  async create(imageDir: string, options: CreateOptions = {}): Promise<XenVm> {
    const requested = performance.now();
    if (options.publish?.length) {
      throw new TinyxError('E_USAGE', '--publish forwards ports of QEMU\'s user-mode network; a Xen domain has an address of its own', { kind: 'user', hint: 'drop --publish and reach the domain at its address (tinyx run prints it)' });
    }
    const { image, type } = await this.openImage(imageDir, options.guest);
    const xen = options.xen ?? {};
    const shape = { type, memoryMiB: options.memoryMiB ?? DEFAULT_MEMORY_MIB, vcpus: options.vcpus ?? 1 };
    // A pooled domain booted with the plain command line: one that asks for more is made anew.
    if (!options.paused && xen.pool !== false && !options.kernelArgs?.length) {
      const pooled = await this.pool.take(image.dir, shape, requested);
      if (pooled) {
        if (xen.refill) refillInBackground(this.options, image.dir, shape);
        return pooled;
      }
    }
    const kernel = kernelFor(image, type);
    await this.requireXen();
    return this.start(image, `${image.name}-${randomBytes(3).toString('hex')}`, {
      ...shape,
      hotplug: xen.hotplug ?? this.hotplug,
      signal: options.signal,
      xl: async (record) => {
        await requireFile(kernel, 'kernel');
        await requireFile(image.rootfs, 'root filesystem');
        const script = xen.vifScript ?? (await vifScript(record.hotplug, runtimeDir()));
        const diskScript = image.rootAs === 'disk' ? await blockScript(record.hotplug, runtimeDir()) : undefined;
        const extraLines = [...this.extraLines, ...(xen.extraLines ?? [])];
        await writeFile(record.config, xenDomainConfig(image, record, { extraLines, vifScript: script, blockScript: diskScript, kernelArgs: options.kernelArgs }));
        return ['create', ...(options.paused ? ['-p'] : []), record.config];
      },
      restored: false,
      requested,
      onStarted: options.onStarted,
    });
  }

  /**
   * A domain again from a file written by XenVm.save: `xl restore` with the
   * configuration xl kept in the file (the same name, MAC and, in the saved
   * memory, the same address, which is leased again).
   */
  async restore(file: string, options: CreateOptions = {}): Promise<XenVm> {
    const requested = performance.now();
    const saved = await readSavedState(file);
    if (saved.backend !== 'xen') throw new TinyxError('E_NO_SAVED_STATE', `${file} holds a ${saved.backend} VM, not a Xen domain`, { kind: 'user', hint: `restore it with: tinyx restore ${file} --backend ${saved.backend}` });
    const { image } = await this.openImage(saved.imageDir, saved.type);
    await this.requireXen();
    if (await readFile(join(vmDir(saved.id), 'vm.json')).then(() => true, () => false)) {
      throw new TinyxError('E_RESTORE', `${saved.id} (saved in ${file}) is running already`, { kind: 'user', hint: `stop it first: tinyx stop ${saved.id}` });
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
        // The saved configuration names the lean scripts' paths: they are written again if the runtime directory was emptied since (a reboot of dom0).
        if (saved.hotplug) await vifScript(saved.hotplug, runtimeDir());
        if (saved.hotplug && image.rootAs === 'disk') await blockScript(saved.hotplug, runtimeDir());
        return ['restore', ...(options.paused ? ['-p'] : []), file];
      },
      restored: true,
      requested,
    });
  }

  /**
   * What create and restore share: the runtime directory, the lease, the
   * record, then xl; on any failure (xl's included, and Ctrl-C) the domain,
   * the lease and the directory are removed again.
   */
  private async start(image: BootableImage, id: string, spec: DomainSpec): Promise<XenVm> {
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
      address = await leaseAddress(id, runtime, bridge, nic?.address);
      const record: XenRecord = {
        backend: 'xen',
        id,
        imageDir: image.dir,
        name: image.name,
        platform: image.platform,
        type: spec.type,
        memoryMiB: spec.memoryMiB,
        vcpus: spec.vcpus,
        network: { bridge: bridge.bridge, address, prefixLength: bridge.prefixLength, gateway: bridge.gateway, mac: nic?.mac ?? macFor(id, MAC_PREFIX.xen) },
        hotplug: spec.hotplug,
        config: join(dir, 'xl.cfg'),
        consoleLog: join(this.consoleDir, `guest-${id}.log`),
        restored: spec.restored,
        pooled: false,
        startedAtEpochMs: Date.now(),
      };
      const args = await spec.xl(record);
      await writeRecord(record);
      // A console log left by an earlier domain of the same name (a restore) is not this one's.
      await rm(record.consoleLog, { force: true });
      xlStarted = true;
      // Boot times count from xl's start; a domain from the pool counts from the request (pool.ts).
      const startedAt = performance.now();
      spec.onStarted?.({ consoleFile: record.consoleLog, startedAt });
      const result = await xl(args, spec.signal);
      if (result.exitCode !== 0) throw xlFailure(args[0]!, id, result, record.config);
      // Asked while the guest boots (a created domain runs already): it does not delay readiness.
      record.domid = await domainId(id);
      await writeRecord(record);
      const from = spec.restored ? 'restored' : 'created';
      return new XenVm(record, image, dir, startedAt, { from, instantiationMs: Math.round(performance.now() - spec.requested) });
    } catch (error) {
      // xl removes a domain it failed to build, but not always one whose devices failed after the build.
      if (xlStarted && (await domainExists(id))) await xl(['destroy', id]).catch(() => undefined);
      if (address) await releaseLease(address, runtime);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Every xen VM in the runtime store (this process's and other processes'), pooled ones included. */
  async list(): Promise<XenVm[]> {
    const vms: XenVm[] = [];
    for (const record of await listRecords('xen')) vms.push(await this.attach(record as XenRecord));
    return vms;
  }

  /** A xen VM by id. */
  async get(id: string): Promise<XenVm> {
    const record = await readRecord(id);
    if (record.backend !== 'xen') throw new TinyxError('E_NO_VM', `${id} is a ${record.backend} VM, not a xen one`, { kind: 'user' });
    return this.attach(record);
  }

  private async attach(record: XenRecord): Promise<XenVm> {
    return new XenVm(record, await recordedImage(record), vmDir(record.id), performance.now());
  }

  /** Every domain xl knows (`xl list -l`), tinyx's or not. */
  async domains(): Promise<XlDomain[]> {
    await this.requireXen();
    const listed = await xl(['list', '-l']);
    if (listed.exitCode !== 0) throw xlFailure('list', 'the domains', listed);
    return parseXlListLong(listed.stdout);
  }
}

async function requireFile(path: string, what: string): Promise<void> {
  await access(path).catch(() => {
    throw new TinyxError('E_KERNEL_MISSING', `${path} is missing (the ${what} xl would load)`, { kind: 'user', hint: 'build the image again' });
  });
}
