import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TinyxError } from '@tinyx/image';
import { ensurePrivateDir } from '../runtime.js';

/**
 * How a domain's devices are plugged in dom0 when xl creates it: its vif
 * into its bridge, and its root disk (an erofs image) into blkback.
 *
 * - `xen`: Xen's own hotplug scripts (Debian's /etc/xen/scripts/vif-bridge
 *   and block, bash). vif-bridge sources four helper files, takes a lock,
 *   reads half a dozen xenstore keys and sets up iptables rules when
 *   iptables is there: dozens of processes per vif, on every create and
 *   every destroy.
 * - `lean`: tinyx's own scripts (LEAN_VIF_SCRIPT, LEAN_BLOCK_SCRIPT), the
 *   idea of LightVM's xendevd on stock xl: the few steps the guest needs and
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
 * The lean block script, for a domain whose root is a disk (an erofs image
 * file): libxl runs it with `add` before the domain starts and `remove` when
 * it goes, with XENBUS_PATH (backend/vbd/<domid>/<devid>) in its environment.
 * Blkback serves a block device, so the file gets a read-only loop device of
 * its own for each domain (all of them read the file through dom0's one page
 * cache); blkback opens it once the script wrote its numbers to
 * physical-device. `node` keeps the loop device's name for `remove`. Xen's
 * own `block` script does the same in bash, with a lock and a sharing check
 * (a file attached writable elsewhere): a read-only image needs neither.
 */
export const LEAN_BLOCK_SCRIPT = `#!/bin/sh
# tinyx's lean block hotplug script (written by @tinyx/toolstack; see hotplug.ts).
# xl runs it as: block-tinyx add|remove, with $XENBUS_PATH set.
case "$1" in
add)
  file=$(xenstore-read "$XENBUS_PATH/params")
  if dev=$(losetup --read-only --find --show -- "$file") && numbers=$(stat -L -c %t:%T "$dev"); then
    exec xenstore-write "$XENBUS_PATH/node" "$dev" "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/physical-device" "$numbers" "$XENBUS_PATH/hotplug-status" connected
  fi
  [ -n "$dev" ] && losetup -d "$dev"
  xenstore-write "$XENBUS_PATH/hotplug-error" "tinyx block-tinyx: could not attach '$file' to a read-only loop device" "$XENBUS_PATH/hotplug-status" error
  exit 1
  ;;
remove)
  if dev=$(xenstore-read "$XENBUS_PATH/node"); then losetup -d "$dev"; fi
  exit 0
  ;;
esac
exit 0
`;

/** The lean scripts, by the name each gets in the runtime directory. */
const LEAN_SCRIPTS = { 'vif-tinyx': LEAN_VIF_SCRIPT, 'block-tinyx': LEAN_BLOCK_SCRIPT } as const;

/**
 * The path of a lean script for xl.cfg's `script=`: written into the runtime
 * directory on first use (and again when this version's text differs), whole
 * and renamed, so that a concurrent create never runs half a script.
 */
async function leanScript(runtime: string, name: keyof typeof LEAN_SCRIPTS): Promise<string> {
  // libxl runs this script as root: it is written only by root, into a directory only root can write (checked on every use).
  if (process.getuid?.() !== 0) {
    throw new TinyxError('E_NOT_ROOT', 'the lean hotplug scripts are run by libxl as root, so only root writes them', { kind: 'host', hint: 'run tinyx as root in dom0' });
  }
  const text = LEAN_SCRIPTS[name];
  const dir = join(runtime, '.hotplug');
  const path = join(dir, name);
  ensurePrivateDir(runtime, 'the runtime directory');
  ensurePrivateDir(dir, 'the hotplug script directory');
  if ((await readFile(path, 'utf8').catch(() => undefined)) === text) return path;
  const temp = join(dir, `.${name}.${process.pid}`);
  await writeFile(temp, text);
  await chmod(temp, 0o755);
  await rename(temp, path);
  return path;
}

/** The lean vif script's path (written when missing or older). */
export function leanVifScript(runtime: string): Promise<string> {
  return leanScript(runtime, 'vif-tinyx');
}

/** The lean block script's path (written when missing or older). */
export function leanBlockScript(runtime: string): Promise<string> {
  return leanScript(runtime, 'block-tinyx');
}

/** The vif's `script=` for a hotplug choice: none for Xen's own (xl's default). */
export async function vifScript(hotplug: Hotplug, runtime: string): Promise<string | undefined> {
  return hotplug === 'lean' ? leanVifScript(runtime) : undefined;
}

/** The root disk's `script=` for a hotplug choice: none for Xen's own `block` (xl's default). */
export async function blockScript(hotplug: Hotplug, runtime: string): Promise<string | undefined> {
  return hotplug === 'lean' ? leanBlockScript(runtime) : undefined;
}
