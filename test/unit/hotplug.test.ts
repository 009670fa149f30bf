import test from 'ava';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_CMDLINE, PLATFORMS, run } from '@tinyx/image';
import { LEAN_BLOCK_SCRIPT, LEAN_VIF_SCRIPT, blockScript, leanBlockScript, leanVifScript, MAC_PREFIX, macFor, vifScript, xenDomainConfig } from '@tinyx/toolstack/internals';

// The script runs here under /bin/sh with stand-ins for xenstore-read,
// xenstore-write and ip that log their arguments; the Xen harness
// (test/xen, backend suite) runs it under xl for real.

async function scratch(t: { teardown(f: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-hotplug-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Stand-in programs in DIR/bin, by name and shell body: each first appends "name args..." to DIR/calls.log. */
async function writeStandIns(dir: string, bodies: Record<string, string>): Promise<string> {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  for (const [name, body] of Object.entries(bodies)) {
    await writeFile(join(bin, name), `#!/bin/sh\necho "${name} $*" >> "${dir}/calls.log"\n${body}\n`);
    await chmod(join(bin, name), 0o755);
  }
  return bin;
}

/** The vif script's stand-ins: `ip` fails when IP_FAILS is set. */
function standIns(dir: string): Promise<string> {
  return writeStandIns(dir, {
    'xenstore-read': 'echo xenbr0',
    'xenstore-write': 'exit 0',
    ip: '[ -z "$IP_FAILS" ] || { echo "Cannot find device" >&2; exit 1; }',
  });
}

/** Runs a script with the stand-ins first in PATH: its exit code, and the stand-ins' calls in order. */
async function runWith(dir: string, script: string, bin: string, args: string[], env: Record<string, string>) {
  const result = await run(script, args, { allowFailure: true, env: { PATH: `${bin}:/usr/bin:/bin`, ...env } });
  const calls = (await readFile(join(dir, 'calls.log'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
  return { exitCode: result.exitCode, calls };
}

async function runScript(dir: string, action: string, extraEnv: Record<string, string> = {}) {
  return runWith(dir, await leanVifScript(dir), await standIns(dir), [action, 'type_if=vif'], { vif: 'vif7.0', XENBUS_PATH: 'backend/vif/7/0', ...extraEnv });
}

test('online: the vif goes onto the bridge named in xenstore, up, and netback is told it is connected', async (t) => {
  const dir = await scratch(t);
  const { exitCode, calls } = await runScript(dir, 'online');
  t.is(exitCode, 0);
  t.deepEqual(calls, ['xenstore-read backend/vif/7/0/bridge', 'ip link set dev vif7.0 master xenbr0 up', 'xenstore-write backend/vif/7/0/hotplug-status connected']);
});

test('online, when the vif cannot be plugged: hotplug-error for xl to report, status error, exit 1', async (t) => {
  const dir = await scratch(t);
  const { exitCode, calls } = await runScript(dir, 'online', { IP_FAILS: '1' });
  t.is(exitCode, 1);
  t.is(calls.length, 3);
  t.regex(calls[2]!, /^xenstore-write backend\/vif\/7\/0\/hotplug-error tinyx vif-tinyx: could not plug vif7\.0 into bridge 'xenbr0' backend\/vif\/7\/0\/hotplug-status error$/);
});

test('offline does nothing: the vif leaves the bridge with its domain', async (t) => {
  const dir = await scratch(t);
  const { exitCode, calls } = await runScript(dir, 'offline');
  t.is(exitCode, 0);
  t.deepEqual(calls, []);
});

test('the script is written once into the runtime directory, executable, and again when its text changed', async (t) => {
  const dir = await scratch(t);
  const path = await leanVifScript(dir);
  t.is(path, join(dir, '.hotplug', 'vif-tinyx'));
  t.is((await stat(path)).mode & 0o777, 0o755);
  t.is(await readFile(path, 'utf8'), LEAN_VIF_SCRIPT);
  await writeFile(path, '#!/bin/sh\nexit 1\n');
  t.is(await leanVifScript(dir), path);
  t.is(await readFile(path, 'utf8'), LEAN_VIF_SCRIPT, 'an older text is replaced');
  t.is(await vifScript('xen', dir), undefined, "Xen's own script is xl's default: no script= at all");
});

test('a lean domain names the script on its vif; a stock one does not', (t) => {
  const image = { dir: '/img', name: 'nginx', platform: 'xen-pv', facts: PLATFORMS['xen-pv'], readiness: null, cmdline: IMAGE_CMDLINE, kernels: { vmlinuz: '/img/vmlinuz', vmlinux: '/img/vmlinux' }, rootfs: '/img/initrd.cpio.gz', rootAs: 'initrd' as const };
  const network = { bridge: 'xenbr0', gateway: '10.213.0.1', prefixLength: 16, address: '10.213.0.2', mac: macFor('nginx-abcdef', MAC_PREFIX.xen) };
  const record = { id: 'nginx-abcdef', type: 'pv' as const, memoryMiB: 64, vcpus: 1, network };
  t.regex(xenDomainConfig(image, record, { vifScript: '/run/tinyx/.hotplug/vif-tinyx' }), /^vif = \[ "bridge=xenbr0,mac=00:16:3e:ab:cd:ef,script=\/run\/tinyx\/\.hotplug\/vif-tinyx" \]$/m);
  t.regex(xenDomainConfig(image, record), /^vif = \[ "bridge=xenbr0,mac=00:16:3e:ab:cd:ef" \]$/m);
});

/** Stand-ins for the block script: xenstore-read answers params and node, losetup attaches /dev/loop3 (or fails with LOSETUP_FAILS), stat gives its numbers. */
function blockStandIns(dir: string): Promise<string> {
  return writeStandIns(dir, {
    'xenstore-read': 'case "$1" in */params) echo /img/rootfs.erofs ;; */node) echo /dev/loop3 ;; *) exit 1 ;; esac',
    'xenstore-write': 'exit 0',
    losetup: '[ -z "$LOSETUP_FAILS" ] || { echo "losetup: cannot find an unused loop device" >&2; exit 1; }\n[ "$1" = -d ] || echo /dev/loop3',
    stat: 'echo 7:3',
  });
}

async function runBlockScript(dir: string, action: string, extraEnv: Record<string, string> = {}) {
  return runWith(dir, await leanBlockScript(dir), await blockStandIns(dir), [action], { XENBUS_PATH: 'backend/vbd/7/51712', ...extraEnv });
}

test('block add: the image file gets a read-only loop device, whose numbers blkback reads from physical-device; its name is kept for remove', async (t) => {
  const dir = await scratch(t);
  const { exitCode, calls } = await runBlockScript(dir, 'add');
  t.is(exitCode, 0);
  t.deepEqual(calls, [
    'xenstore-read backend/vbd/7/51712/params',
    'losetup --read-only --find --show -- /img/rootfs.erofs',
    'stat -L -c %t:%T /dev/loop3',
    'xenstore-write backend/vbd/7/51712/node /dev/loop3 backend/vbd/7/51712/physical-device-path /dev/loop3 backend/vbd/7/51712/physical-device 7:3 backend/vbd/7/51712/hotplug-status connected',
  ]);
});

test('block add, when no loop device can be had: hotplug-error for xl to report, status error, exit 1', async (t) => {
  const dir = await scratch(t);
  const { exitCode, calls } = await runBlockScript(dir, 'add', { LOSETUP_FAILS: '1' });
  t.is(exitCode, 1);
  t.is(calls.length, 3, calls.join('\n'));
  t.is(calls[2], "xenstore-write backend/vbd/7/51712/hotplug-error tinyx block-tinyx: could not attach '/img/rootfs.erofs' to a read-only loop device backend/vbd/7/51712/hotplug-status error");
});

test('block remove: the loop device named in node is detached', async (t) => {
  const dir = await scratch(t);
  const { exitCode, calls } = await runBlockScript(dir, 'remove');
  t.is(exitCode, 0);
  t.deepEqual(calls, ['xenstore-read backend/vbd/7/51712/node', 'losetup -d /dev/loop3']);
});

test('a disk-rooted domain names the lean block script on its disk when lean; Xen\'s block script is xl\'s default', async (t) => {
  const dir = await scratch(t);
  const path = await blockScript('lean', dir);
  t.is(path, join(dir, '.hotplug', 'block-tinyx'));
  t.is(await readFile(path!, 'utf8'), LEAN_BLOCK_SCRIPT);
  t.is(await blockScript('xen', dir), undefined);
  const image = { dir: '/img', name: 'nginx', platform: 'xen-pvh', facts: PLATFORMS['xen-pvh'], readiness: null, cmdline: 'root=/dev/xvda', kernels: { vmlinuz: '/img/vmlinuz', vmlinux: '/img/vmlinux' }, rootfs: '/img/rootfs.erofs', rootAs: 'disk' as const };
  const network = { bridge: 'xenbr0', gateway: '10.213.0.1', prefixLength: 16, address: '10.213.0.2', mac: macFor('nginx-abcdef', MAC_PREFIX.xen) };
  const record = { id: 'nginx-abcdef', type: 'pvh' as const, memoryMiB: 64, vcpus: 1, network };
  t.regex(xenDomainConfig(image, record, { blockScript: path }), /^disk = \[ "format=raw,vdev=xvda,access=ro,script=.*\/\.hotplug\/block-tinyx,target=\/img\/rootfs\.erofs" \]$/m);
  t.regex(xenDomainConfig(image, record), /^disk = \[ "format=raw,vdev=xvda,access=ro,target=\/img\/rootfs\.erofs" \]$/m);
});
