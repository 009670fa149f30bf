import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { build } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { ToolstackError, getBackend, probeTcp, runtimeDir, type QemuBackend, type QemuVm } from '@tinyx/toolstack';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli } from '../helpers/cli.js';

// Boots real images under QEMU (TCG here: this host's KVM cannot run a Linux
// guest) and talks to the app over the network with a real client.
const test = integrationTest(['debootstrap', 'objdump', 'make', 'gcc', 'qemu-system-x86_64']);
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-run-'));
const nginxDir = join(work, 'nginx');
const qemu = getBackend('qemu') as QemuBackend;
const started: QemuVm[] = [];
test.before(async () => {
  // nginx's kernel is the one kernel.test.ts builds: with the shared cache, a hit.
  await build({ recipe: 'nginx', outDir: nginxDir });
});
test.after.always(async () => {
  for (const vm of started) await vm.destroy().catch(() => undefined);
  await removeTree(work);
});

function get(port: number, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
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
  t.is(vm.accel.accel, 'tcg', vm.accel.reason);
  const ready = await vm.waitReady();
  t.true(ready.ms > 0 && ready.ms < 60_000);
  t.regex(await vm.console(), /tinyx: ready \(listening on 80\)/);
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

test.serial('tinyx run --check: boots, probes, prints the time to ready, stops', async (t) => {
  const result = await runCli(['run', nginxDir, '--check', '--json']);
  t.is(result.code, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { ok: boolean; readyMs: number; accel: { accel: string; reason: string }; id: string };
  t.true(json.ok);
  t.true(json.readyMs > 0);
  t.is(json.accel.accel, 'tcg');
  t.is(qemuProcessesOf(json.id), '');
});

test.serial('a broken image is a named error, not a hang: no kernel; a truncated initrd', async (t) => {
  const noKernel = join(work, 'no-kernel');
  await cp(nginxDir, noKernel, { recursive: true });
  await rm(join(noKernel, 'vmlinux'));
  const missing = await t.throwsAsync(qemu.create(noKernel), { instanceOf: ToolstackError });
  t.is(missing?.code, 'E_IMAGE_FILE');
  t.regex(missing?.message ?? '', /no-kernel\/vmlinux is missing \(the manifest names it as the ELF kernel\)/);

  const truncated = join(work, 'truncated');
  await cp(nginxDir, truncated, { recursive: true });
  const initrd = join(truncated, 'initrd.cpio.gz');
  await truncate(initrd, Math.floor((await stat(initrd)).size / 3));
  const vm = await qemu.create(truncated);
  started.push(vm);
  const failure = await t.throwsAsync(vm.waitReady(undefined, { timeoutMs: 60_000 }), { instanceOf: ToolstackError });
  t.is(failure?.code, 'E_NOT_READY');
  t.regex(failure?.message ?? '', /panicked|stopped before it was ready/);
  t.regex(failure?.message ?? '', /console \(last lines\):/);
  await vm.destroy();
  const cli = await runCli(['run', truncated, '--check', '--timeout', '60']);
  t.is(cli.code, 1, cli.stderr);
  t.regex(cli.stderr, /truncated|nginx: the (guest kernel panicked|VM stopped before it was ready)/);
});

test.serial('save nginx to a file, destroy it, restore it: it answers again', async (t) => {
  const vm = await qemu.create(nginxDir);
  started.push(vm);
  await vm.waitReady();
  const state = join(work, 'nginx.state');
  await vm.save(state);
  t.is(await vm.state(), 'paused', 'saving leaves the source paused');
  t.true((await stat(state)).size > 1024 * 1024, 'the state holds guest memory');
  await vm.destroy();
  const restored = await qemu.restore(state);
  started.push(restored);
  t.true(restored.restored);
  await restored.waitReady(undefined, { timeoutMs: 30_000 });
  const page = await get(restored.hostPort(80)!);
  t.is(page.status, 200);
  t.regex(page.body, /Welcome to nginx/);
  await restored.destroy();
  t.is(qemuProcessesOf(restored.id), '');
  await t.throwsAsync(qemu.restore(join(work, 'no-such.state')), { instanceOf: ToolstackError, message: /is not a state saved by tinyx/ });
});

test.serial("the app's exit ends the VM, and is reported with the console's tail", async (t) => {
  // nginx -t checks its configuration and exits: the VM must end rather than wait for a probe that cannot answer.
  const recipe = join(work, 'nginx-exits.yaml');
  await writeFile(
    recipe,
    'packages: [nginx]\nentrypoint: { cmd: [/usr/sbin/nginx, -t] }\nusers: [www-data]\ndirectories: [/var/lib/nginx, /var/log/nginx]\nreadiness: { http: { port: 80, path: / } }\n' +
      '# the same features as recipes/nginx.yaml: the same kernel, from the cache\nkernel: { features: [net, unix, epoll, eventfd, futex, file-locking, shmem] }\n',
  );
  const out = join(work, 'nginx-exits');
  await build({ recipe, outDir: out });
  const vm = await qemu.create(out);
  started.push(vm);
  const failure = await t.throwsAsync(vm.waitReady(undefined, { timeoutMs: 60_000 }), { instanceOf: ToolstackError });
  t.regex(failure?.message ?? '', /the VM stopped before it was ready \(QEMU exit status 0\)/);
  t.regex(failure?.message ?? '', /tinyx: nginx-exits exited with status 0/);
  t.is(await vm.state(), 'stopped');
  await vm.destroy();
});

test.serial('--detach leaves the VM running: ps, logs, pause, unpause, stop; a VM whose QEMU died shows as stopped and stop cleans it', async (t) => {
  const run = await runCli(['run', nginxDir, '--detach', '--json']);
  t.is(run.code, 0, run.stderr);
  const { id, forwards } = JSON.parse(run.stdout) as { id: string; forwards: { host: number; guest: number }[] };
  const port = forwards.find((f) => f.guest === 80)!.host;
  t.teardown(() => runCli(['stop', id]).then(() => undefined));
  t.not(qemuProcessesOf(id), '', 'QEMU outlives the tinyx process');
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
