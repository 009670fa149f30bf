import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_CMDLINE, PLATFORMS, PLATFORM_NAMES, TinyxError, kernelFor, openImage, readManifest, type ErrorCode, type Platform, type PlatformFacts } from '@tinyx/image';
import { findVm, getBackend, listVms, restoreVm, type QemuRecord, type XenRecord } from '@tinyx/toolstack';
import { REPO_ROOT } from '../helpers/cli.js';

// The machine contract without a VMM: VMs found by their records in a real
// runtime directory, whichever backend wrote them; the image directory read
// through its one reader; the PLATFORMS table checked against the files it
// names. Booting through the contract is the integration tier's (QEMU) and
// the xen tier's (a real Xen).

// Serial: the runtime directory is process-wide (TINYX_RUNTIME_DIR).
async function runtime(t: { teardown(f: () => Promise<void>): void }): Promise<{ root: string; runtime: string; image: (platform: Platform, manifest?: object) => Promise<string> }> {
  const root = await mkdtemp(join(tmpdir(), 'tinyx-machine-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = join(root, 'run');
  await mkdir(dir, { mode: 0o700 });
  process.env.TINYX_RUNTIME_DIR = dir;
  const image = async (platform: Platform, manifest: object = {}): Promise<string> => {
    const path = join(root, `img-${platform}`);
    await mkdir(path, { recursive: true });
    for (const name of ['vmlinuz', 'vmlinux', 'initrd.cpio.gz']) await writeFile(join(path, name), '');
    const artifacts = { rootfs: 'initrd.cpio.gz', kernel: 'vmlinuz', vmlinux: 'vmlinux' };
    await writeFile(join(path, 'manifest.json'), JSON.stringify({ manifestVersion: 1, name: 'nginx', platform, readiness: { http: { port: 80, path: '/' } }, artifacts, ...manifest }));
    return path;
  };
  return { root, runtime: dir, image };
}

async function record(runtimeDir: string, value: object): Promise<void> {
  const id = (value as { id: string }).id;
  await mkdir(join(runtimeDir, id), { recursive: true });
  await writeFile(join(runtimeDir, id, 'vm.json'), JSON.stringify(value));
}

test.serial("a VM is found by id through its record's backend, listed with the same description fields whatever the backend, and a record without backend is an older tinyx's QEMU VM", async (t) => {
  const { runtime: dir, image } = await runtime(t);
  const kvm = await image('kvm');
  const pvh = await image('xen-pvh');
  const qemu: Omit<QemuRecord, 'backend'> = { id: 'nginx-aaaaaa', pid: 999999999, imageDir: kvm, name: 'nginx', accel: { accel: 'tcg', reason: 'test' }, forwards: [{ host: 8080, guest: 80 }], memoryMiB: 48, vcpus: 1, machine: 'microvm', restored: false, startedAtEpochMs: 0 };
  await record(dir, qemu);
  const network = { bridge: 'xenbr0', address: '10.213.0.2', prefixLength: 16, gateway: '10.213.0.1', mac: '00:16:3e:bb:bb:bb' };
  const xen: XenRecord = { backend: 'xen', id: 'nginx-bbbbbb', imageDir: pvh, name: 'nginx', platform: 'xen-pvh', type: 'pvh', memoryMiB: 128, vcpus: 1, network, hotplug: 'lean', config: '', consoleLog: '/nonexistent/guest.log', restored: false, pooled: true, startedAtEpochMs: 0 };
  await record(dir, xen);
  await mkdir(join(dir, '.pool'));
  await mkdir(join(dir, 'half-made'));

  const q = await findVm('nginx-aaaaaa');
  t.is(q.backend, 'qemu', 'no backend field: QEMU');
  t.is(await q.state(), 'stopped', 'its QEMU (no such pid) is gone');
  t.deepEqual(q.endpoint(80), { host: '127.0.0.1', port: 8080 });
  const x = await findVm('nginx-bbbbbb');
  t.is(x.backend, 'xen');
  t.deepEqual(x.endpoint(80), { host: '10.213.0.2', port: 80 });
  t.is(x.image.platform, 'xen-pvh');

  const described = (await listVms()).map((vm) => vm.describe());
  t.deepEqual(described.map((d) => d.id), ['nginx-aaaaaa', 'nginx-bbbbbb'], 'dot directories and directories without a record are not VMs');
  t.deepEqual(Object.keys(described[0]!).sort(), Object.keys(described[1]!).sort(), 'one description for every backend');
  t.like(described[0], { backend: 'qemu', guest: 'microvm', runsAs: 'tcg', pid: 999999999, address: null, pooled: false, origin: 'created', instantiationMs: null });
  t.like(described[1], { backend: 'xen', guest: 'pvh', runsAs: 'xen-pvh (pool)', pid: null, address: '10.213.0.2', bridge: 'xenbr0', pooled: true });

  await t.throwsAsync(getBackend('qemu').get('nginx-bbbbbb'), { instanceOf: TinyxError, message: /nginx-bbbbbb is a xen VM, not a qemu one/ });
  await t.throwsAsync(getBackend('xen').get('nginx-aaaaaa'), { instanceOf: TinyxError, message: /nginx-aaaaaa is a qemu VM, not a xen one/ });
  const none = await t.throwsAsync(findVm('nginx-cccccc'), { instanceOf: TinyxError });
  t.is((none as TinyxError).code, 'E_NO_VM');
  await t.throwsAsync(findVm('../etc'), { instanceOf: TinyxError, message: /is not a VM id/ });
});

test.serial('a VM whose image directory is gone is still found (to be stopped): its record says what the image was', async (t) => {
  const { runtime: dir, root } = await runtime(t);
  await record(dir, { backend: 'xen', id: 'redis-cccccc', imageDir: join(root, 'removed'), name: 'redis', platform: 'xen-pv', type: 'pv', memoryMiB: 64, vcpus: 1, network: { bridge: 'xenbr0', address: '10.213.0.3', prefixLength: 16, gateway: '10.213.0.1', mac: '00:16:3e:cc:cc:cc' }, hotplug: 'xen', config: '', consoleLog: '/nonexistent/g.log', restored: false, pooled: false, startedAtEpochMs: 0 });
  const vm = await findVm('redis-cccccc');
  t.is(vm.image.name, 'redis');
  t.is(vm.image.platform, 'xen-pv');
  t.is(vm.describe().image, join(root, 'removed'));
});

test.serial('restore goes to the backend that saved the state (FILE.json says; an older QEMU file has no backend); anything else is refused', async (t) => {
  const { root } = await runtime(t);
  const file = join(root, 'x.state');
  await writeFile(file, '');
  await writeFile(`${file}.json`, JSON.stringify({ imageDir: join(root, 'nowhere'), memoryMiB: 64, vcpus: 1, machine: 'microvm' }));
  // QEMU's restore opens the image first: the error names the missing image directory, so QEMU's path was taken.
  await t.throwsAsync(restoreVm(file), { instanceOf: TinyxError, message: new RegExp(`${join(root, 'nowhere')} is not an image directory`) });
  await writeFile(`${file}.json`, 'not json');
  await t.throwsAsync(restoreVm(file), { instanceOf: TinyxError, message: /is not a state saved by tinyx/ });
  await writeFile(`${file}.json`, JSON.stringify({ backend: 'xen', id: 'nginx-dddddd', imageDir: join(root, 'nowhere'), type: 'pv', memoryMiB: 64, vcpus: 1 }));
  await t.throwsAsync(getBackend('qemu').restore(file), { instanceOf: TinyxError, message: /holds a xen VM, not a QEMU one/ });
});

test.serial("the image directory's one reader: the manifest's command line (or the default of images that predate it), the kernel each guest loads, named refusals", async (t) => {
  const { root, image } = await runtime(t);
  const kvm = await openImage(await image('kvm', { boot: { cmdline: 'quiet panic=-1 root=/dev/vda ro' } }));
  t.is(kvm.cmdline, 'quiet panic=-1 root=/dev/vda ro');
  t.is(kernelFor(kvm, 'microvm'), join(root, 'img-kvm', 'vmlinux'));
  t.is(kernelFor(kvm, 'q35'), join(root, 'img-kvm', 'vmlinuz'));
  const pv = await openImage(await image('xen-pv'));
  t.is(pv.cmdline, IMAGE_CMDLINE, 'an image built before boot.cmdline');
  t.is(pv.facts, PLATFORMS['xen-pv']);

  const bad = async (manifest: object, pattern: RegExp, code: ErrorCode): Promise<void> => {
    const dir = join(root, 'bad');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const error = await t.throwsAsync(openImage(dir), { instanceOf: TinyxError, message: pattern });
    t.is((error as TinyxError).code, code);
  };
  await bad({ manifestVersion: 2, name: 'x', artifacts: { rootfs: 'r' } }, /has manifestVersion 2, this tinyx reads 1/, 'E_BAD_MANIFEST');
  await bad({ manifestVersion: 1, name: 'x', platform: 'firecracker', artifacts: { rootfs: 'r', kernel: 'k' } }, /unknown platform "firecracker"/, 'E_PLATFORM');
  await bad({ manifestVersion: 1, name: 'x', platform: 'kvm', artifacts: { rootfs: 'r', kernel: null, vmlinux: null } }, /has no kernel \(it was built with --no-kernel\)/, 'E_NO_KERNEL');
  await bad({ manifestVersion: 1, name: 'x', platform: 'kvm', artifacts: { rootfs: 'r', kernel: 'vmlinuz' } }, /bad\/vmlinuz is missing \(the manifest names it as the kernel\)/, 'E_IMAGE_FILE');
  await t.throwsAsync(readManifest(join(root, 'nothing')), { message: /is not an image directory \(no manifest\.json\)/ });
});

test('PLATFORMS: every fragment it names ships in kernel/, every guest loads a kernel its platform has, and every backend it names is registered', (t) => {
  for (const name of PLATFORM_NAMES) {
    const facts: PlatformFacts = PLATFORMS[name];
    for (const fragment of Object.values(facts.kernelFragments)) t.true(existsSync(join(REPO_ROOT, 'kernel', fragment)), `${name}: kernel/${fragment}`);
    for (const [guest, { kernel }] of Object.entries(facts.guests)) {
      t.true(kernel.some((artifact) => facts.kernelArtifacts.includes(artifact)), `${name} as ${guest}: loads one of ${facts.kernelArtifacts.join(', ')}`);
    }
    t.is(getBackend(facts.backend).name, facts.backend);
  }
  // The fragments directory has no platform the table does not know.
  return readdir(join(REPO_ROOT, 'kernel', 'platforms')).then((files) => {
    const known = new Set(PLATFORM_NAMES.flatMap((name) => Object.values(PLATFORMS[name].kernelFragments).map((f) => f.replace('platforms/', ''))));
    t.deepEqual(files.filter((f) => !known.has(f)), []);
  });
});

test.serial('a record is rewritten whole through the store (renamed into place), and no temporary file is left', async (t) => {
  const { runtime: dir, image } = await runtime(t);
  const pvh = await image('xen-pvh');
  const network = { bridge: 'xenbr0', address: '10.213.0.4', prefixLength: 16, gateway: '10.213.0.1', mac: '00:16:3e:ee:ee:ee' };
  await record(dir, { backend: 'xen', id: 'nginx-eeeeee', imageDir: pvh, name: 'nginx', type: 'pvh', memoryMiB: 128, vcpus: 1, network, hotplug: 'xen', config: '', consoleLog: '/nonexistent/g.log', restored: false, pooled: true, startedAtEpochMs: 0 });
  const vm = await getBackend('xen').get('nginx-eeeeee');
  await vm.update({ pooled: false, startedAtEpochMs: 42 });
  const written = JSON.parse(await readFile(join(dir, 'nginx-eeeeee', 'vm.json'), 'utf8')) as XenRecord;
  t.like(written, { id: 'nginx-eeeeee', pooled: false, startedAtEpochMs: 42, network });
  t.deepEqual(await readdir(join(dir, 'nginx-eeeeee')), ['vm.json']);
  t.is((await findVm('nginx-eeeeee')).describe().runsAs, 'xen-pvh', 'no longer pooled');
});
