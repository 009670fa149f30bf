import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { detectAccel, type AccelChoice, type Accelerator } from './accel.js';
import { attachNic, releaseNic, type BridgedNic } from './bridge.js';
import { ToolstackError } from './errors.js';
import { readImage, type ImageDirectory, type ReadinessProbe } from './image.js';
import { probeHttp, probeTcp } from './probe.js';
import { runtimeDir, vmDir } from './runtime.js';
import { checkStateFile, writeStateFile } from './state-file.js';
import { QmpClient } from './qmp.js';
import { qemuArgv, shellQuote } from './qemu-argv.js';
import type { Backend, CreateOptions, Vm, VmState } from './vm.js';

/** What the image's /init prints once the app listens (the builder's READY_LINE). */
const READY_LINE = 'tinyx: ready';
const QEMU = 'qemu-system-x86_64';
/** QEMU's user-mode network: the guest's address and gateway, given to /init on the command line. */
const USER_NET = 'tinyx.ip=10.0.2.15/24 tinyx.gw=10.0.2.2';

export interface QemuOptions extends CreateOptions {
  /** Leave QEMU running when this process exits (tinyx run --detach). */
  detach?: boolean;
  /** auto: KVM when the host can run a Linux guest with it, else TCG. */
  accel?: Accelerator | 'auto';
  /** microvm (virtio-mmio, the default) or q35 (virtio-pci). */
  machine?: 'microvm' | 'q35';
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
}

export { runtimeDir };

/** Whether 127.0.0.1:port can be bound now (QEMU's forward would fail on a port in use, with a message that names no option). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free TCP port on the loopback, for a forward the user did not name. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export class QemuBackend implements Backend {
  readonly name = 'qemu';
  private readonly vms = new Set<QemuVm>();

  async unavailable(): Promise<string | undefined> {
    for (const dir of ['/usr/bin', '/usr/local/bin']) {
      if (await access(join(dir, QEMU), constants.X_OK).then(() => true, () => false)) return undefined;
    }
    return `${QEMU} is not installed (apt-get install qemu-system-x86)`;
  }

  async create(imageDir: string, options: QemuOptions = {}): Promise<QemuVm> {
    const image = await readImage(imageDir);
    if (image.platform !== 'kvm') {
      throw new ToolstackError('E_PLATFORM', `${image.name} was built for ${image.platform}; the qemu backend boots kvm images`, { kind: 'user', hint: `build it for QEMU: tinyx build ${image.name} --platform kvm` });
    }
    const missing = await this.unavailable();
    if (missing) throw new ToolstackError('E_NO_QEMU', missing, { kind: 'host', hint: 'tinyx doctor --fix' });
    const accel = options.accel && options.accel !== 'auto' ? { accel: options.accel, reason: 'chosen with --accel' } : await detectAccel();
    const vm = await QemuVm.start(image, accel, options);
    this.vms.add(vm);
    vm.exited.then(() => this.vms.delete(vm)).catch(() => undefined);
    return vm;
  }

  /** Every VM in the runtime directory: this process's and those started with --detach elsewhere. */
  async list(): Promise<QemuVm[]> {
    const ids = await readdir(runtimeDir()).catch(() => [] as string[]);
    const vms: QemuVm[] = [];
    // .leases holds the bridged network's address leases, .pool the xen backend's pool: not VMs.
    for (const id of ids.filter((name) => !name.startsWith('.')).sort()) {
      const own = [...this.vms].find((vm) => vm.id === id);
      if (own) vms.push(own);
      else vms.push(...(await QemuVm.attach(id).then((vm) => [vm], () => [] as QemuVm[])));
    }
    return vms;
  }

  /** A VM by id (see list). */
  async get(id: string): Promise<QemuVm> {
    return [...this.vms].find((vm) => vm.id === id) ?? QemuVm.attach(id);
  }

  /**
   * Starts a VM from a file written by `save`: the same image and machine,
   * QEMU started with -incoming, running again once the state is loaded.
   */
  async restore(file: string, options: QemuOptions = {}): Promise<QemuVm> {
    const saved = await readSaved(file);
    const image = await readImage(saved.imageDir);
    const accel = options.accel && options.accel !== 'auto' ? { accel: options.accel, reason: 'chosen with --accel' } : await detectAccel();
    // The guest's address is part of its saved memory: a bridged VM comes back with the same address and MAC.
    const vm = await QemuVm.start(image, accel, {
      ...options,
      memoryMiB: saved.memoryMiB,
      machine: saved.machine,
      vcpus: saved.vcpus,
      incoming: file,
      network: saved.network ? 'bridge' : 'user',
      ...(saved.network ? { nic: { address: saved.network.address, mac: saved.network.mac } } : {}),
    });
    this.vms.add(vm);
    vm.exited.then(() => this.vms.delete(vm)).catch(() => undefined);
    await vm.waitForIncoming();
    return vm;
  }
}

/** What a VM's runtime directory says about it (vm.json): enough to find it again from another process. */
export interface VmRecord {
  id: string;
  pid: number;
  imageDir: string;
  name: string;
  accel: AccelChoice;
  forwards: { host: number; guest: number }[];
  memoryMiB: number;
  vcpus: number;
  machine: 'microvm' | 'q35';
  /** The tap, bridge and address of a bridged VM; absent on the user-mode network. */
  network?: BridgedNic;
  restored: boolean;
  /** Wall-clock start, for `tinyx ps`. */
  startedAtEpochMs: number;
}

export class QemuVm implements Vm {
  readonly backend = 'qemu';
  private exitCode: number | null | undefined;
  private exitWatch: Promise<number | null> | undefined;
  private destroyed = false;

  private constructor(
    readonly record: VmRecord,
    readonly image: ImageDirectory,
    readonly dir: string,
    private readonly qmp: QmpClient | undefined,
    /** performance.now() when QEMU was started (or attached to): the origin of every boot time. */
    readonly startedAt: number,
    /** Our child's exit, or undefined for a VM attached to by id (then watched by polling, and only when asked). */
    childExit: Promise<number | null> | undefined,
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
        if (!isAlive(this.record.pid, this.dir)) {
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

  /** Started from a saved state: its console begins after the ready line, so only the network probe counts. */
  get restored(): boolean {
    return this.record.restored;
  }

  get imageDir(): string {
    return this.image.dir;
  }

  get consoleFile(): string {
    return join(this.dir, 'console.log');
  }

  static async start(
    image: ImageDirectory,
    accel: AccelChoice,
    options: QemuOptions & { incoming?: string; detach?: boolean; nic?: { address: string; mac: string } },
  ): Promise<QemuVm> {
    const bridged = options.network === 'bridge';
    if (bridged && options.publish?.length) {
      throw new ToolstackError('E_USAGE', '--publish forwards ports of the user-mode network; a bridged VM has an address of its own', {
        kind: 'user',
        hint: 'drop --publish and reach the VM at its address (tinyx run prints it), or use --network user',
      });
    }
    // Checked before anything is made: nothing to undo.
    for (const f of options.publish ?? []) {
      if (!(await portFree(f.host))) {
        throw new ToolstackError('E_PORT_IN_USE', `--publish ${f.host}:${f.guest}: 127.0.0.1:${f.host} is in use by another program`, {
          kind: 'user',
          hint: `choose another host port, e.g. --publish ${f.host + 1}:${f.guest} (ss -ltnp 'sport = :${f.host}' shows who holds it)`,
        });
      }
    }
    const id = `${image.name}-${randomBytes(3).toString('hex')}`;
    const runtime = runtimeDir();
    const dir = vmDir(id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let nic: BridgedNic | undefined;
    try {
      if (bridged) nic = await attachNic(id, runtime, undefined, options.nic);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    const forwards = [...(options.publish ?? [])];
    const guestPort = probePort(image.readiness);
    if (!nic && guestPort !== undefined && !forwards.some((f) => f.guest === guestPort)) forwards.push({ host: await freePort(), guest: guestPort });
    const machine = options.machine ?? 'microvm';
    const kernel = machine === 'microvm' && image.vmlinux ? image.vmlinux : (image.kernel ?? image.vmlinux)!;
    const guestNet = nic ? `tinyx.ip=${nic.address}/${nic.prefixLength} tinyx.gw=${nic.gateway}` : USER_NET;
    const args = qemuArgv({
      machine,
      accel: accel.accel,
      tcgCacheMiB: options.tcgCacheMiB,
      memoryMiB: options.memoryMiB ?? 128,
      vcpus: options.vcpus ?? 1,
      dir,
      kernel,
      initrd: image.initrd,
      guestNet,
      tap: nic ? { name: nic.tap, mac: nic.mac } : undefined,
      forwards: nic ? [] : forwards,
      paused: options.paused,
      incoming: options.incoming,
    });
    const startedAt = performance.now();
    // QEMU's own messages go to a file, so that a detached VM outlives this process without a broken pipe.
    const log = await open(join(dir, 'qemu.log'), 'w');
    const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', log.fd], detached: true });
    await log.close();
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.once('error', () => undefined);
    if (options.detach) child.unref();
    const early = exited.then(async (code) => {
      const qemuLog = (await readFile(join(dir, 'qemu.log'), 'utf8').catch(() => '')).trim();
      // Status 0 is the guest resetting (a panic with panic=-1, or /init's reboot) before QMP answered.
      const console = quotedTail(await readFile(join(dir, 'console.log'), 'utf8').catch(() => ''), 10);
      throw new ToolstackError('E_QEMU', `QEMU exited at start (status ${code}): ${qemuLog || 'no message'}${console ? `\nconsole (last lines):\n${console}` : ''}`);
    });
    let qmp: QmpClient;
    try {
      qmp = await Promise.race([QmpClient.connect(join(dir, 'qmp.sock')), early]);
    } catch (error) {
      child.kill('SIGKILL');
      await exited;
      if (nic) await releaseNic(nic, runtime);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    early.catch(() => undefined);
    const record: VmRecord = {
      id,
      pid: child.pid!,
      imageDir: image.dir,
      name: image.name,
      accel,
      forwards,
      memoryMiB: options.memoryMiB ?? 128,
      vcpus: options.vcpus ?? 1,
      machine,
      ...(nic ? { network: nic } : {}),
      restored: !!options.incoming,
      startedAtEpochMs: Date.now(),
    };
    await writeFile(join(dir, 'vm.json'), `${JSON.stringify(record, null, 2)}\n`);
    return new QemuVm(record, image, dir, qmp, startedAt, exited);
  }

  /**
   * Finds a VM by its id in the runtime directory (started by another
   * process, with --detach). A VM whose QEMU died is returned too: its state
   * says so, and destroy() removes what it left.
   */
  static async attach(id: string): Promise<QemuVm> {
    const dir = vmDir(id);
    let record: VmRecord;
    try {
      record = JSON.parse(await readFile(join(dir, 'vm.json'), 'utf8')) as VmRecord;
    } catch {
      throw new ToolstackError('E_NO_VM', `no VM with id ${id}`, { kind: 'user', hint: 'list them with: tinyx ps' });
    }
    // The runtime directory is shared: a record with another backend's name is that backend's VM.
    const backend = (record as { backend?: string }).backend;
    if (backend !== undefined && backend !== 'qemu') throw new ToolstackError('E_NO_VM', `${id} is a ${backend} VM, not a qemu one`, { kind: 'user' });
    const image = await readImage(record.imageDir).catch(() => ({ dir: record.imageDir, name: record.name, platform: 'kvm', readiness: null, kernel: null, vmlinux: null, initrd: '' }));
    return new QemuVm(record, image, dir, undefined, performance.now(), undefined);
  }

  /** One QMP command: on the owner's connection, or for a VM attached to by id, on a short connection of its own. */
  private async command(name: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.exitCode !== undefined || !isAlive(this.record.pid, this.dir)) {
      throw new ToolstackError('E_VM_GONE', `${this.id}: its QEMU is no longer running`, { kind: 'user', hint: `remove what it left with: tinyx stop ${this.id}` });
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
    if (this.exitCode !== undefined || !isAlive(this.record.pid, this.dir)) return this.exitCode ? 'crashed' : 'stopped';
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
   * Writes the VM's whole state to `file` (QMP migrate to a file; the VM is
   * paused first and stays paused), and `file.json` with what restore needs.
   */
  async save(file: string): Promise<void> {
    // Refused before the VM is paused: FILE must be new or a state tinyx saved.
    await checkStateFile(file);
    const saved: SavedVm = {
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
      if (info.status === 'failed' || info.status === 'cancelled') throw new ToolstackError('E_SAVE', `${what} of ${this.id} failed: ${info['error-desc'] ?? info.status}`);
      await sleep(20);
    }
  }

  /** The host port that forwards to a guest port (user-mode network). */
  hostPort(guest: number): number | undefined {
    return this.forwards.find((f) => f.guest === guest)?.host;
  }

  /** Where the host reaches a guest port: the VM's own address when bridged, else the loopback forward. */
  endpoint(guest: number): { host: string; port: number } | undefined {
    if (this.record.network) return { host: this.record.network.address, port: guest };
    const port = this.hostPort(guest);
    return port === undefined ? undefined : { host: '127.0.0.1', port };
  }

  /**
   * Waits until the app answers: the console's ready line, then the probe
   * through the forwarded port (TCP connect, or HTTP GET answered 2xx). Fails
   * with the console's tail when QEMU exits (a panic or the app's end) or
   * the time runs out.
   */
  async waitReady(probe: ReadinessProbe | null = this.image.readiness, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ ms: number; consoleMs: number | undefined }> {
    const deadline = this.startedAt + (options.timeoutMs ?? 60_000);
    let consoleMs: number | undefined;
    for (;;) {
      if (options.signal?.aborted) throw new ToolstackError('E_INTERRUPTED', 'interrupted', { kind: 'interrupted' });
      if (this.exitCode !== undefined) throw await this.failure(`the VM stopped before it was ready (QEMU exit status ${this.exitCode})`);
      const console = await this.console();
      if (consoleMs === undefined && console.includes(READY_LINE)) consoleMs = performance.now() - this.startedAt;
      if (/Kernel panic/.test(console)) throw await this.failure('the guest kernel panicked');
      const wanted = probe && 'console' in probe ? probe.console.line : READY_LINE;
      let ok = this.restored || console.includes(wanted);
      if (ok && probe && !('console' in probe)) {
        const target = this.endpoint('tcp' in probe ? probe.tcp.port : probe.http.port);
        if (target) {
          if ('tcp' in probe) ok = await probeTcp(target.host, target.port);
          else {
            const status = await probeHttp(target.host, target.port, probe.http.path);
            ok = status !== undefined && status >= 200 && status < 300;
          }
        }
      }
      if (ok) return { ms: Math.round(performance.now() - this.startedAt), consoleMs: consoleMs === undefined ? undefined : Math.round(consoleMs) };
      if (performance.now() > deadline) throw await this.failure(`not ready within ${Math.round((options.timeoutMs ?? 60_000) / 1000)} s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private async failure(what: string): Promise<ToolstackError> {
    const tail = quotedTail(await this.console(), 20);
    const qemuLog = (await readFile(join(this.dir, 'qemu.log'), 'utf8').catch(() => '')).trim();
    return new ToolstackError('E_NOT_READY', `${this.image.name}: ${what}\nconsole (last lines):\n${tail || '  | (empty)'}${qemuLog ? `\nqemu: ${qemuLog}` : ''}`, {
      hint: `the whole console: ${this.consoleFile}`,
    });
  }

  /** Lets go of the VM without stopping it (closes the QMP connection): it runs on, detached. */
  release(): void {
    this.qmp?.close();
  }

  /** Stops QEMU (QMP quit, then SIGKILL) and removes the VM's runtime files. Safe to call twice. */
  async destroy(): Promise<void> {
    if (!this.destroyed) {
      this.destroyed = true;
      if (this.exitCode === undefined && isAlive(this.record.pid, this.dir)) {
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

/** The QEMU of a VM is alive: the pid exists and is still that VM's QEMU (its command line names the VM's directory). */
function isAlive(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

/** The last lines of a console, each prefixed "  | " for an error message; empty for an empty console. */
function quotedTail(text: string, lines: number): string {
  const kept = text.trim();
  return kept ? kept.split('\n').slice(-lines).map((l) => `  | ${l}`).join('\n') : '';
}

/** A pause in a polling loop: it keeps the process alive, as the loop's caller waits on it. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A timer that does not keep the process alive once everything else is done (a bound on a race). */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** What `save` writes next to the state file, and `restore` reads. */
interface SavedVm {
  imageDir: string;
  memoryMiB: number;
  vcpus: number;
  machine: 'microvm' | 'q35';
  network?: { address: string; mac: string };
}

async function readSaved(file: string): Promise<SavedVm> {
  try {
    await access(file);
    return JSON.parse(await readFile(`${file}.json`, 'utf8')) as SavedVm;
  } catch {
    throw new ToolstackError('E_NO_SAVED_STATE', `${file} (and ${file}.json) is not a state saved by tinyx`, { kind: 'user', hint: 'save one with the toolstack: vm.save(file)' });
  }
}


function probePort(probe: ReadinessProbe | null): number | undefined {
  if (!probe || 'console' in probe) return undefined;
  return 'tcp' in probe ? probe.tcp.port : probe.http.port;
}
