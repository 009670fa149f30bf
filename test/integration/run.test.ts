import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { build, loadRecipeFile, type Manifest } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { TinyxError, detectAccel, getBackend, probeTcp, runtimeDir, type BootProfile, type QemuVm } from '@tinyx/toolstack';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli, startCli } from '../helpers/cli.js';
import { memcachedCommand, redisCommand } from '../helpers/clients.js';

// Boots real images under QEMU (TCG here: this host's KVM cannot run a Linux
// guest) and talks to the app over the network with a real client.
const test = integrationTest({ kernel: true, tools: ['qemu-system-x86_64', 'pgrep', 'pkill', 'ip'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-run-'));
const nginxDir = join(work, 'nginx');
const qemu = getBackend('qemu');
const started: QemuVm[] = [];
const hostAccel = await detectAccel();
test.before(async () => {
  // nginx's kernel is the one kernel.test.ts builds: with the shared cache, a hit.
  await build({ recipe: 'nginx', outDir: nginxDir, format: 'initramfs' });
});
test.after.always(async () => {
  for (const vm of started) await vm.destroy().catch(() => undefined);
  await removeTree(work);
});

function get(port: number, path = '/', host = '127.0.0.1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function qemuProcessesOf(id: string): string {
  try {
    return execFileSync('pgrep', ['-af', `${runtimeDir()}/${id}/`], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

test.serial('nginx boots, answers HTTP 200 with its page, stops answering when paused and again when unpaused', async (t) => {
  const vm = await qemu.create(nginxDir);
  started.push(vm);
  t.is(vm.accel.accel, hostAccel.accel, 'the accelerator detected for this host (KVM where it can run a guest, else TCG)');
  const ready = await vm.waitReady();
  t.true(ready.ms > 0 && ready.ms < 60_000);
  t.regex(await vm.console(), /tinyx: ready \(listening on 80\) at \d+\.\d+ s of guest uptime/);
  // Its minimized kernel has no PROC_SYSCTL (recipes/nginx.yaml): /init passes over what is not there, without an error line.
  t.notRegex(await vm.console(), /can't create|No such file/);
  const port = vm.hostPort(80)!;
  const page = await get(port);
  t.is(page.status, 200);
  t.regex(page.body, /Welcome to nginx/);
  t.is(await vm.state(), 'running');

  await vm.pause();
  t.is(await vm.state(), 'paused');
  await t.throwsAsync(get(port), undefined, 'a paused guest does not answer');
  await vm.unpause();
  t.is((await get(port)).status, 200);

  await vm.destroy();
  t.is(qemuProcessesOf(vm.id), '', 'no QEMU left');
  t.false((await readdir(runtimeDir()).catch(() => [] as string[])).includes(vm.id), 'no runtime files left');
  t.false(await probeTcp('127.0.0.1', port), 'the forward is gone');
});

test.serial('redis-server without a recipe, zstd-compressed through the CLI, boots with its own kernel (its zstd decompressor); it listens on loopback only and is reached through the relay: PING is answered PONG, a SET is read back by GET', async (t) => {
  // No recipe: the package's unit says how to run it. Debian's redis.conf binds 127.0.0.1 and ::1 (and keeps
  // protected mode): the image relays the VM's address to it. --compression zstd gives the kernel CONFIG_RD_ZSTD
  // instead of RD_GZIP: the kernel's own decompressor unpacks the root (this kernel is built once, here or as a cache hit).
  const out = join(work, 'redis-server');
  const cli = await runCli(['build', '--package', 'redis-server', '--compression', 'zstd', '--out', out, '--json']);
  t.is(cli.code, 0, cli.stderr.slice(-3000));
  const built = (JSON.parse(cli.stdout) as { manifest: Manifest }).manifest;
  t.true(built.kernel!.features.some((f) => f.name === 'signalfd'), 'signalfd is inferred from redis-server');
  t.deepEqual(built.relay, [{ port: 6379, address: '127.0.0.1' }]);
  t.deepEqual(built.readiness, { tcp: { port: 6379 } });
  t.regex(built.verify!.outcome, /probe on 10\.0\.2\.15:6379 through the relay: connected/);
  t.true(built.files.some((f) => f.path === '/usr/sbin/tinyx-relay' && f.size < 64 * 1024), 'the relay, a few KiB');
  t.is(built.compression, 'zstd');
  t.is(built.kernel!.decompressor, 'RD_ZSTD');
  t.is(built.artifacts.rootfs, 'initrd.cpio.zst');
  const magic = (await readFile(join(out, built.artifacts.rootfs))).subarray(0, 4).toString('hex');
  t.is(magic, '28b52ffd', "a zstd frame, which the kernel's decompressor unpacks below");
  const config = await readFile(join(out, 'kernel.config'), 'utf8');
  t.regex(config, /^CONFIG_RD_ZSTD=y$/m);
  t.regex(config, /^# CONFIG_RD_GZIP is not set$/m, 'no gzip to fall back to');
  const vm = await qemu.create(out);
  started.push(vm);
  await vm.waitReady();
  t.regex(await vm.console(), /tinyx: relaying 10\.0\.2\.15 to 127\.0\.0\.1:6379/);
  t.regex(await vm.console(), /tinyx: ready \(listening on 6379\)/);
  const port = vm.hostPort(6379)!;
  t.is(await redisCommand(port, 'PING'), '+PONG\r\n', 'protected mode lets the relayed client in: it comes from loopback');
  t.is(await redisCommand(port, 'SET', 'tinyx', 'lighter than a container'), '+OK\r\n');
  t.is(await redisCommand(port, 'GET', 'tinyx'), '$24\r\nlighter than a container\r\n');
  t.is(await redisCommand(port, 'GET', 'absent'), '$-1\r\n');
  await vm.destroy();
  t.is(qemuProcessesOf(vm.id), '');
});

test.serial('memcached without a recipe or --cmd (its unit: a Perl wrapper, -l 127.0.0.1) boots and is reached through the relay: set, then get returns the value', async (t) => {
  const out = join(work, 'memcached');
  // memcached's features are a subset of redis-server's: asking for those makes the same kernel configuration,
  // so this boots the kernel the redis-server test built (a cache hit, not another seven-minute compile in CI).
  const redisServer = JSON.parse(await readFile(join(work, 'redis-server', 'manifest.json'), 'utf8')) as Manifest;
  const built = await build({ recipe: { fromUnit: { package: 'memcached' } }, kernelFeatures: redisServer.kernel!.features.map((f) => f.name), compression: 'zstd', outDir: out });
  t.is(built.kernel!.configSha256, redisServer.kernel!.configSha256, "redis-server's kernel");
  t.deepEqual(built.relay, [{ port: 11211, address: '127.0.0.1' }]);
  const vm = await qemu.create(out);
  started.push(vm);
  await vm.waitReady();
  const port = vm.hostPort(11211)!;
  t.is(await memcachedCommand(port, 'set tinyx 7 0 5\r\nhello\r\n'), 'STORED\r\n');
  t.is(await memcachedCommand(port, 'get tinyx\r\n'), 'VALUE tinyx 7 5\r\nhello\r\nEND\r\n');
  t.is(await memcachedCommand(port, 'get absent\r\n'), 'END\r\n');
  await vm.destroy();
  t.is(qemuProcessesOf(vm.id), '');
});

test.serial('nginx as an erofs root (--format erofs): its own kernel (a disk, erofs, no initramfs), the host kernel reads the same files the manifest lists; it boots on microvm and q35, two VMs at once off the one file, each answering HTTP', async (t) => {
  const dir = join(work, 'nginx-erofs');
  const manifest = await build({ recipe: 'nginx', outDir: dir, format: 'erofs' });
  t.is(manifest.format, 'erofs');
  t.is(manifest.artifacts.rootfs, 'rootfs.erofs');
  t.is(manifest.boot?.cmdline, 'quiet panic=-1 root=/dev/vda rootfstype=erofs ro init=/init');
  t.deepEqual((await readdir(dir)).sort(), ['System.map', 'kernel.config', 'manifest.json', 'rootfs.erofs', 'vmlinux', 'vmlinuz']);
  const config = await readFile(join(dir, 'kernel.config'), 'utf8');
  for (const option of ['EROFS_FS', 'VIRTIO_BLK', 'NO_HZ_IDLE']) t.regex(config, new RegExp(`^CONFIG_${option}=y$`, 'm'), option);
  t.regex(config, /^# CONFIG_BLK_DEV_INITRD is not set$/m);
  const inspect = await runCli(['inspect', dir]);
  t.regex(inspect.stdout, /rootfs\.erofs +[\d.]+ MiB +\(a read-only disk, read page by page\)/);
  t.regex(inspect.stdout, /the root on an erofs disk/);

  // An independent reader: the host's own erofs driver, on a loop device.
  const mnt = join(work, 'erofs-mnt');
  await mkdir(mnt, { recursive: true });
  execFileSync('mount', ['-t', 'erofs', '-o', 'loop,ro', join(dir, 'rootfs.erofs'), mnt]);
  try {
    for (const file of manifest.files) {
      const mode = (await stat(join(mnt, file.path))).mode & 0o7777;
      t.is(mode.toString(8).padStart(4, '0'), file.mode, file.path);
      t.is(createHash('sha256').update(await readFile(join(mnt, file.path))).digest('hex'), file.sha256, file.path);
    }
    for (const d of manifest.directories) t.is(((await stat(join(mnt, d.path))).mode & 0o7777).toString(8).padStart(4, '0'), d.mode, d.path);
  } finally {
    execFileSync('umount', [mnt]);
  }

  const vms = [await qemu.create(dir), await qemu.create(dir, { guest: 'q35' }), await qemu.create(dir)];
  started.push(...vms);
  for (const vm of vms) {
    await vm.waitReady();
    const page = await get(vm.hostPort(80)!);
    t.is(page.status, 200, vm.id);
    t.regex(page.body, /Welcome to nginx/);
  }
  // The one file, open read-only by every QEMU.
  const args = (vm: QemuVm): string => readFileSync(`/proc/${vm.describe().pid}/cmdline`, 'utf8');
  for (const vm of vms) t.true(args(vm).includes(`file=${join(dir, 'rootfs.erofs')},format=raw,if=none,readonly=on`), vm.id);
  t.true(args(vms[1]!).includes('virtio-blk-pci'));
  for (const vm of vms) await vm.destroy();
});

test.serial('tinyx run --check: boots, probes, prints the time to ready, stops', async (t) => {
  const result = await runCli(['run', nginxDir, '--check', '--json']);
  t.is(result.code, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { ok: boolean; readyMs: number; accel: { accel: string; reason: string }; id: string };
  t.true(json.ok);
  t.true(json.readyMs > 0);
  t.is(json.accel.accel, hostAccel.accel);
  t.is(qemuProcessesOf(json.id), '');
});

test.serial("tinyx run --profile: the boot's phases from QEMU's start to the probe, every initcall named from the image's System.map, the ten costliest steps, a timeline picture; the VM is gone after", async (t) => {
  const svg = join(work, 'nginx-boot.svg');
  const result = await runCli(['run', nginxDir, '--profile', '--profile-svg', svg, '--json']);
  t.is(result.code, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { ok: boolean; id: string; svg: string; profile: BootProfile };
  const { profile } = json;
  t.deepEqual(
    profile.phases.map((p) => p.id),
    ['vmm', 'kernel-setup', 'initcalls', 'root', 'kernel-finish', 'init', 'app', 'probe'],
    'every marker was seen: the kernel clock, the initcalls, the initramfs unpacked, /init, the app, its listen',
  );
  const end = profile.phases.reduce((at, p) => {
    t.true(Math.abs(p.startMs - at) < 0.02, `${p.id} starts where the phase before ends`);
    return p.startMs + p.ms;
  }, 0);
  t.true(Math.abs(end - profile.readyMs) < 0.05, 'the phases add up to the time to ready');
  t.true(profile.kernelZeroMs! > 0 && profile.kernelZeroMs! < profile.readyMs, "the kernel's clock starts after QEMU's");
  t.true(profile.initcalls.length > 100, `${profile.initcalls.length} initcalls`);
  t.is(profile.unnamed, 0, "the image's System.map names every initcall");
  for (const name of ['inet_init', 'populate_rootfs', 'virtio_net_driver_init']) t.true(profile.initcalls.some((c) => c.name === name), name);
  t.is(profile.top.length, 10);
  t.true(profile.top.every((s, i) => i === 0 || profile.top[i - 1]!.ms >= s.ms), 'largest first');
  const svgText = await readFile(svg, 'utf8');
  t.regex(svgText, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*<\/svg>\n$/);
  t.true(svgText.includes('inet_init'), 'the picture names the initcalls');
  t.is(qemuProcessesOf(json.id), '', 'QEMU is stopped');
  t.false(await stat(join(runtimeDir(), json.id)).then(() => true, () => false), 'its runtime directory is gone');
  // The person's view: the phases and the steps, in words.
  const text = await runCli(['run', nginxDir, '--profile']);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /^ready \d+ ms after the VMM's start\n\nphases\n/);
  t.regex(text.stdout, /\n\s+\d+\.\d ms\s+\d+ %\s+initcalls\n/);
  t.regex(text.stdout, /\nthe ten most expensive steps\n(\s+\d+\.\d ms\s+(initcall|gap|phase)\s+.+\n){10}\n/);
  t.regex((await runCli(['run', nginxDir, '--profile', '--check'])).stderr, /--profile boots, waits until ready and stops the VM by itself/);
  // A file of the user's at --profile-svg's path: refused before any boot, left as it was.
  const mine = join(work, 'mine.svg');
  await writeFile(mine, 'my drawing\n');
  const refused = await runCli(['run', nginxDir, '--profile', '--profile-svg', mine, '--json']);
  t.is(refused.code, 2, refused.stdout);
  t.regex(refused.stdout, /E_OUTPUT_NOT_OURS/);
  t.is(await readFile(mine, 'utf8'), 'my drawing\n');
  t.false(/"id"/.test(refused.stdout), 'no VM was started');
});

test.serial('a broken image is a named error, not a hang: no kernel; a truncated initrd', async (t) => {
  const noKernel = join(work, 'no-kernel');
  await cp(nginxDir, noKernel, { recursive: true });
  await rm(join(noKernel, 'vmlinux'));
  const missing = await t.throwsAsync(qemu.create(noKernel), { instanceOf: TinyxError });
  t.is(missing?.code, 'E_IMAGE_FILE');
  t.regex(missing?.message ?? '', /no-kernel\/vmlinux is missing \(the manifest names it as the ELF kernel\)/);

  const truncated = join(work, 'truncated');
  await cp(nginxDir, truncated, { recursive: true });
  const initrd = join(truncated, 'initrd.cpio.gz');
  await truncate(initrd, Math.floor((await stat(initrd)).size / 3));
  const vm = await qemu.create(truncated);
  started.push(vm);
  const failure = await t.throwsAsync(vm.waitReady(undefined, { timeoutMs: 60_000 }), { instanceOf: TinyxError });
  t.is(failure?.code, 'E_NOT_READY');
  t.regex(failure?.message ?? '', /panicked|stopped before it was ready/);
  t.regex(failure?.message ?? '', /console \(last lines\):/);
  await vm.destroy();
  const cli = await runCli(['run', truncated, '--check', '--timeout', '60', '--verbose']);
  t.is(cli.code, 1, cli.stderr);
  t.regex(cli.stderr, /^\$ qemu-system-x86_64 .*-initrd \S*truncated\/initrd\.cpio\.gz/m, '--verbose shows QEMU\'s command line');
  t.regex(cli.stderr, /truncated|nginx: the (guest kernel panicked|VM stopped before it was ready)/);
  // The VM and its runtime directory are gone; the console the hint names is not.
  const kept = cli.stderr.match(/the whole console: (\S+)/)?.[1];
  t.truthy(kept, cli.stderr);
  t.false(kept!.startsWith(runtimeDir()), `${kept} is outside the runtime directory, which the VM's removal empties`);
  t.regex(await readFile(kept!, 'utf8'), /Kernel panic|Initramfs unpacking failed/);
  await rm(kept!);
});

test.serial('save nginx to a file, destroy it, restore it: it answers again', async (t) => {
  const vm = await qemu.create(nginxDir);
  started.push(vm);
  await vm.waitReady();
  const state = join(work, 'nginx.state');
  await vm.save(state, { keep: true });
  t.is(await vm.state(), 'running', 'a save with keep lets the source run on');
  await vm.save(state);
  t.is(await vm.state(), 'stopped', 'a save without keep stops the source');
  t.is(qemuProcessesOf(vm.id), '', 'and its QEMU is gone');
  t.false((await readdir(runtimeDir())).includes(vm.id), 'with its runtime files');
  t.true((await stat(state)).size > 1024 * 1024, 'the state holds guest memory');
  const restored = await qemu.restore(state);
  started.push(restored);
  t.true(restored.restored);
  await restored.waitReady(undefined, { timeoutMs: 30_000 });
  const page = await get(restored.hostPort(80)!);
  t.is(page.status, 200);
  t.regex(page.body, /Welcome to nginx/);
  await restored.destroy();
  t.is(qemuProcessesOf(restored.id), '');
  await t.throwsAsync(qemu.restore(join(work, 'no-such.state')), { instanceOf: TinyxError, message: /is not a state saved by tinyx/ });
});

test.serial("the app's exit ends the VM, and is reported with the console's tail", async (t) => {
  // nginx -t checks its configuration and exits: the VM must end rather than wait for a probe that cannot answer.
  const recipe = join(work, 'nginx-exits.yaml');
  await writeFile(
    recipe,
    // The site nginx's postinst enables listens on [::]:80 too, which a guest without IPv6 refuses: recipes/nginx.yaml's fixup.
    "packages: [nginx]\nentrypoint: { cmd: [/usr/sbin/nginx, -t] }\nusers: [www-data]\ndirectories: [/var/lib/nginx, /var/log/nginx]\nreadiness: { http: { port: 80, path: / } }\n" +
      "fixups: [{ file: /etc/nginx/sites-available/default, delete-lines: 'listen \\[::\\]:80' }]\n" +
      `# the same kernel settings as recipes/nginx.yaml: the same kernel, from the cache\nkernel: ${JSON.stringify((await loadRecipeFile('recipes/nginx.yaml')).kernel)}\n`,
  );
  const out = join(work, 'nginx-exits');
  // The build's verify step refuses such an image (it exits before its probe can pass): this one is made on purpose.
  await t.throwsAsync(build({ recipe, outDir: out, kernel: false, format: 'initramfs' }), { message: /verify: \/usr\/sbin\/nginx exited with status 0 in the image's root, before it was ready/ });
  await build({ recipe, outDir: out, verify: false, format: 'initramfs' });
  const vm = await qemu.create(out);
  started.push(vm);
  const failure = await t.throwsAsync(vm.waitReady(undefined, { timeoutMs: 60_000 }), { instanceOf: TinyxError });
  t.regex(failure?.message ?? '', /the VM stopped before it was ready \(QEMU exit status 0\)/);
  t.regex(failure?.message ?? '', /tinyx: nginx-exits exited with status 0/);
  t.is(await vm.state(), 'stopped');
  await vm.destroy();
});

test.serial('--detach leaves the VM running: ps, logs, pause, unpause, stop; a VM whose QEMU died shows as stopped and stop cleans it', async (t) => {
  const run = await runCli(['run', nginxDir, '--detach', '--tcg-cache', '16', '--json']);
  t.is(run.code, 0, run.stderr);
  const { id, forwards } = JSON.parse(run.stdout) as { id: string; forwards: { host: number; guest: number }[] };
  const port = forwards.find((f) => f.guest === 80)!.host;
  t.teardown(() => runCli(['stop', id]).then(() => undefined));
  t.not(qemuProcessesOf(id), '', 'QEMU outlives the tinyx process');
  // --tcg-cache bounds TCG's translation cache; under KVM there is none to bound (the argv of both: test/unit/qemu-argv.test.ts).
  t.regex(qemuProcessesOf(id), hostAccel.accel === 'tcg' ? /-accel tcg,tb-size=16 / : /-accel kvm -cpu host /);
  const vm = await qemu.get(id);
  await vm.waitReady();
  t.is((await get(port)).status, 200);

  const listed = JSON.parse((await runCli(['ps', '--json'])).stdout) as { vms: { id: string; state: string }[] };
  t.is(listed.vms.find((v) => v.id === id)?.state, 'running');
  t.is((await runCli(['pause', id])).code, 0);
  t.is((JSON.parse((await runCli(['ps', '--json'])).stdout) as { vms: { id: string; state: string }[] }).vms.find((v) => v.id === id)?.state, 'paused');
  t.is((await runCli(['unpause', id])).code, 0);
  t.is((await get(port)).status, 200);
  t.regex((await runCli(['logs', id])).stdout, /tinyx: ready \(listening on 80\)/);

  // QEMU killed behind tinyx's back: ps says so, stop removes what is left.
  execFileSync('pkill', ['-9', '-f', `${runtimeDir()}/${id}/`]);
  await new Promise((r) => setTimeout(r, 300));
  t.is((JSON.parse((await runCli(['ps', '--json'])).stdout) as { vms: { id: string; state: string }[] }).vms.find((v) => v.id === id)?.state, 'stopped');
  const pause = await runCli(['pause', id]);
  t.is(pause.code, 2);
  t.regex(pause.stderr, /its QEMU is no longer running/);
  t.is((await runCli(['stop', id])).code, 0);
  t.false((await readdir(runtimeDir()).catch(() => [] as string[])).includes(id));
  const unknown = await runCli(['stop', 'no-such-vm']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /no VM with id no-such-vm/);
});

function interfaceExists(name: string): boolean {
  try {
    execFileSync('ip', ['link', 'show', name], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test.serial('--network bridge: the VM has its own address on tinyx0; save stops it, restore brings it back at that address; stop removes tap and lease', async (t) => {
  const both = await runCli(['run', nginxDir, '--network', 'bridge', '--publish', '8080:80']);
  t.is(both.code, 2);
  t.regex(both.stderr, /--publish goes with --network user/);
  const run = await runCli(['run', nginxDir, '--network', 'bridge', '--detach', '--json']);
  t.is(run.code, 0, run.stderr);
  const { id, address, forwards } = JSON.parse(run.stdout) as { id: string; address: string; forwards: unknown[] };
  t.teardown(() => runCli(['stop', id]).then(() => undefined));
  t.regex(address, /^10\.213\.\d+\.\d+$/);
  t.deepEqual(forwards, [], 'no port forwards on a bridge');
  const tap = `tx-${id.slice(id.lastIndexOf('-') + 1)}`;
  t.true(interfaceExists(tap));
  t.regex(execFileSync('ip', ['-o', 'link', 'show', tap], { encoding: 'utf8' }), /master tinyx0/);
  await (await qemu.get(id)).waitReady();
  const page = await get(80, '/', address);
  t.is(page.status, 200);
  t.regex(page.body, /Welcome to nginx/);
  const ps = JSON.parse((await runCli(['ps', '--json'])).stdout) as { vms: { id: string; address: string | null }[] };
  t.is(ps.vms.find((v) => v.id === id)?.address, address);

  const state = join(work, 'bridged.state');
  const save = await runCli(['save', id, state, '--json']);
  t.is(save.code, 0, save.stderr);
  t.true((JSON.parse(save.stdout) as { stopped: boolean }).stopped);
  t.is(qemuProcessesOf(id), '', 'save stops the VM');
  t.false(interfaceExists(tap), 'its tap is gone');
  await t.throwsAsync(get(80, '/', address));

  const restore = await runCli(['restore', state, '--detach', '--json']);
  t.is(restore.code, 0, restore.stderr);
  const back = JSON.parse(restore.stdout) as { id: string; address: string };
  t.teardown(() => runCli(['stop', back.id]).then(() => undefined));
  t.is(back.address, address, 'the guest keeps the address its memory holds');
  await (await qemu.get(back.id)).waitReady(undefined, { timeoutMs: 30_000 });
  t.is((await get(80, '/', address)).status, 200);

  t.is((await runCli(['stop', back.id])).code, 0);
  t.false(interfaceExists(`tx-${back.id.slice(back.id.lastIndexOf('-') + 1)}`));
  t.false((await readdir(join(runtimeDir(), '.leases')).catch(() => [] as string[])).includes(address), 'the address is free again');
  t.is(qemuProcessesOf(back.id), '');
});

test.serial('Ctrl-C during run --check: exit 130, QEMU stopped, its runtime directory gone', async (t) => {
  const cli = startCli(['run', nginxDir, '--check', '--memory', '64']);
  const line = await cli.waitForLine(/^\S+: qemu microvm/, 60_000);
  const id = line.split(':')[0]!;
  t.not(qemuProcessesOf(id), '', 'QEMU was running');
  cli.child.kill('SIGINT');
  const result = await cli.done;
  t.is(result.code, 130, result.stderr);
  t.is(qemuProcessesOf(id), '', 'no QEMU left');
  t.false((await readdir(runtimeDir())).includes(id), 'no runtime directory left');
});

test.serial('a port in use for --publish: exit 2 naming the port, before QEMU starts; nothing left', async (t) => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => holder.close());
  const port = (holder.address() as { port: number }).port;
  const before = (await readdir(runtimeDir())).filter((n) => !n.startsWith('.'));
  const result = await runCli(['run', nginxDir, '--check', '--publish', `${port}:80`]);
  t.is(result.code, 2, result.stderr);
  t.regex(result.stderr, new RegExp(`tinyx: error: --publish ${port}:80: 127\\.0\\.0\\.1:${port} is in use by another program`));
  t.regex(result.stderr, /hint: choose another host port/);
  t.deepEqual((await readdir(runtimeDir())).filter((n) => !n.startsWith('.')), before, 'no VM directory made');
});

test.serial('save over a file that is not a tinyx state: exit 2, the file kept, the VM still running', async (t) => {
  const run = await runCli(['run', nginxDir, '--detach', '--memory', '64', '--json']);
  t.is(run.code, 0, run.stderr);
  const { id } = JSON.parse(run.stdout) as { id: string };
  t.teardown(() => runCli(['stop', id]).then(() => undefined));
  const precious = join(work, 'thesis.pdf');
  await writeFile(precious, 'precious\n');
  const save = await runCli(['save', id, precious]);
  t.is(save.code, 2, save.stderr);
  t.regex(save.stderr, /thesis\.pdf: exists, and .*thesis\.pdf\.json is not a tinyx state description beside it/);
  t.is(await readFile(precious, 'utf8'), 'precious\n');
  const ps = JSON.parse((await runCli(['ps', '--json'])).stdout) as { vms: { id: string; state: string }[] };
  t.is(ps.vms.find((v) => v.id === id)?.state, 'running', 'refused before the VM was paused');
});

test.serial('load: 30 run --detach at once, ps while they start, 10 QEMUs killed with SIGKILL, stop of all: every VM accounted for, nothing left', async (t) => {
  const vmsBefore = (await readdir(runtimeDir())).filter((n) => !n.startsWith('.'));
  const began = performance.now();
  const phase = (name: string): void => t.log(`${name}: ${((performance.now() - began) / 1000).toFixed(1)} s`);
  const starts = Array.from({ length: 30 }, () => runCli(['run', nginxDir, '--detach', '--memory', '48', '--tcg-cache', '8', '--json']));
  // tinyx ps while they start: it lists what is there, and never fails on a VM half-made.
  const psDuring = await runCli(['ps', '--json']);
  t.is(psDuring.code, 0, psDuring.stderr);
  const results = await Promise.all(starts);
  for (const r of results) t.is(r.code, 0, r.stderr);
  const ids = results.map((r) => (JSON.parse(r.stdout) as { id: string }).id);
  t.teardown(async () => {
    for (const id of ids) await runCli(['stop', id]);
  });
  t.is(new Set(ids).size, 30, 'thirty different ids');
  phase('30 started');

  for (const id of ids.slice(0, 10)) execFileSync('pkill', ['-9', '-f', `${runtimeDir()}/${id}/`]);
  await new Promise((r) => setTimeout(r, 500));
  const ps = JSON.parse((await runCli(['ps', '--json'])).stdout) as { vms: { id: string; state: string }[] };
  const states = new Map(ps.vms.map((v) => [v.id, v.state]));
  t.deepEqual(ids.map((id) => states.get(id)).filter((s) => s === 'stopped').length, 10, 'the ten killed show as stopped');
  t.true(ids.slice(10).every((id) => states.get(id) === 'running' || states.get(id) === 'paused'), 'the twenty others run');

  phase('10 killed, ps');
  const stops = await Promise.all(ids.map((id) => runCli(['stop', id])));
  phase('30 stopped');
  for (const s of stops) t.is(s.code, 0, s.stderr);
  for (const id of ids) t.is(qemuProcessesOf(id), '', `no QEMU of ${id}`);
  t.deepEqual((await readdir(runtimeDir())).filter((n) => !n.startsWith('.')).sort(), vmsBefore.sort(), 'no runtime directory left');
});
