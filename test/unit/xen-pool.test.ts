import test from 'ava';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { IMAGE_CMDLINE, PLATFORMS } from '@tinyx/image';
import { XenBackend, XenPool, XenVm, type CreateOptions, type PoolEntry, type XenRecord } from '@tinyx/toolstack';

/** A runtime directory with pooled VMs of a (fake) xen-pvh image: records and entries as `pool fill` leaves them, no Xen needed. */
// Serial: each test points TINYX_RUNTIME_DIR (process-wide) at its own directory.
async function pooled(t: { teardown(f: () => Promise<void>): void }, shapes: { memoryMiB: number }[]) {
  const root = await mkdtemp(join(tmpdir(), 'tinyx-pool-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const runtime = join(root, 'run');
  const image = join(root, 'nginx');
  await mkdir(image, { recursive: true });
  for (const file of ['vmlinux', 'initrd.cpio.gz']) await writeFile(join(image, file), '');
  await writeFile(join(image, 'manifest.json'), JSON.stringify({ manifestVersion: 1, name: 'nginx', platform: 'xen-pvh', readiness: null, artifacts: { rootfs: 'initrd.cpio.gz', vmlinux: 'vmlinux' } }));
  process.env.TINYX_RUNTIME_DIR = runtime;
  await mkdir(runtime, { mode: 0o700 });
  await mkdir(join(runtime, '.pool'), { recursive: true });
  const ids: string[] = [];
  for (const [i, shape] of shapes.entries()) {
    const id = `nginx-00000${i}`;
    ids.push(id);
    const network = { bridge: 'xenbr0', address: `10.213.0.${i + 2}`, prefixLength: 16, gateway: '10.213.0.1', mac: `00:16:3e:00:00:0${i}` };
    const record: XenRecord = { backend: 'xen', id, imageDir: image, name: 'nginx', type: 'pvh', memoryMiB: shape.memoryMiB, vcpus: 1, network, hotplug: 'xen', config: join(runtime, id, 'xl.cfg'), consoleLog: join(root, `guest-${id}.log`), restored: false, pooled: true, startedAtEpochMs: i };
    await mkdir(join(runtime, id));
    await writeFile(join(runtime, id, 'vm.json'), JSON.stringify(record));
    const entry: PoolEntry = { id, imageDir: image, type: 'pvh', memoryMiB: shape.memoryMiB, vcpus: 1, createdAtEpochMs: 1000 + i, createMs: 10 };
    await writeFile(join(runtime, '.pool', `${id}.json`), JSON.stringify(entry));
  }
  return { runtime, image, ids, pool: new XenPool(new XenBackend({ consoleDir: root }), join(runtime, '.pool')) };
}

test.serial('concurrent claims take each pooled domain once, oldest first, and only of the asked shape', async (t) => {
  const { runtime, image, ids, pool } = await pooled(t, [{ memoryMiB: 128 }, { memoryMiB: 128 }, { memoryMiB: 256 }, { memoryMiB: 128 }]);
  t.is((await pool.entries({ imageDir: image, memoryMiB: 128 })).length, 3);
  t.is((await pool.claim(image, { memoryMiB: 128 }))?.id, ids[0], 'the oldest first');
  const claims = await Promise.all(Array.from({ length: 6 }, () => pool.claim(image, { memoryMiB: 128 })));
  const taken = claims.filter((vm) => vm !== undefined).map((vm) => vm!.id);
  t.deepEqual([...taken].sort(), [ids[1], ids[3]], 'two claims won, each a different domain');
  t.is(claims.filter((vm) => vm === undefined).length, 4, 'the other four found the pool empty');
  const left = await pool.entries();
  t.deepEqual(left.map((e) => e.id), [ids[2]], 'the 256 MiB one waits on');
  const record = JSON.parse(await readFile(join(runtime, ids[0]!, 'vm.json'), 'utf8')) as XenRecord;
  t.false(record.pooled, 'a claimed VM is no longer pooled');
  t.deepEqual(await readdir(join(runtime, '.pool', '.claimed')), [], 'no claim marker is left');
  t.is((await pool.claim(image, { memoryMiB: 256 }))?.id, ids[2]);
});

/**
 * A stand-in for `xl create -p` (the Xen harness's pool test runs the real
 * one): a VM record in the runtime directory after a short wait, counted.
 */
class FakeBackend extends XenBackend {
  created = 0;

  constructor(
    private readonly runtime: string,
    private readonly root: string,
  ) {
    super({ consoleDir: root, hotplug: 'xen' });
  }

  override async create(imageDir: string, options: CreateOptions = {}): Promise<XenVm> {
    await new Promise((r) => setTimeout(r, 30));
    const n = ++this.created;
    const id = `nginx-${String(n).padStart(6, '0')}`;
    const network = { bridge: 'xenbr0', address: `10.213.1.${n}`, prefixLength: 16, gateway: '10.213.0.1', mac: `00:16:3e:00:01:0${n}` };
    const type = (options.guest ?? 'pvh') as 'pvh' | 'pv';
    const record: XenRecord = { backend: 'xen', id, imageDir, name: 'nginx', type, memoryMiB: options.memoryMiB ?? 128, vcpus: 1, network, hotplug: 'xen', config: '', consoleLog: join(this.root, `guest-${id}.log`), restored: false, pooled: false, startedAtEpochMs: 0 };
    await mkdir(join(this.runtime, id), { recursive: true });
    const image = { dir: imageDir, name: 'nginx', platform: 'xen-pvh', facts: PLATFORMS['xen-pvh'], readiness: null, cmdline: IMAGE_CMDLINE, kernels: { vmlinux: join(imageDir, 'vmlinux') }, rootfs: join(imageDir, 'initrd.cpio.gz'), rootAs: 'initrd' as const };
    return new XenVm(record, image, join(this.runtime, id), 0);
  }
}

test.serial('two fills at once (two runs refilling) do not overfill: the second waits for the first, then counts again', async (t) => {
  const { runtime, image } = await pooled(t, []);
  const backend = new FakeBackend(runtime, runtime);
  const pool = new XenPool(backend, join(runtime, '.pool'));
  const [a, b] = await Promise.all([pool.fill(image, 3), pool.fill(image, 3)]);
  t.is(backend.created, 3, 'three domains created in all');
  t.is(a.created.length + b.created.length, 3);
  t.is((await pool.entries({ imageDir: image })).length, 3);
  t.deepEqual(await readdir(join(runtime, '.pool', '.filling')), [], 'the lock is released');
  t.deepEqual(await pool.target(image), { size: 3, hotplug: 'xen' }, 'the size and script a refill repeats');
});

test.serial("a fill lock left by a dead process is taken over", async (t) => {
  const { runtime, image } = await pooled(t, []);
  const backend = new FakeBackend(runtime, runtime);
  const pool = new XenPool(backend, join(runtime, '.pool'));
  await pool.fill(image, 1);
  // The lock's name is the shape's key, the same as its target's.
  const [key] = await readdir(join(runtime, '.pool', '.targets'));
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  await mkdir(join(runtime, '.pool', '.filling', key!), { recursive: true });
  await writeFile(join(runtime, '.pool', '.filling', key!, 'pid'), String(dead));
  const result = await pool.fill(image, 2);
  t.is(result.total, 2);
  t.is(backend.created, 2);
});
