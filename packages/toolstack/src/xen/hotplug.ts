import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TinyxError } from '@tinyx/image';
import { ensurePrivateDir } from '../runtime.js';

/**
 * How a domain's vif is plugged into its bridge when xl creates it:
 *
 * - `xen`: Xen's own hotplug script (Debian's /etc/xen/scripts/vif-bridge,
 *   bash). It sources four helper files, takes a lock, reads half a dozen
 *   xenstore keys and sets up iptables rules when iptables is there: dozens
 *   of processes per vif, on every create and every destroy.
 * - `lean`: tinyx's own script (LEAN_VIF_SCRIPT), the idea of LightVM's
 *   xendevd on stock xl: the three steps the guest's network needs and
 *   nothing else. No anti-spoofing rules: the guests on the bridge are
 *   trusted to use the address they were given.
 */
export type Hotplug = 'xen' | 'lean';

export const HOTPLUGS: readonly Hotplug[] = ['xen', 'lean'];

/**
 * The lean vif script. libxl runs it with `online` after the backend (netback)
 * made the vif, and `offline` when the domain goes, with `vif` (the device,
 * vif<domid>.<devid>) and XENBUS_PATH (backend/vif/<domid>/<devid>) in its
 * environment. Netback connects the guest only once the script wrote
 * hotplug-status=connected; on failure, libxl reports hotplug-error.
 * Offline has nothing to do: the vif disappears with the domain, and the
 * kernel takes it off the bridge then.
 */
export const LEAN_VIF_SCRIPT = `#!/bin/sh
# tinyx's lean vif hotplug script (written by @tinyx/toolstack; see hotplug.ts).
# xl runs it as: vif-tinyx online|offline, with $vif and $XENBUS_PATH set.
case "$1" in
online)
  if bridge=$(xenstore-read "$XENBUS_PATH/bridge") && ip link set dev "$vif" master "$bridge" up; then
    exec xenstore-write "$XENBUS_PATH/hotplug-status" connected
  fi
  xenstore-write "$XENBUS_PATH/hotplug-error" "tinyx vif-tinyx: could not plug $vif into bridge '$bridge'" "$XENBUS_PATH/hotplug-status" error
  exit 1
  ;;
esac
exit 0
`;

/**
 * The path of the lean script for xl.cfg's `vif = [ "...,script=PATH" ]`:
 * written into the runtime directory on first use (and again when this
 * version's text differs), whole and renamed, so that a concurrent create
 * never runs half a script.
 */
export async function leanVifScript(runtime: string): Promise<string> {
  // libxl runs this script as root: it is written only by root, into a directory only root can write (checked on every use).
  if (process.getuid?.() !== 0) {
    throw new TinyxError('E_NOT_ROOT', 'the lean vif script is run by libxl as root, so only root writes it', { kind: 'host', hint: 'run tinyx as root in dom0' });
  }
  const dir = join(runtime, '.hotplug');
  const path = join(dir, 'vif-tinyx');
  ensurePrivateDir(runtime, 'the runtime directory');
  ensurePrivateDir(dir, 'the hotplug script directory');
  if ((await readFile(path, 'utf8').catch(() => undefined)) === LEAN_VIF_SCRIPT) return path;
  const temp = join(dir, `.vif-tinyx.${process.pid}`);
  await writeFile(temp, LEAN_VIF_SCRIPT);
  await chmod(temp, 0o755);
  await rename(temp, path);
  return path;
}

/** The vif's `script=` for a hotplug choice: none for Xen's own (xl's default). */
export async function vifScript(hotplug: Hotplug, runtime: string): Promise<string | undefined> {
  return hotplug === 'lean' ? leanVifScript(runtime) : undefined;
}
