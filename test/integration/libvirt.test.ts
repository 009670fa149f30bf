import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { build } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { DEFAULT_BRIDGE, ensureBridge } from '@tinyx/toolstack/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli } from '../helpers/cli.js';

// tinyx export libvirt, booted by a real libvirt: Debian's libvirtd and its
// QEMU driver (domain type qemu: TCG here), the guest on tinyx's bridge and
// asked over HTTP from the host.
const test = integrationTest({ kernel: true, tools: ['libvirtd', 'virtlogd', 'virsh', 'virt-xml-validate', 'xmllint', 'qemu-system-x86_64', 'ip', 'pgrep', 'pkill'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-libvirt-'));
const nginxDir = join(work, 'nginx');
const domain = `tinyx-test-${randomBytes(3).toString('hex')}`;
// Far above the addresses tinyx run leases from the bottom of the bridge's /16.
const ADDRESS = '10.213.250.2';
const CONNECT = ['-c', 'qemu:///system'];
const startedDaemons: string[] = [];

function virsh(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync('virsh', [...CONNECT, ...args], { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test.before(async () => {
  // libvirt's QEMU runs as libvirt-qemu: the image's directory must be reachable by others (mkdtemp makes it 0700).
  await chmod(work, 0o755);
  // nginx's kernel is the one kernel.test.ts builds (a cache hit).
  await build({ recipe: 'nginx', outDir: nginxDir, format: 'initramfs' });
  await ensureBridge(DEFAULT_BRIDGE);
  // The daemons, when nothing has started them (a host without systemd, as CI's): stopped again after.
  for (const daemon of ['virtlogd', 'libvirtd']) {
    if (spawnSync('pgrep', ['-x', daemon]).status === 0) continue;
    execFileSync(daemon, ['-d']);
    startedDaemons.push(daemon);
  }
  for (let i = 0; virsh('version').code !== 0; i++) {
    if (i > 100) throw new Error(`libvirtd does not answer: ${virsh('version').out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test.after.always(async () => {
  if (virsh('domstate', domain).code === 0) virsh('destroy', domain);
  for (const daemon of startedDaemons.reverse()) spawnSync('pkill', ['-x', daemon]);
  await removeTree(work);
});

function get(host: string, port = 80): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

test.serial('the exported domain validates against libvirt\'s schema; virsh create boots it and nginx answers HTTP at its address on the bridge; virsh destroy leaves no QEMU behind', async (t) => {
  const xmlFile = join(work, 'nginx.xml');
  const consoleFile = join(work, 'console.log');
  const exported = await runCli(['export', 'libvirt', nginxDir, '--name', domain, '--bridge', DEFAULT_BRIDGE.bridge, '--address', `${ADDRESS}/${DEFAULT_BRIDGE.prefixLength}`, '--gateway', DEFAULT_BRIDGE.gateway, '--console-file', consoleFile, '--out', xmlFile]);
  t.is(exported.code, 0, exported.stderr);
  const xml = await readFile(xmlFile, 'utf8');
  t.regex(xml, /<domain type='(qemu|kvm)'>/);
  t.regex(xml, new RegExp(`<kernel>${nginxDir}/vmlinuz</kernel>`));
  t.regex(xml, new RegExp(`<initrd>${nginxDir}/initrd\\.cpio\\.gz</initrd>`));
  t.regex(xml, new RegExp(`tinyx\\.ip=${ADDRESS.replace(/\./g, '\\.')}/16 tinyx\\.gw=10\\.213\\.0\\.1</cmdline>`));
  t.notRegex(exported.stderr, /cannot reach/, 'no warning: the directory is reachable');
  const valid = spawnSync('virt-xml-validate', [xmlFile, 'domain'], { encoding: 'utf8' });
  t.is(valid.status, 0, `${valid.stdout}${valid.stderr}`);

  const created = virsh('create', xmlFile);
  t.is(created.code, 0, created.out);
  let status: number | undefined;
  const deadline = Date.now() + 120_000;
  while (status !== 200 && Date.now() < deadline) {
    status = await get(ADDRESS);
    if (status !== 200) await new Promise((r) => setTimeout(r, 250));
  }
  t.is(status, 200, `nginx did not answer at ${ADDRESS}; console:\n${existsSync(consoleFile) ? (await readFile(consoleFile, 'utf8')).slice(-2000) : '(none)'}`);
  t.regex(await readFile(consoleFile, 'utf8'), /tinyx: ready \(listening on 80\)/);
  t.regex(virsh('domstate', domain).out, /running/);

  const destroyed = virsh('destroy', domain);
  t.is(destroyed.code, 0, destroyed.out);
  t.notRegex(virsh('list', '--all', '--name').out, new RegExp(domain), 'a transient domain is gone once destroyed');
  t.is(spawnSync('pgrep', ['-f', `guest=${domain}`]).status, 1, 'no QEMU of the domain left');
  t.is(await get(ADDRESS), undefined, 'nothing answers at its address');
});

test.serial('bad input is named: --bridge without --address, an address without its prefix, a directory that is no image; an image libvirt\'s QEMU cannot reach is written with a warning', async (t) => {
  const hidden = await mkdtemp(join(tmpdir(), 'tinyx-it-libvirt-hidden-'));
  try {
    const warned = await runCli(['export', 'libvirt', nginxDir.replace(work, hidden)], {});
    t.is(warned.code, 2, 'no image there yet');
    await cp(nginxDir, join(hidden, 'nginx'), { recursive: true });
    const reached = await runCli(['export', 'libvirt', join(hidden, 'nginx')]);
    t.is(reached.code, 0, reached.stderr);
    t.regex(reached.stderr, new RegExp(`libvirt's QEMU runs as libvirt-qemu and cannot reach ${hidden}`));
    t.regex(reached.stdout, /^<!-- written by tinyx export libvirt -->\n<domain /);
    // --out replaces an export of its own, never a file of the user's.
    const mine = join(hidden, 'mine.xml');
    await writeFile(mine, '<domain type="kvm"><name>mine</name></domain>\n');
    const refused = await runCli(['export', 'libvirt', join(hidden, 'nginx'), '--out', mine]);
    t.is(refused.code, 2);
    t.regex(refused.stderr, /--out .*mine\.xml: is a file tinyx did not write; tinyx replaces only a domain tinyx export libvirt wrote/);
    t.is(await readFile(mine, 'utf8'), '<domain type="kvm"><name>mine</name></domain>\n');
    const ours = join(hidden, 'ours.xml');
    t.is((await runCli(['export', 'libvirt', join(hidden, 'nginx'), '--out', ours])).code, 0);
    t.is((await runCli(['export', 'libvirt', join(hidden, 'nginx'), '--out', ours, '--memory', '64'])).code, 0, 'its own export is replaced');
    t.regex(await readFile(ours, 'utf8'), /<memory unit='MiB'>64<\/memory>/);
  } finally {
    await removeTree(hidden);
  }

  const lone = await runCli(['export', 'libvirt', nginxDir, '--bridge', 'tinyx0']);
  t.is(lone.code, 2);
  t.regex(lone.stderr, /--bridge needs --address/);
  const bare = await runCli(['export', 'libvirt', nginxDir, '--bridge', 'tinyx0', '--address', '10.213.250.3']);
  t.is(bare.code, 2);
  t.regex(bare.stderr, /--address 10\.213\.250\.3: not an IPv4 address with its prefix length/);
  const none = await runCli(['export', 'libvirt', work]);
  t.is(none.code, 2);
  t.regex(none.stderr, /is not an image directory \(no manifest\.json\)/);
});

test.serial("a Xen image gives a domain for libvirt's libxl driver that validates against libvirt's schema: PVH at the vmlinux, or PV", async (t) => {
  // nginx's xen-pvh kernel is the one kernel.test.ts builds (a cache hit). There is no Xen here for libvirt to boot it on:
  // the Xen tier boots the same kernel and root with xl (test/xen).
  const xenDir = join(work, 'nginx-xen');
  await build({ recipe: 'nginx', outDir: xenDir, platform: 'xen-pvh' });
  for (const guest of ['pvh', 'pv']) {
    const exported = await runCli(['export', 'libvirt', xenDir, '--xen-guest', guest, '--bridge', 'xenbr0', '--address', '10.213.0.2/16', '--gateway', '10.213.0.1', '--json']);
    t.is(exported.code, 0, exported.stderr);
    const result = JSON.parse(exported.stdout) as { driver: string; accel: string | null; xml: string };
    t.is(result.driver, 'libxl');
    t.is(result.accel, null);
    t.regex(result.xml, guest === 'pvh' ? /<type arch='x86_64' machine='xenpvh'>xenpvh<\/type>/ : /<type arch='x86_64' machine='xenpv'>linux<\/type>/);
    t.regex(result.xml, new RegExp(`<kernel>${xenDir}/vmlinux</kernel>\\n\\s+<initrd>${xenDir}/initrd\\.cpio\\.gz</initrd>`));
    t.notRegex(exported.stderr, /warning/, 'libxl runs as root in dom0: no warning about libvirt-qemu');
    const xmlFile = join(work, `xen-${guest}.xml`);
    await writeFile(xmlFile, result.xml);
    const valid = spawnSync('virt-xml-validate', [xmlFile, 'domain'], { encoding: 'utf8' });
    t.is(valid.status, 0, `${valid.stdout}${valid.stderr}`);
  }
  const consoleFile = await runCli(['export', 'libvirt', xenDir, '--console-file', join(work, 'console.log')]);
  t.is(consoleFile.code, 2);
  t.regex(consoleFile.stderr, /--console-file: libvirt's Xen console is a pty/);
});
