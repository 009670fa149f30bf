import test from 'ava';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_BRIDGE, guestAddresses, leaseAddress, MAC_PREFIX, macFor, tapName } from '@tinyx/toolstack/internals';

test('a tap name fits IFNAMSIZ and keeps the id suffix that tells VMs apart', (t) => {
  t.is(tapName('nginx-1a2b3c'), 'tx-1a2b3c');
  t.is(tapName('a-very-long-image-name-ffffff'), 'tx-ffffff');
  t.true(tapName('x'.repeat(40)).length <= 15);
});

test('MAC addresses are locally administered, stable per id and differ between ids', (t) => {
  t.is(macFor('nginx-1a2b3c'), '52:54:00:1a:2b:3c');
  t.not(macFor('nginx-1a2b3c'), macFor('nginx-1a2b3d'));
  t.is(macFor('nginx-1a2b3c', MAC_PREFIX.xen), '00:16:3e:1a:2b:3c', "a Xen guest's MAC is under Xen's OUI");
});

test('guest addresses skip the gateway, network and broadcast addresses of each /24', (t) => {
  const all = [...guestAddresses({ bridge: 'b', gateway: '10.9.0.1', prefixLength: 22 })];
  t.is(all[0], '10.9.0.2');
  t.false(all.includes('10.9.0.1'));
  t.false(all.some((a) => a.endsWith('.0') || a.endsWith('.255')));
  t.is(all.at(-1), '10.9.3.254');
  t.is(new Set(all).size, all.length);
});

test('leases: concurrent VMs get distinct addresses; a released or orphaned lease is given out again', async (t) => {
  const runtime = await mkdtemp(join(tmpdir(), 'tinyx-leases-'));
  t.teardown(() => rm(runtime, { recursive: true, force: true }));
  const ids = Array.from({ length: 20 }, (_, i) => `vm-${i}`);
  for (const id of ids) await mkdir(join(runtime, id));
  const addresses = await Promise.all(ids.map((id) => leaseAddress(id, runtime, DEFAULT_BRIDGE)));
  t.is(new Set(addresses).size, 20);
  t.true(addresses.includes('10.213.0.2'));
  t.is(await readFile(join(runtime, '.leases', addresses[0]!, 'owner'), 'utf8'), 'vm-0');

  // vm-3's runtime directory is gone (a crash): its address is free again, and is the lowest.
  await rm(join(runtime, 'vm-3'), { recursive: true });
  const taken = addresses[3]!;
  await mkdir(join(runtime, 'vm-new'));
  const reused = await leaseAddress('vm-new', runtime, DEFAULT_BRIDGE);
  t.is(reused, taken);
  t.is(await readFile(join(runtime, '.leases', reused, 'owner'), 'utf8'), 'vm-new');
});

test('a restore asks for its old address, and is told when another VM holds it', async (t) => {
  const runtime = await mkdtemp(join(tmpdir(), 'tinyx-leases-'));
  t.teardown(() => rm(runtime, { recursive: true, force: true }));
  await mkdir(join(runtime, 'a'));
  await mkdir(join(runtime, 'b'));
  t.is(await leaseAddress('a', runtime, DEFAULT_BRIDGE, '10.213.0.40'), '10.213.0.40');
  await t.throwsAsync(leaseAddress('b', runtime, DEFAULT_BRIDGE, '10.213.0.40'), { message: /had the address 10\.213\.0\.40, and another VM holds it now/ });
});
