/**
 * @tinyx/toolstack: boots tinyx image directories as virtual machines.
 *
 * The toolstack reads only an image directory (manifest.json and the files
 * next to it), never the builder. Backends implement one interface and are
 * found through a registry: `qemu` and `xen`.
 */
import { QemuBackend } from './qemu.js';
import { XenBackend } from './xen.js';
import type { Backend } from './vm.js';

export type { Backend, CreateOptions, Vm, VmState } from './vm.js';
export type { ReadinessProbe, ImageDirectory } from './image.js';
export { readImage } from './image.js';
export { detectAccel, type AccelChoice, type Accelerator } from './accel.js';
export { QemuBackend, QemuVm, freePort, type QemuOptions } from './qemu.js';
export { runtimeDir } from './runtime.js';
export { XenBackend, XenVm, DEFAULT_XEN_BRIDGE, DEFAULT_XEN_CONSOLE_DIR, type XenBackendOptions, type XenCreateOptions, type XenNic, type XenVmRecord } from './xen.js';
export { HOTPLUGS, type Hotplug } from './hotplug.js';
export { XenPool, type PoolEntry, type PoolShape, type Instantiated } from './pool.js';
export { parseXlListLong, parseXlListTable, domainState, type XlDomain, type XlListRow } from './xl-list.js';
export { ToolstackError } from './errors.js';
export { DEFAULT_BRIDGE, type BridgedNic, type BridgeConfig } from './bridge.js';
export { probeHttp, probeTcp } from './probe.js';

const backends = new Map<string, Backend>();

/** Adds a backend to the registry. */
export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

export function getBackend(name: string): Backend | undefined {
  return backends.get(name);
}

export function listBackends(): string[] {
  return [...backends.keys()].sort();
}

registerBackend(new QemuBackend());
registerBackend(new XenBackend());
