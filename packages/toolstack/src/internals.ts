/** Pieces of the toolstack exported for its tests, not a stable API. */
export { guestAddresses, leaseAddress, macFor, tapName } from './bridge.js';
export { DEFAULT_BRIDGE } from './bridge.js';
