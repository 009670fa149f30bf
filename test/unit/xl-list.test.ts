import test from 'ava';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { domainState, parseXlListLong, parseXlListTable } from '@tinyx/toolstack/internals';

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
