/** Pieces of the toolstack exported for its tests, not a stable API. */
export { guestAddresses, leaseAddress, macFor, tapName, MAC_PREFIX } from './bridge.js';
export { domainState, parseXlListLong, parseXlListTable, type XlDomain, type XlListRow } from './xl-list.js';
export { DEFAULT_BRIDGE } from './bridge.js';
export { guestType, linesAboutDomain, xenDomainConfig, xlFailure } from './xen.js';
export { LEAN_VIF_SCRIPT, leanVifScript, vifScript } from './hotplug.js';
export { checkVmId, ensurePrivateDir, runtimeDirPath } from './runtime.js';
export { checkStateFile, isSavedState, writeStateFile } from './state-file.js';
export { qemuArgv } from './qemu-argv.js';
