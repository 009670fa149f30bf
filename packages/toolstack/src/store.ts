import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PLATFORMS, PLATFORM_NAMES, TinyxError, isPlatform, openImage, type BootableImage } from '@tinyx/image';
import type { AccelChoice } from './accel.js';
import type { BridgedNic } from './bridge.js';
import { runtimeDir, vmDir } from './runtime.js';
import type { Hotplug } from './xen/hotplug.js';

/**
 * The runtime store: one directory per VM in the runtime directory, with its
 * record (vm.json), so that another tinyx process finds it (tinyx ps, stop).
 * One record type for every backend, told apart by `backend`; written whole
 * and renamed into place, so that a reader never sees half a record.
 */
interface RecordBase {
  /** The VM's id (a Xen domain's name too). */
  id: string;
  imageDir: string;
  name: string;
  /** The image's platform (absent in records of an older tinyx). */
  platform?: string;
  memoryMiB: number;
  vcpus: number;
  /** Started from a saved state. */
  restored: boolean;
  /** Wall-clock start, for `tinyx ps`. */
  startedAtEpochMs: number;
}

export interface QemuRecord extends RecordBase {
  backend: 'qemu';
  pid: number;
  accel: AccelChoice;
  forwards: { host: number; guest: number }[];
  machine: 'microvm' | 'q35';
  /** The tap, bridge and address of a bridged VM; absent on the user-mode network. */
  network?: BridgedNic;
}

/** The guest's network card as the xen backend records it (the vif's name is Xen's: vif<domid>.0). */
export interface XenNic {
  bridge: string;
  address: string;
  prefixLength: number;
  gateway: string;
  mac: string;
}

export interface XenRecord extends RecordBase {
  backend: 'xen';
  type: 'pvh' | 'pv';
  network: XenNic;
  /** Which script plugged its vif (xen/hotplug.ts). */
  hotplug: Hotplug;
  /** The xl.cfg the domain was created from. */
  config: string;
  /** xenconsoled's log of the guest's console. */
  consoleLog: string;
  /** A pre-created paused domain waiting in the pool (tinyx pool); false once taken. */
  pooled: boolean;
  /** Xen's number for the domain, asked once xl made it: what the hypervisor's own log (`xl dmesg`) calls it, after it is gone too. */
  domid?: number;
}

export type VmRecord = QemuRecord | XenRecord;

/** Writes a VM's record: whole, then renamed over the old one. */
export async function writeRecord(record: VmRecord): Promise<void> {
  const dir = vmDir(record.id);
  const temp = join(dir, `.vm.json.${process.pid}-${randomBytes(3).toString('hex')}`);
  try {
    await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`);
    await rename(temp, join(dir, 'vm.json'));
  } finally {
    await rm(temp, { force: true });
  }
}

/** A VM's record by id; E_NO_VM when there is none. A record without `backend` is a QEMU VM of an older tinyx. */
export async function readRecord(id: string): Promise<VmRecord> {
  const dir = vmDir(id);
  try {
    const record = JSON.parse(await readFile(join(dir, 'vm.json'), 'utf8')) as Partial<VmRecord>;
    return { ...record, backend: record.backend ?? 'qemu' } as VmRecord;
  } catch {
    throw new TinyxError('E_NO_VM', `no VM with id ${id}`, { kind: 'user', hint: 'list them with: tinyx ps' });
  }
}

/** The records in the store, by id; those of one backend when given. Directories without a readable record are skipped. */
export async function listRecords(backend?: VmRecord['backend']): Promise<VmRecord[]> {
  // .leases (addresses), .pool (the xen pool) and .hotplug (the lean vif script) are not VMs.
  const ids = (await readdir(runtimeDir()).catch(() => [] as string[])).filter((name) => !name.startsWith('.')).sort();
  const records: VmRecord[] = [];
  for (const id of ids) {
    const record = await readRecord(id).catch(() => undefined);
    if (record && (backend === undefined || record.backend === backend)) records.push(record);
  }
  return records;
}

/**
 * A VM's image: read again from its directory, or when that cannot be read
 * now (removed since the VM started) what the record remembers of it, so
 * that the VM can still be listed and stopped.
 */
export async function recordedImage(record: VmRecord): Promise<BootableImage> {
  return openImage(record.imageDir).catch(() => {
    const platform = record.platform !== undefined && isPlatform(record.platform) ? record.platform : PLATFORM_NAMES.find((name) => PLATFORMS[name].backend === record.backend)!;
    return { dir: record.imageDir, name: record.name, platform, facts: PLATFORMS[platform], readiness: null, cmdline: '', kernels: {}, rootfs: '', rootAs: 'initrd' };
  });
}
