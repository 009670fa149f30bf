import { readFile, rm } from 'node:fs/promises';
import { TinyxError, quoteLines, type BootableImage, type Readiness } from '@tinyx/image';
import { releaseLease } from '../bridge.js';
import type { ReadyTimes, Vm, VmDescription, VmOrigin, VmState } from '../machine.js';
import { notReady, waitUntilReady, type ReadyTarget } from '../readiness.js';
import { runtimeDir } from '../runtime.js';
import { writeStateFile, type SavedXen } from '../state-file.js';
import { writeRecord, type XenRecord } from '../store.js';
import { domainExists, hypervisorLines, xl, xlFailure } from './xl.js';
import { domainState, parseXlListTable } from './xl-list.js';

/** A domain created by the xen backend. */
export class XenVm implements Vm, ReadyTarget {
  readonly backend = 'xen';
  readonly endCheckMs = 1000;
  readonly pollMs = 20;
  private destroyed = false;
  private exitWatch: Promise<number | null> | undefined;

  constructor(
    readonly record: XenRecord,
    readonly image: BootableImage,
    readonly dir: string,
    /** performance.now() when xl started creating it: the origin of waitReady's times (a claim from the pool moves it to the request). */
    public startedAt: number,
    /** Where this process got it from, and how long that took; null for a VM found by id. */
    public origin: { from: VmOrigin; instantiationMs: number } | null = null,
  ) {}

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

  describe(): VmDescription {
    const { record } = this;
    return {
      id: record.id,
      backend: 'xen',
      image: record.imageDir,
      name: record.name,
      guest: record.type,
      // The column says how the VM runs: a Xen domain of type pvh or pv, and whether it waits in the pool.
      runsAs: `xen-${record.type}${record.pooled ? ' (pool)' : ''}`,
      accel: null,
      memoryMiB: record.memoryMiB,
      vcpus: record.vcpus,
      address: record.network.address,
      bridge: record.network.bridge,
      forwards: [],
      pid: null,
      pooled: record.pooled,
      console: this.consoleFile,
      origin: this.origin?.from ?? (record.restored ? 'restored' : 'created'),
      instantiationMs: this.origin?.instantiationMs ?? null,
      started: new Date(record.startedAtEpochMs).toISOString(),
    };
  }

  /** Rewrites vm.json (the pool marks a claimed VM as no longer pooled). */
  async update(change: Partial<Pick<XenRecord, 'pooled' | 'startedAtEpochMs'>>): Promise<void> {
    Object.assign(this.record, change);
    await writeRecord(this.record);
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
      throw new TinyxError('E_VM_GONE', `${this.id}: its domain no longer exists`, { kind: 'user', hint: `remove what it left with: tinyx stop ${this.id}` });
    }
    throw xlFailure(verb, this.id, result);
  }

  async console(): Promise<string> {
    return readFile(this.consoleFile, 'utf8').catch(() => '');
  }

  /** Resolves (null: a domain has no exit status) once the domain has ended; asked of xl once a second. */
  get exited(): Promise<number | null> {
    this.exitWatch ??= (async () => {
      while ((await this.state()) !== 'stopped') await new Promise((resolve) => setTimeout(resolve, 1000));
      return null;
    })();
    return this.exitWatch;
  }

  /**
   * Writes the domain's state to `file` with `xl save`, and `file.json` with
   * what restore needs. xl ends the domain once saved, and this VM is then
   * gone (its lease and files removed); with `keep` (`xl save -c`) it runs on.
   */
  async save(file: string, options: { keep?: boolean } = {}): Promise<void> {
    const { record } = this;
    const saved: SavedXen = { backend: 'xen', id: this.id, imageDir: this.image.dir, type: record.type, memoryMiB: record.memoryMiB, vcpus: record.vcpus, network: record.network, hotplug: record.hotplug };
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

  endpoint(guestPort: number): { host: string; port: number } {
    return { host: this.address, port: guestPort };
  }

  async ended(): Promise<string | undefined> {
    return (await domainExists(this.id)) ? undefined : 'the domain ended before it was ready';
  }

  waitReady(probe: Readiness | null = this.image.readiness, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ReadyTimes> {
    return waitUntilReady(this, probe, options);
  }

  async failure(what: string): Promise<TinyxError> {
    // A guest that dies before its console works (a triple fault in early boot) is explained only by the hypervisor.
    const said = this.record.domid === undefined ? [] : await hypervisorLines(this.record.domid);
    const sections = said.length > 0 ? [`the hypervisor about domain ${this.record.domid} (xl dmesg):`, quoteLines(said)] : [];
    return notReady(`${this.image.name} (${this.id})`, what, await this.console(), this.consoleFile, sections);
  }

  /** A domain outlives the process that made it: nothing to let go of. */
  release(): void {}

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
