import test from 'ava';
import { looksSecret, loadBlacklist, planInstallMade, type InstalledPackage, type InstallMadePlan } from '@tinyx/builder/internals';
import { installRoots, type MemoryTree } from '../helpers/memory-root.js';

const ELF_HEADER = Buffer.from('7f454c4602010100000000000000000003003e00010000000000000000000000', 'hex');

const BASE_PASSWD = 'root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
const BASE_GROUP = 'root:x:0:\nadm:x:4:\nwww-data:x:33:\nnogroup:x:65534:\n';

/** A debootstrap base, much abridged: merged /usr, the /var/run and /var/lock links, apt's cache. */
const BASE: MemoryTree = {
  '/etc/passwd': BASE_PASSWD,
  '/etc/group': BASE_GROUP,
  '/bin': { link: 'usr/bin' },
  '/lib': { link: 'usr/lib' },
  '/usr/bin/sh': 'busybox',
  '/var/run': { link: '/run' },
  '/var/lock': { link: '/run/lock' },
  '/run/lock': { dir: true, mode: 0o1777 },
  '/var/cache/apt/archives/dash_0.5.12-2_amd64.deb': 'deb',
  '/var/lib/dpkg/status': '',
};

/**
 * What `apt-get install` of four made-up packages wrote on top (the layer):
 * lighty (a web server like lighttpd), hap (a proxy like haproxy, whose
 * account its postinst adds), store (like redis-tools: its postinst makes
 * /var/lib/store and /etc/store 2770), keyed (an sshd: host keys made by its
 * postinst), mc (like memcached: its postinst copies /etc/mc.conf), and
 * other, installed but not in the image's closure.
 */
const LAYER: MemoryTree = {
  '/etc/passwd': `${BASE_PASSWD}hap:x:100:101::/var/lib/hap:/usr/sbin/nologin\nstore:x:101:102::/var/lib/store:/usr/sbin/nologin\notherd:x:102:103::/nonexistent:/usr/sbin/nologin\n`,
  '/etc/group': `${BASE_GROUP}hap:x:101:\nstoregrp:x:102:\notherd:x:103:\nmcgroup:x:104:\n`,
  '/etc/passwd-': BASE_PASSWD,
  '/etc/.pwd.lock': { file: '', mode: 0o600 },
  '/etc/ld.so.cache': 'cache',
  '/etc/resolv.conf': 'nameserver 10.0.2.3\n',
  '/etc/lighty/lighty.conf': 'server.username = "www-data"\n',
  '/etc/lighty/conf-available/99-unconfigured.conf': 'index-file.names += ("index.lighty.html")\n',
  '/etc/lighty/conf-enabled/99-unconfigured.conf': { link: '../conf-available/99-unconfigured.conf' },
  '/etc/lighty/helper': { file: ELF_HEADER, mode: 0o755 },
  '/etc/systemd/system/lighty.service.d': { dir: true },
  '/etc/rc2.d/S01lighty': { link: '../init.d/lighty' },
  '/var/www/html/index.lighty.html': '<title>Welcome page</title>\n',
  '/var/cache/lighty/uploads': { dir: true, uid: 33, gid: 33 },
  '/var/cache/debconf/templates.dat': 'templates',
  '/var/log/lighty': { dir: true, mode: 0o750, uid: 33, gid: 33 },
  '/var/log/lighty/access.log': { file: '', mode: 0o640, uid: 33, gid: 4 },
  '/var/log/dpkg.log': 'install lighty',
  '/run/lighty': { dir: true, mode: 0o750, uid: 33, gid: 33 },
  '/run/adduser': '',
  '/var/lib/hap/dev': { dir: true },
  // Like haproxy's: its run directory is made at boot by systemd-tmpfiles, never by the install.
  '/usr/lib/tmpfiles.d/hap.conf': 'd /run/hap 2775 hap hap -\nd /var/lib/hap/dev 0700 hap hap -\nf /run/hap/x 0644 - - -\n',
  '/usr/lib/tmpfiles.d/other.conf': 'd /run/otherd 0755 otherd otherd -\n',
  '/var/lib/store': { dir: true, mode: 0o750, uid: 101, gid: 102 },
  '/etc/store': { dir: true, mode: 0o2770, uid: 101, gid: 102 },
  '/etc/store/store.conf': { file: 'dir /var/lib/store\n', mode: 0o640, uid: 101, gid: 102 },
  // The service's own state, private to its account (as mariadb's system tables): not a secret.
  '/var/lib/store/dump.db': { file: 'DATA', mode: 0o660, uid: 101, gid: 102 },
  // Private text configuration (as PostgreSQL's pg_hba.conf, 0640 postgres): not a secret either.
  '/etc/store/access.conf': { file: '# who may connect\nlocal all peer\n', mode: 0o640, uid: 101, gid: 102 },
  '/etc/keyed/keyed.conf': 'HostKey /etc/keyed/host_key\n',
  '/etc/keyed/host_key': { file: 'PRIVATE', mode: 0o600 },
  '/etc/keyed/host_key.pub': 'ssh-ed25519 AAAA',
  '/etc/mc.conf': '-m 64\n',
  '/etc/unrelated.conf': 'made by somebody else\n',
  '/etc/otherd/otherd.conf': 'other\n',
  '/srv/other': { dir: true },
  '/var/cache/apt/archives/dash_0.5.12-2_amd64.deb': { whiteout: true },
  '/var/lib/dpkg/statoverride': 'www-data adm 750 /var/log/lighty\n',
  '/var/lib/dpkg/info/hap.postinst': '#!/bin/sh\nadduser --system --home /var/lib/hap \\\n  --group hap\n',
  // Like libc6's, which lists the services to restart after an upgrade.
  '/var/lib/dpkg/info/glibc.postinst': '#!/bin/sh\nservices="cron hap"\n',
  '/var/lib/dpkg/info/store.postinst': '#!/bin/sh\nUSER="store"\nSetup_dir /var/lib/store 750 ${USER}\nSetup_dir /etc/store 2770 ${USER}\n',
  '/var/lib/dpkg/info/mc:amd64.postinst': '#!/bin/sh\n[ -e /etc/mc.conf ] || cp /usr/share/mc/mc.conf.default /etc/mc.conf\naddgroup --system mcgroup\n',
  '/var/lib/dpkg/info/other.postinst': '#!/bin/sh\nadduser --system otherd\n',
  '/var/lib/dpkg/info/keyed.postinst': '#!/bin/sh\nssh-keygen -A\n',
};

const FILE_LISTS: Record<string, string[]> = {
  'base-files': ['/etc', '/run', '/srv', '/usr', '/usr/bin', '/usr/lib', '/var', '/var/cache', '/var/lib', '/var/lock', '/var/log', '/var/run'],
  'init-system-helpers': ['/etc/rc2.d', '/etc/init.d', '/usr/lib/systemd'],
  // lighty lists /lib/systemd/system/lighty.service (merged /usr: /usr/lib/...) and its run directory through /var/run.
  lighty: [
    '/etc/lighty',
    '/etc/lighty/lighty.conf',
    '/etc/lighty/conf-available',
    '/etc/lighty/conf-available/99-unconfigured.conf',
    '/etc/lighty/conf-enabled',
    '/etc/systemd/system/lighty.service.d',
    '/lib/systemd/system/lighty.service',
    '/var/www',
    '/var/www/html',
    '/var/cache/lighty',
    '/var/cache/lighty/uploads',
    '/var/log/lighty',
    '/var/run/lighty',
  ],
  hap: ['/var/lib/hap', '/var/lib/hap/dev', '/lib/tmpfiles.d/hap.conf'],
  store: ['/etc/store', '/etc/store/store.conf'],
  // keyed.conf is made by the postinst from a template (as sshd_config is), so dpkg does not list it.
  keyed: ['/etc/keyed'],
  mc: ['/usr/share/mc/mc.conf.default'],
  glibc: ['/usr/lib/libc.so'],
  other: ['/srv/other', '/etc/otherd', '/usr/lib/tmpfiles.d/other.conf'],
};

const installed = (name: string): InstalledPackage => ({ name, version: '1', architecture: 'amd64', depends: [], provides: [], essential: false, status: 'install ok installed' });

async function plan(options: { closure?: string[]; plannedFiles?: string[] } = {}): Promise<InstallMadePlan> {
  const { layer, view } = installRoots(BASE, LAYER);
  return planInstallMade({
    layer,
    view,
    installed: Object.keys(FILE_LISTS).map(installed),
    fileLists: new Map(Object.entries(FILE_LISTS)),
    closure: options.closure ?? ['lighty', 'hap', 'store', 'keyed', 'mc', 'glibc'],
    planned: { files: new Map((options.plannedFiles ?? []).map((p) => [p, {}])), symlinks: new Map() },
    blacklist: await loadBlacklist(),
    base: { passwd: BASE_PASSWD, group: BASE_GROUP },
  });
}

const reasonsOf = <T extends { path: string; reason: string }>(entries: T[]): Record<string, string> => Object.fromEntries(entries.map((e) => [e.path, e.reason]));

test('files and links the scripts made: in a directory only kept packages list, or named by a kept package\'s script; state and private text configuration are kept (secrets look like secrets)', async (t) => {
  const made = await plan();
  t.deepEqual(reasonsOf(made.files), {
    '/etc/keyed/keyed.conf': "created by the install (in keyed's /etc/keyed)",
    '/etc/mc.conf': 'created by the install (named in mc.postinst)',
    '/var/lib/store/dump.db': 'created by the install (named in store.postinst)',
    '/etc/store/access.conf': "created by the install (in store's /etc/store)",
    '/var/www/html/index.lighty.html': "created by the install (in lighty's /var/www/html)",
  });
  t.like(made.symlinks.find((l) => l.path === '/etc/lighty/conf-enabled/99-unconfigured.conf'), {
    target: '../conf-available/99-unconfigured.conf',
    reason: "created by the install (in lighty's /etc/lighty/conf-enabled)",
  });
  const kept = new Set([...made.files, ...made.symlinks, ...made.directories].map((e) => e.path));
  // In shared directories, named by nobody kept; or another package's; or the service manager's (blacklisted).
  for (const path of ['/etc/unrelated.conf', '/etc/otherd/otherd.conf', '/srv/other', '/etc/rc2.d/S01lighty', '/etc/systemd/system/lighty.service.d']) t.false(kept.has(path), path);
  // A whiteout (the install deleted apt's cached .deb) is no entry of the image.
  t.false(kept.has('/var/cache/apt/archives/dash_0.5.12-2_amd64.deb'));
});

test('left out with why: secrets and their public halves, logs, caches and runtime state of the install, ELF files, the account files', async (t) => {
  const made = await plan();
  const leftOut = Object.fromEntries(made.leftOut.map((l) => [l.path, l.why]));
  t.regex(leftOut['/etc/keyed/host_key'] ?? '', /^not readable by all: a secret .* made per image/);
  t.is(leftOut['/etc/keyed/host_key.pub'], 'the public half of a key left out');
  t.is(leftOut['/var/log/lighty/access.log'], 'a log written during the install');
  t.is(leftOut['/etc/lighty/helper'], 'an ELF file: programs and libraries come only through the ELF closure');
  // Only what a kept package made is reported: dpkg.log, debconf's cache and /run/adduser are nobody's in the closure.
  t.deepEqual(Object.keys(leftOut).sort(), ['/etc/keyed/host_key', '/etc/keyed/host_key.pub', '/etc/lighty/helper', '/var/log/lighty/access.log']);
  t.false(made.files.some((f) => ['/etc/passwd', '/etc/ld.so.cache', '/etc/resolv.conf', '/var/log/dpkg.log', '/run/adduser'].includes(f.path)));
});

test('directories: shipped empty by kept packages (cache ones too), made by their scripts, with owner and mode; dpkg-statoverride wins', async (t) => {
  const made = await plan();
  const dirs = Object.fromEntries(made.directories.map((d) => [d.path, d]));
  t.like(dirs['/var/lib/hap/dev'], { mode: 0o755, uid: 0, gid: 0, reason: 'shipped empty by hap' });
  // /var/cache/** is blacklisted for files; the daemon's own cache directory must exist all the same.
  t.like(dirs['/var/cache/lighty/uploads'], { uid: 33, gid: 33, reason: 'shipped empty by lighty' });
  // dpkg-statoverride says www-data:adm 0750 (the disk says www-data:www-data).
  t.like(dirs['/var/log/lighty'], { mode: 0o750, uid: 33, gid: 4, reason: 'shipped empty by lighty' });
  // Listed as /var/run/lighty: the image has it where the link leads.
  t.like(dirs['/run/lighty'], { mode: 0o750, uid: 33, reason: 'shipped empty by lighty' });
  t.like(dirs['/var/lib/store'], { mode: 0o750, uid: 101, gid: 102, reason: 'created by the install (named in store.postinst)' });
  t.like(dirs['/etc/lighty/conf-enabled'], { reason: 'shipped empty by lighty' });
  t.is(dirs['/var/lib/hap'], undefined, 'it has a listed child, and root 0755 is what the packer gives a parent anyway');
  t.is(dirs['/srv/other'], undefined, 'shipped empty, but by a package the image does not keep');
  t.is(dirs['/etc/systemd/system/lighty.service.d'], undefined, 'blacklisted');
});

test("tmpfiles.d: the kept packages' d lines are directories with their owner and mode; what the install made stays as it made it", async (t) => {
  const made = await plan();
  const dirs = Object.fromEntries(made.directories.map((d) => [d.path, d]));
  t.like(dirs['/run/hap'], { mode: 0o2775, uid: 100, gid: 101, reason: 'tmpfiles.d of hap (/usr/lib/tmpfiles.d/hap.conf:1)' });
  t.like(dirs['/var/lib/hap/dev'], { mode: 0o755, uid: 0, reason: 'shipped empty by hap' });
  t.is(dirs['/run/otherd'], undefined, 'a package the image does not keep');
  t.false(made.files.some((f) => f.path === '/run/hap/x'));
});

test('the skeleton: /var/run -> /run and /var/lock -> /run/lock, as the base has them', async (t) => {
  const made = await plan({ closure: [] });
  t.deepEqual(
    made.symlinks.map((l) => [l.path, l.target]),
    [
      ['/var/lock', '/run/lock'],
      ['/var/run', '/run'],
    ],
  );
  t.like(made.directories.find((d) => d.path === '/run/lock'), { mode: 0o1777, uid: 0 });
  t.deepEqual(made.files, []);
  t.deepEqual(made.users, []);
});

test('parents of kept files keep the owner and mode the install gave them', async (t) => {
  const made = await plan({ plannedFiles: ['/etc/store/store.conf'] });
  t.like(made.directories.find((d) => d.path === '/etc/store'), { mode: 0o2770, uid: 101, gid: 102, reason: "the install's owner and mode for the directory of /etc/store/store.conf" });
  t.false(made.files.some((f) => f.path === '/etc/store/store.conf'), 'a file the image plan has is not planned twice');
});

test('accounts: those the install added for kept packages, their groups, and those dpkg-statoverride names', async (t) => {
  const made = await plan();
  // hap is named by glibc.postinst too (which comes first), but hap.postinst is the one that adds it.
  t.deepEqual(made.users, [
    { name: 'hap', reason: 'account added by the install (named in hap.postinst)' },
    { name: 'store', reason: 'account added by the install (named in store.postinst)' },
    { name: 'www-data', reason: 'dpkg-statoverride of /var/log/lighty' },
  ]);
  t.deepEqual(made.groups, [
    { name: 'hap', reason: 'account added by the install (named in hap.postinst)' },
    { name: 'storegrp', reason: 'account added by the install (the group of store)' },
    { name: 'mcgroup', reason: 'account added by the install (named in mc.postinst)' },
    { name: 'adm', reason: 'dpkg-statoverride of /var/log/lighty' },
  ]);
  // otherd: added by a package the image does not keep.
  const all = await plan({ closure: ['other'] });
  t.deepEqual(all.users.map((u) => u.name), ['otherd']);
});

test('a secret is configuration that looks like one: a known kind, a name that says so, a PEM private key or binary; not private text configuration, nor state', (t) => {
  const text = (s: string): Uint8Array => Buffer.from(s);
  t.true(looksSecret('/etc/ssh/ssh_host_ed25519_key', text('-----BEGIN OPENSSH PRIVATE KEY-----')));
  t.true(looksSecret('/etc/varnish/secret', text('x')));
  t.true(looksSecret('/etc/app/api-token', text('abc')));
  t.true(looksSecret('/etc/app/tls.pem', text('cert')));
  t.true(looksSecret('/etc/app/blob', Buffer.from([1, 0, 2])), 'binary');
  t.true(looksSecret('/etc/app/conf', text('x\n-----BEGIN RSA PRIVATE KEY-----\n')), 'a key inside');
  t.false(looksSecret('/etc/postgresql/15/main/pg_hba.conf', text('# METHOD can be "trust", "password", "md5"\nlocal all postgres peer\n')));
  t.false(looksSecret('/var/lib/mysql/mysql/db.MAI', Buffer.from([0xfe, 0, 0])), 'state outside /etc');
});
