import type { Backend, CreateOptions, Vm } from './machine.js';
import { QemuBackend } from './qemu/backend.js';
import { readSavedState } from './state-file.js';
import { listRecords, readRecord } from './store.js';
import { XenBackend } from './xen/backend.js';

/** The backends by name: `--backend` chooses one, and a VM's record names the one that runs it. */
const BACKENDS = {
  qemu: new QemuBackend(),
  xen: new XenBackend(),
} satisfies Record<string, Backend>;

export type BackendName = keyof typeof BACKENDS;

export const BACKEND_NAMES = Object.keys(BACKENDS) as BackendName[];

/** A backend by name, typed as itself (getBackend('qemu') is a QemuBackend). */
export function getBackend<N extends BackendName>(name: N): (typeof BACKENDS)[N] {
  return BACKENDS[name];
}

/** A VM by id, whichever backend runs it (its record in the runtime store says). */
export async function findVm(id: string): Promise<Vm> {
  const record = await readRecord(id);
  return (BACKENDS[record.backend] as Backend).get(id);
}

/** Every VM in the runtime store, of every backend, by id. */
export async function listVms(): Promise<Vm[]> {
  const vms = new Map<string, Vm>();
  for (const record of await listRecords()) {
    const vm = await (BACKENDS[record.backend] as Backend).get(record.id).catch(() => undefined);
    if (vm) vms.set(vm.id, vm);
  }
  return [...vms.values()];
}

/** A VM again from a state `save` wrote, by the backend that saved it. */
export async function restoreVm(file: string, options: CreateOptions = {}): Promise<Vm> {
  const saved = await readSavedState(file);
  return (BACKENDS[saved.backend] as Backend).restore(file, options);
}
