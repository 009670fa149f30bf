/** Pieces of the toolstack exported for its tests, not a stable API. */
export { ensureBridge, guestAddresses, leaseAddress, macFor, tapName, MAC_PREFIX, DEFAULT_BRIDGE } from './bridge.js';
export { domainState, parseXlListLong, parseXlListTable, type XlDomain, type XlListRow } from './xen/xl-list.js';
export { xenDomainConfig } from './xen/domain-config.js';
export { linesAboutDomain, xlFailure } from './xen/xl.js';
export { LEAN_BLOCK_SCRIPT, LEAN_VIF_SCRIPT, blockScript, leanBlockScript, leanVifScript, vifScript } from './xen/hotplug.js';
export { checkVmId, ensurePrivateDir, runtimeDirPath } from './runtime.js';
export { checkStateFile, isSavedState, writeStateFile } from './state-file.js';
export { qemuArgv, qemuCmdline, TCG_APIC_TIMER_HZ, USER_NETWORK } from './qemu/argv.js';
export { freePort } from './qemu/ports.js';
export { tscKhzFromCpuinfo } from './accel.js';
