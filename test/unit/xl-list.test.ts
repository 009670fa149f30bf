import test from 'ava';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { domainState, linesAboutDomain, parseXlListLong, parseXlListTable } from '@tinyx/toolstack/internals';

// Real output of xl 4.17 in the test harness's dom0 (see test/fixtures/xen/README.md).
const fixture = (name: string): Promise<string> => readFile(fileURLToPath(new URL(`../../fixtures/xen/${name}`, import.meta.url)), 'utf8');

test('xl list -l: every domain with its name, type, memory, kernel, command line and vif', async (t) => {
  const domains = parseXlListLong(await fixture('xl-list-l.json'));
  t.like(domains[0], { domid: 0, name: 'Domain-0', type: 'pv', memoryMiB: 1536, nics: [] }, "dom0's entry has no kernel or vif");
  const guests = domains.filter((d) => d.domid !== 0);
  t.is(guests.length, 3, 'the three pooled domains');
  for (const guest of guests) {
    t.regex(guest.name, /^nginx-[0-9a-f]{6}$/);
    t.is(guest.type, 'pvh');
    t.is(guest.memoryMiB, 128);
    t.is(guest.vcpus, 1);
    t.regex(guest.kernel ?? '', /\/vmlinux$/);
    t.regex(guest.cmdline ?? '', /^console=hvc0 .*tinyx\.ip=10\.213\.0\.\d+\/16 tinyx\.gw=10\.213\.0\.1$/);
    t.is(guest.nics.length, 1);
    t.is(guest.nics[0]?.bridge, 'xenbr0');
    t.is(guest.nics[0]?.mac, `00:16:3e:${guest.name.slice(6, 8)}:${guest.name.slice(8, 10)}:${guest.name.slice(10, 12)}`, 'the MAC the backend derived from the id');
  }
  t.is(new Set(guests.map((g) => g.cmdline)).size, 3, 'each has an address of its own');
});

test('xl list -l with no domain but dom0 prints nothing or an empty array; anything else is an error', (t) => {
  t.deepEqual(parseXlListLong(''), []);
  t.deepEqual(parseXlListLong('[\n]\n'), []);
  t.throws(() => parseXlListLong('(domain (domid 1))'), { message: /did not print JSON/ });
  t.throws(() => parseXlListLong('{"domid": 1}'), { message: /not an array/ });
});

test('xl list: the table, and the state its letters mean', async (t) => {
  const rows = parseXlListTable(await fixture('xl-list.txt'));
  t.is(rows[0]?.name, 'Domain-0');
  t.is(rows[0]?.domid, 0);
  t.is(domainState(rows[0]!.flags), 'running');
  const guests = rows.slice(1);
  t.is(guests.length, 3);
  for (const row of guests) {
    t.is(row.flags, '--p---');
    t.is(domainState(row.flags), 'paused', 'created with xl create -p');
  }
  t.is(domainState('-b----'), 'running', 'blocked is an idle running guest');
  t.is(domainState('----c-'), 'crashed');
  t.is(domainState('---s--'), 'stopped');
  t.is(domainState('-----d'), 'stopped');
  t.throws(() => parseXlListTable('Name ID Mem\nnot a row\n'), { message: /not a domain/ });
});

test("xl dmesg: a domain's lines are its own, with the register dump that follows them", async (t) => {
  const log = await fixture('xen-console-triple-fault.txt');
  const d5 = linesAboutDomain(log, 5);
  t.regex(d5[0] ?? '', /d5v0 Triple fault/, 'the headline first');
  t.true(d5.some((l) => /\*\*\* Dumping Dom5 vcpu#0 state/.test(l)));
  t.true(d5.some((l) => /RIP:\s+0010:\[<ffffffff8101856b>\]/.test(l)), 'the dump is part of it');
  t.regex(d5.at(-1) ?? '', /ds: 0000 {3}es: 0000/, 'to its last register line');
  t.is(d5.length, 15);
  t.false(d5.some((l) => /Dom0|d0 has/.test(l)), "dom0's lines are not domain 5's");
  const d0 = linesAboutDomain(log, 0).map((l) => l.replace(/^\(XEN\)\s+/, ''));
  t.true(d0.includes('d0 has maximum 416 PIRQs') && d0.includes('Dom0 has maximum 2 VCPUs'), 'dom0 by both of its names');
  t.false(d0.some((l) => /Triple fault|d5v0/.test(l)));
  t.deepEqual(linesAboutDomain(log, 7), [], 'a domain Xen said nothing about');
});
