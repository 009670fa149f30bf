/**
 * @tinyx/toolstack: boots tinyx image directories as virtual machines.
 *
 * The toolstack reads only an image directory (through @tinyx/image), never
 * the builder. Every backend implements one machine contract (machine.ts)
 * and is found through a typed registry: `qemu` and `xen`.
 */
export type { Backend, CreateOptions, QemuCreateOptions, XenCreateOptions, ReadyTimes, Vm, VmDescription, VmOrigin, VmState } from './machine.js';
export { getBackend, findVm, listVms, restoreVm, BACKEND_NAMES, type BackendName } from './registry.js';
export { TinyxError, SYSTEM_MAP } from '@tinyx/image';
export { detectAccel, hostTscKhz, type AccelChoice, type Accelerator } from './accel.js';
export { libvirtDomainXml, LIBVIRT_HEADER, type LibvirtOptions } from './export/libvirt.js';
export { kubevirtVirtualMachine, KUBEVIRT_HEADER, KUBEVIRT_MASQUERADE, type KubevirtOptions } from './export/kubevirt.js';
export { checkOwnedFile, writeOwnedFile, type OwnedFile } from './owned-file.js';
export { QemuBackend } from './qemu/backend.js';
export { QemuVm } from './qemu/vm.js';
export { freePort } from './qemu/ports.js';
export { runtimeDir } from './runtime.js';
export type { VmRecord, QemuRecord, XenRecord, XenNic } from './store.js';
export { XenBackend, DEFAULT_XEN_CONSOLE_DIR, type XenBackendOptions } from './xen/backend.js';
export { XenVm } from './xen/vm.js';
export { DEFAULT_XEN_BRIDGE } from './xen/domain-config.js';
export { HOTPLUGS, type Hotplug } from './xen/hotplug.js';
export { XenPool, type PoolEntry, type PoolShape } from './xen/pool.js';
export { parseXlListLong, parseXlListTable, domainState, type XlDomain, type XlListRow } from './xen/xl-list.js';
export { DEFAULT_BRIDGE, type BridgedNic, type BridgeConfig } from './bridge.js';
export { probeHttp, probeTcp } from './probe.js';
export { profiledBoot, imageSystemMap, profileBoot, recordConsole, timelineSvg, checkTimelineFile, writeTimeline, SystemMap, PROFILE_CMDLINE, PHASE_TITLES, type BootPhase, type BootProfile, type BootStep, type PhaseId, type StampedLine } from './profile/index.js';
