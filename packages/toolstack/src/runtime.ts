import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where VMs started by tinyx are recorded, one directory each (vm.json), so
 * that another tinyx process finds them (tinyx ps, stop): every backend uses
 * it. `.leases` (addresses) and `.pool` (the xen pool) live there too.
 */
export function runtimeDir(): string {
  if (process.env.TINYX_RUNTIME_DIR) return process.env.TINYX_RUNTIME_DIR;
  if (process.env.XDG_RUNTIME_DIR) return join(process.env.XDG_RUNTIME_DIR, 'tinyx');
  return process.getuid?.() === 0 ? '/run/tinyx' : join(tmpdir(), `tinyx-${process.getuid?.() ?? 'user'}`);
}
