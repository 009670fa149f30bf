import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TinyxError, type BootableImage, type Readiness } from '@tinyx/image';
import type { AccelChoice } from '../accel.js';
import { releaseNic } from '../bridge.js';
import type { ReadyTimes, Vm, VmDescription, VmOrigin, VmState } from '../machine.js';
import { consoleTail, notReady, waitUntilReady, type ReadyTarget } from '../readiness.js';
import { runtimeDir } from '../runtime.js';
import { checkStateFile, writeStateFile, type SavedQemu } from '../state-file.js';
import type { QemuRecord } from '../store.js';
import { shellQuote } from './argv.js';
import { QmpClient } from './qmp.js';

/** A QEMU process running one image; found again by id from any process through its record. */
export class QemuVm implements Vm, ReadyTarget {
  readonly backend = 'qemu';
  readonly endCheckMs = 0;
  readonly pollMs = 5;
  private exitCode: number | null | undefined;
  private exitWatch: Promise<number | null> | undefined;
  private destroyed = false;

  constructor(
    readonly record: QemuRecord,
    readonly image: BootableImage,
    readonly dir: string,
    private readonly qmp: QmpClient | undefined,
    /** performance.now() when QEMU was started (or attached to): the origin of every boot time. */
    readonly startedAt: number,
    /** Our child's exit, or undefined for a VM attached to by id (then watched by polling, and only when asked). */
    childExit: Promise<number | null> | undefined,
    private readonly instantiationMs: number | null = null,
  ) {
    if (childExit) {
      this.exitWatch = childExit;
      void childExit.then((code) => (this.exitCode = code));
    }
  }

  /** Resolves with QEMU's exit code (null when it is not our child) once the process is gone. */
  get exited(): Promise<number | null> {
    this.exitWatch ??= new Promise<number | null>((resolve) => {
      const poll = (): void => {
        if (!this.alive()) {
          this.exitCode ??= null;
          resolve(null);
        } else setTimeout(poll, 100);
      };
      poll();
    });
    return this.exitWatch;
  }

  get id(): string {
    return this.record.id;
  }

  get accel(): AccelChoice {
    return this.record.accel;
  }

  get forwards(): { host: number; guest: number }[] {
    return this.record.forwards;
  }

  get restored(): boolean {
    return this.record.restored;
  }

  get imageDir(): string {
    return this.image.dir;
  }

  get consoleFile(): string {
    return join(this.dir, 'console.log');
  }

  describe(): VmDescription {
    const { record } = this;
    const origin: VmOrigin = record.restored ? 'restored' : 'created';
    return {
      id: record.id,
      backend: 'qemu',
      image: record.imageDir,
      name: record.name,
      guest: record.machine,
      runsAs: record.accel.accel,
      accel: record.accel,
      memoryMiB: record.memoryMiB,
      vcpus: record.vcpus,
      address: record.network?.address ?? null,
      bridge: record.network?.bridge ?? null,
      forwards: record.forwards,
      pid: record.pid,
      pooled: false,
      console: this.consoleFile,
      origin,
      instantiationMs: this.instantiationMs,
      started: new Date(record.startedAtEpochMs).toISOString(),
    };
  }

  /** The QEMU of this VM is alive: the pid exists and is still this VM's QEMU (its command line names the VM's directory). */
  private alive(): boolean {
    if (this.exitCode !== undefined) return false;
    try {
      return readFileSync(`/proc/${this.record.pid}/cmdline`, 'utf8').includes(this.dir);
    } catch {
      return false;
    }
  }

  /** One QMP command: on the owner's connection, or for a VM attached to by id, on a short connection of its own. */
  private async command(name: string, args?: Record<string, unknown>): Promise<unknown> {
    if (!this.alive()) {
      throw new TinyxError('E_VM_GONE', `${this.id}: its QEMU is no longer running`, { kind: 'user', hint: `remove what it left with: tinyx stop ${this.id}` });
    }
    if (this.qmp) return this.qmp.execute(name, args);
    const client = await QmpClient.connect(join(this.dir, 'ctl.sock'), 5000);
    try {
      return await client.execute(name, args);
    } finally {
      client.close();
    }
  }

  async state(): Promise<VmState> {
    if (!this.alive()) return this.exitCode ? 'crashed' : 'stopped';
    const status = (await this.command('query-status')) as { status: string; running: boolean };
    return status.running ? 'running' : status.status === 'guest-panicked' ? 'crashed' : 'paused';
  }

  async pause(): Promise<void> {
    await this.command('stop');
  }

  async unpause(): Promise<void> {
    await this.command('cont');
  }

  async console(): Promise<string> {
    return readFile(this.consoleFile, 'utf8').catch(() => '');
  }

  /**
   * Writes the VM's whole state to `file` (QMP migrate to a file, the VM
   * paused first), and `file.json` with what restore needs; then stops the
   * VM, or with `keep` lets it run on.
   */
  async save(file: string, options: { keep?: boolean } = {}): Promise<void> {
    // Refused before the VM is paused: FILE must be new or a state tinyx saved.
    await checkStateFile(file);
    const saved: SavedQemu = {
      backend: 'qemu',
      imageDir: this.image.dir,
      memoryMiB: this.record.memoryMiB,
      vcpus: this.record.vcpus,
      machine: this.record.machine,
      ...(this.record.network ? { network: { address: this.record.network.address, mac: this.record.network.mac } } : {}),
    };
    await writeStateFile(
      file,
      async (temp) => {
        await this.command('stop');
        // umask: the guest's memory is never readable by others, not even while it is written.
        await this.command('migrate', { uri: `exec:umask 077 && cat > ${shellQuote(temp)}` });
        await this.waitMigration('save');
      },
      saved,
    );
    if (options.keep) await this.command('cont');
    else await this.destroy();
  }

  /** After -incoming: waits until the state is loaded and the guest runs. */
  async waitForIncoming(timeoutMs = 60_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.exitCode !== undefined) throw await this.failure(`QEMU exited while loading the saved state (status ${this.exitCode})`);
      const status = (await this.command('query-status')) as { status: string; running: boolean };
      if (status.running) return;
      if (status.status === 'paused' || status.status === 'postmigrate') {
        await this.command('cont');
        return;
      }
      if (performance.now() > deadline) throw await this.failure('the saved state did not load in time');
      await sleep(20);
    }
  }

  private async waitMigration(what: string): Promise<void> {
    for (;;) {
      const info = (await this.command('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (info.status === 'completed') return;
      if (info.status === 'failed' || info.status === 'cancelled') throw new TinyxError('E_SAVE', `${what} of ${this.id} failed: ${info['error-desc'] ?? info.status}`);
      await sleep(20);
    }
  }

  /** The host port that forwards to a guest port (user-mode network). */
  hostPort(guest: number): number | undefined {
    return this.forwards.find((f) => f.guest === guest)?.host;
  }

  endpoint(guest: number): { host: string; port: number } | undefined {
    if (this.record.network) return { host: this.record.network.address, port: guest };
    const port = this.hostPort(guest);
    return port === undefined ? undefined : { host: '127.0.0.1', port };
  }

  async ended(): Promise<string | undefined> {
    return this.exitCode === undefined ? undefined : `the VM stopped before it was ready (QEMU exit status ${this.exitCode})`;
  }

  waitReady(probe: Readiness | null = this.image.readiness, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ReadyTimes> {
    return waitUntilReady(this, probe, options);
  }

  async failure(what: string): Promise<TinyxError> {
    const qemuLog = (await readFile(join(this.dir, 'qemu.log'), 'utf8').catch(() => '')).trim();
    return notReady(this.image.name, what, await this.console(), this.consoleFile, qemuLog ? [`qemu: ${qemuLog}`] : []);
  }

  release(): void {
    this.qmp?.close();
  }

  /** Stops QEMU (QMP quit, then SIGKILL) and removes the VM's runtime files. Safe to call twice. */
  async destroy(): Promise<void> {
    if (!this.destroyed) {
      this.destroyed = true;
      if (this.alive()) {
        await Promise.race([this.command('quit').catch(() => undefined), delay(2000)]);
        const quit = await Promise.race([this.exited.then(() => true), delay(3000).then(() => false)]);
        if (!quit) process.kill(this.record.pid, 'SIGKILL');
        await this.exited;
      }
      this.qmp?.close();
    }
    if (this.record.network) await releaseNic(this.record.network, runtimeDir());
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** QEMU's exit at start (before QMP answered), with its own words and the console's tail. */
export async function startFailure(dir: string, code: number | null): Promise<TinyxError> {
  const qemuLog = (await readFile(join(dir, 'qemu.log'), 'utf8').catch(() => '')).trim();
  // Status 0 is the guest resetting (a panic with panic=-1, or /init's reboot) before QMP answered.
  const console = consoleTail(await readFile(join(dir, 'console.log'), 'utf8').catch(() => ''), 10);
  return new TinyxError('E_QEMU', `QEMU exited at start (status ${code}): ${qemuLog || 'no message'}${console ? `\nconsole (last lines):\n${console}` : ''}`);
}

/** A pause in a polling loop: it keeps the process alive, as the loop's caller waits on it. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A timer that does not keep the process alive once everything else is done (a bound on a race). */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
