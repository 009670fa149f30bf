// The refill process refillInBackground (refill.ts) starts: `node refill-main.js REQUEST`.
import { XenBackend } from './backend.js';
import type { RefillRequest } from './refill.js';

const request = JSON.parse(process.argv[2] ?? '{}') as RefillRequest;
const backend = new XenBackend(request.backend);
const target = await backend.pool.target(request.imageDir, request.shape);
if (target !== undefined) {
  await backend.pool.fill(request.imageDir, target.size, { ...request.shape, ...(target.hotplug ? { hotplug: target.hotplug } : {}) });
}
