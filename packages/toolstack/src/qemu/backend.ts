import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MEMORY_MIB, TinyxError, chooseGuest, kernelFor, logCommand, openImage, probePort, type BootableImage } from '@tinyx/image';
import { detectAccel, hostTscKhz, type AccelChoice } from '../accel.js';
import { attachNic, releaseNic, type BridgedNic } from '../bridge.js';
import type { Backend, CreateOptions } from '../machine.js';
import { runtimeDir, vmDir } from '../runtime.js';
import { readSavedState } from '../state-file.js';
import { listRecords, readRecord, recordedImage, writeRecord, type QemuRecord } from '../store.js';
import { USER_NETWORK, qemuArgv, qemuCmdline } from './argv.js';
import { freePort, portFree } from './ports.js';
import { QmpClient } from './qmp.js';
import { QemuVm, startFailure } from './vm.js';

const QEMU = 'qemu-system-x86_64';

/** What start() needs beyond the create options: a saved state to load, and a bridged VM's address to keep. */
interface StartSpec {
  incoming?: string;
  nic?: { address: string; mac: string };
  requested: number;
}

/** How many times QEMU is started when the probe's forward port was taken in between (ports.ts). */
const PORT_ATTEMPTS = 3;

/** The qemu backend: each VM is a QEMU process (microvm or q35), KVM where the host has it, TCG otherwise. */
export class QemuBackend implements Backend {
  readonly name = 'qemu';
  private readonly vms = new Set<QemuVm>();

  async unavailable(): Promise<string | undefined> {
    for (const dir of ['/usr/bin', '/usr/local/bin']) {
      if (await access(join(dir, QEMU), constants.X_OK).then(() => true, () => false)) return undefined;
    }
    return `${QEMU} is not installed (apt-get install qemu-system-x86)`;
  }

  async create(imageDir: string, options: CreateOptions = {}): Promise<QemuVm> {
    const requested = performance.now();
    const image = await openImage(imageDir);
    if (image.facts.backend !== this.name) {
      throw new TinyxError('E_PLATFORM', `${image.name} was built for ${image.platform}; the qemu backend boots kvm images`, { kind: 'user', hint: `build it for QEMU: tinyx build ${image.name} --platform kvm` });
    }
    const missing = await this.unavailable();
    if (missing) throw new TinyxError('E_NO_QEMU', missing, { kind: 'host', hint: 'tinyx doctor --fix' });
    return this.start(image, options, { requested });
  }

  /** Every QEMU VM in the runtime store: this process's and those started with --detach elsewhere. */
  async list(): Promise<QemuVm[]> {
    const vms: QemuVm[] = [];
    for (const record of await listRecords('qemu')) vms.push(this.own(record.id) ?? (await attach(record as QemuRecord)));
    return vms;
  }

  /** A VM by id (see list). A VM whose QEMU died is returned too: its state says so, and destroy() removes what it left. */
  async get(id: string): Promise<QemuVm> {
    const own = this.own(id);
    if (own) return own;
    const record = await readRecord(id);
    if (record.backend !== 'qemu') throw new TinyxError('E_NO_VM', `${id} is a ${record.backend} VM, not a qemu one`, { kind: 'user' });
    return attach(record);
  }

  /** The VMs this process started that still run: what a program destroys when it is interrupted. */
  started(): QemuVm[] {
    return [...this.vms];
  }

  private own(id: string): QemuVm | undefined {
    return [...this.vms].find((vm) => vm.id === id);
  }

  /**
   * Starts a VM from a file written by `save`: the same image and machine,
   * QEMU started with -incoming, running again once the state is loaded.
   */
  async restore(file: string, options: CreateOptions = {}): Promise<QemuVm> {
    const requested = performance.now();
    const saved = await readSavedState(file);
    if (saved.backend !== 'qemu') throw new TinyxError('E_NO_SAVED_STATE', `${file} holds a ${saved.backend} VM, not a QEMU one`, { kind: 'user', hint: `restore it with: tinyx restore ${file} --backend ${saved.backend}` });
    const image = await openImage(saved.imageDir);
    // The guest's address is part of its saved memory: a bridged VM comes back with the same address and MAC.
    const vm = await this.start(
      image,
      { ...options, memoryMiB: saved.memoryMiB, vcpus: saved.vcpus, guest: saved.machine, qemu: { ...options.qemu, network: saved.network ? 'bridge' : 'user' } },
      { incoming: file, requested, ...(saved.network ? { nic: saved.network } : {}) },
    );
    await vm.waitForIncoming();
    return vm;
  }

  private async start(image: BootableImage, options: CreateOptions, spec: StartSpec): Promise<QemuVm> {
    const qemu = options.qemu ?? {};
    const machine = chooseGuest(image, options.guest) as QemuRecord['machine'];
    const accel: AccelChoice = qemu.accel && qemu.accel !== 'auto' ? { accel: qemu.accel, reason: 'chosen with --accel' } : await detectAccel();
    const bridged = qemu.network === 'bridge';
    if (bridged && options.publish?.length) {
      throw new TinyxError('E_USAGE', '--publish forwards ports of the user-mode network; a bridged VM has an address of its own', {
        kind: 'user',
        hint: 'drop --publish and reach the VM at its address (tinyx run prints it), or use --network user',
      });
    }
    // Checked before anything is made: nothing to undo.
    for (const f of options.publish ?? []) {
      if (!(await portFree(f.host))) {
        throw new TinyxError('E_PORT_IN_USE', `--publish ${f.host}:${f.guest}: 127.0.0.1:${f.host} is in use by another program`, {
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
      if (bridged) nic = await attachNic(id, runtime, undefined, spec.nic);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    const forwards = [...(options.publish ?? [])];
    const guestPort = probePort(image.readiness);
    // The probe's own forward, on a port the kernel just called free: another process (or VM being
    // started) may take it before QEMU binds it, so QEMU is started again on another one when that happens.
    const probeForward = !nic && guestPort !== undefined && !forwards.some((f) => f.guest === guestPort) ? { host: await freePort(), guest: guestPort } : undefined;
    if (probeForward) forwards.push(probeForward);
    const memoryMiB = options.memoryMiB ?? DEFAULT_MEMORY_MIB;
    const vcpus = options.vcpus ?? 1;
    const cmdline = [
      qemuCmdline(image, nic ?? USER_NETWORK, { accel: accel.accel, hostTscKhz: accel.accel !== 'tcg' || qemu.tscKhz === null ? undefined : (qemu.tscKhz ?? (await hostTscKhz())) }),
      ...(options.kernelArgs ?? []),
    ].join(' ');
    let started: { child: ChildProcess; exited: Promise<number | null>; qmp: QmpClient; startedAt: number } | undefined;
    for (let attempt = 1; !started; attempt++) {
      const args = qemuArgv({
        machine,
        accel: accel.accel,
        tcgCacheMiB: qemu.tcgCacheMiB,
        memoryMiB,
        vcpus,
        dir,
        kernel: kernelFor(image, machine),
        root: { as: image.rootAs, file: image.rootfs },
        cmdline,
        tap: nic ? { name: nic.tap, mac: nic.mac } : undefined,
        forwards: nic ? [] : forwards,
        paused: options.paused,
        incoming: spec.incoming,
      });
      // Boot times count from QEMU's start, as a stock VM's are measured (bench/): not the toolstack's preparations before it.
      const startedAt = performance.now();
      // QEMU's own messages go to a file, so that a detached VM outlives this process without a broken pipe.
      const log = await open(join(dir, 'qemu.log'), 'w');
      logCommand(QEMU, args);
      const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', log.fd], detached: true });
      await log.close();
      options.onStarted?.({ consoleFile: join(dir, 'console.log'), startedAt });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.once('error', () => undefined);
      if (qemu.detach) child.unref();
      const early = exited.then(async (code) => {
        throw await startFailure(dir, code);
      });
      try {
        const qmp = await Promise.race([QmpClient.connect(join(dir, 'qmp.sock')), early]);
        early.catch(() => undefined);
        started = { child, exited, qmp, startedAt };
      } catch (error) {
        child.kill('SIGKILL');
        await exited;
        if (probeForward && attempt < PORT_ATTEMPTS && error instanceof TinyxError && error.message.includes(`forwarding rule 'tcp:127.0.0.1:${probeForward.host}-`)) {
          probeForward.host = await freePort();
          continue;
        }
        if (nic) await releaseNic(nic, runtime);
        await rm(dir, { recursive: true, force: true });
        throw error;
      }
    }
    const { child, exited, qmp, startedAt } = started;
    const record: QemuRecord = {
      backend: 'qemu',
      id,
      pid: child.pid!,
      imageDir: image.dir,
      name: image.name,
      platform: image.platform,
      accel,
      forwards,
      memoryMiB,
      vcpus,
      machine,
      ...(nic ? { network: nic } : {}),
      restored: !!spec.incoming,
      startedAtEpochMs: Date.now(),
    };
    await writeRecord(record);
    const vm = new QemuVm(record, image, dir, qmp, startedAt, exited, Math.round(performance.now() - spec.requested));
    this.vms.add(vm);
    vm.exited.then(() => this.vms.delete(vm)).catch(() => undefined);
    return vm;
  }
}

/** A QEMU VM of another process (or one whose QEMU died), from its record. */
async function attach(record: QemuRecord): Promise<QemuVm> {
  return new QemuVm(record, await recordedImage(record), vmDir(record.id), undefined, performance.now(), undefined);
}
