import { chmodSync, lstatSync, mkdirSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TinyxError } from '@tinyx/image';

/**
 * Where VMs started by tinyx are recorded, one directory each (vm.json), so
 * that another tinyx process finds them (tinyx ps, stop): every backend uses
 * it. `.leases` (addresses), `.pool` (the xen pool) and `.hotplug` (the lean
 * vif script, which libxl runs as root) live there too.
 *
 * Whoever can write it controls the VMs (QMP sockets read guest memory;
 * vm.json names what `stop` removes) and the script root runs, so it is
 * private: made 0700, and before every use checked to be a real directory
 * (not a symbolic link) owned by this user with no access for group or
 * others. Without XDG_RUNTIME_DIR a non-root user's default is a predictable
 * path under /tmp that another user may have made first: refused, never used.
 */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = runtimeDirPath(env);
  const named = env.TINYX_RUNTIME_DIR ? 'TINYX_RUNTIME_DIR' : env.XDG_RUNTIME_DIR ? 'XDG_RUNTIME_DIR/tinyx' : undefined;
  // tinyx's own default path, owned by this user, may be tightened (an older tinyx made it 0755); a directory the user named is only checked.
  ensurePrivateDir(dir, named ?? 'the default runtime directory', { tighten: named === undefined });
  return dir;
}

/** The runtime directory's path, unchecked: $TINYX_RUNTIME_DIR, $XDG_RUNTIME_DIR/tinyx, /run/tinyx for root, else /tmp/tinyx-UID. */
export function runtimeDirPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TINYX_RUNTIME_DIR) return resolve(env.TINYX_RUNTIME_DIR);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'tinyx');
  return process.getuid?.() === 0 ? '/run/tinyx' : join(tmpdir(), `tinyx-${process.getuid?.() ?? 'user'}`);
}

/**
 * Makes `dir` (0700) when missing, then checks it is this user's private
 * directory; throws E_RUNTIME_DIR (a host error, exit 3) naming what is wrong.
 * Synchronous, so that every path that joins an id to the directory checks it
 * first with no await in between.
 */
export function ensurePrivateDir(dir: string, what: string, options: { tighten?: boolean } = {}): void {
  const uid = process.getuid?.();
  let stat = lstatOrUndefined(dir);
  let tighten = options.tighten ?? false;
  if (!stat) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    stat = lstatSync(dir) as Stats;
    // mkdir's mode passes through the umask; this directory is ours, just made.
    tighten = true;
  }
  if (tighten && stat.isDirectory() && !stat.isSymbolicLink() && stat.uid === uid && (stat.mode & 0o077) !== 0) {
    chmodSync(dir, 0o700);
    stat = lstatSync(dir);
  }
  const refuse = (problem: string, hint: string): never => {
    throw new TinyxError('E_RUNTIME_DIR', `the runtime directory ${dir} (${what}) ${problem}`, { kind: 'host', hint });
  };
  const elsewhere = 'set TINYX_RUNTIME_DIR to a directory of your own (it is made 0700), or XDG_RUNTIME_DIR';
  if (stat.isSymbolicLink()) refuse('is a symbolic link', `remove the link, or ${elsewhere}`);
  if (!stat.isDirectory()) refuse('is not a directory', elsewhere);
  if (uid !== undefined && stat.uid !== uid) refuse(`belongs to uid ${stat.uid}, not to you (uid ${uid}): its owner could control your VMs`, elsewhere);
  if ((stat.mode & 0o077) !== 0) {
    refuse(`is open to other users (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')})`, `make it private: chmod 700 ${dir}; or ${elsewhere}`);
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * A VM id as tinyx makes them: the image's name (a recipe name: lower-case
 * letters, digits, ".", "_", "-") and a random suffix. An id is joined to the
 * runtime directory and that directory is removed by `stop`, so anything
 * else (a "/", "..", an absolute path) is refused before anything is touched.
 */
export const VM_ID = /^[a-z0-9][a-z0-9._-]{0,127}$/;

export function checkVmId(id: string): string {
  if (!VM_ID.test(id) || id.includes('..')) {
    throw new TinyxError('E_VM_ID', `"${id}" is not a VM id`, {
      kind: 'user',
      hint: 'a VM id is an image name and a suffix, as tinyx ps lists them (e.g. nginx-1a2b3c); it never has "/" or ".."',
    });
  }
  return id;
}

/** The runtime directory of the VM `id` (checked first, as the runtime directory is). */
export function vmDir(id: string): string {
  return join(runtimeDir(), checkVmId(id));
}
