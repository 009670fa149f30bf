import test from 'ava';
import { writableLines, writableDirs } from '@tinyx/builder/internals';
import type { ImageEntry } from '@tinyx/builder/internals';
import { generateInit, procNetAddress, globToRegExp, makeBlacklist, loadBlacklist, parseDeb822Sources, parseOneLineSources, pickBaseSource, selectAccounts } from '@tinyx/builder/internals';
import { TinyxError } from '@tinyx/builder';

test('deb822 sources: the real shape of a Debian 12 debian.sources, comments and all', async (t) => {
  const text = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: trixie
Components: main
`;
  const sources = await parseDeb822Sources(text, 'debian.sources');
  t.deepEqual(
    sources.map((s) => `${s.uri} ${s.suite}`),
    ['http://deb.debian.org/debian bookworm', 'http://deb.debian.org/debian bookworm-updates', 'http://deb.debian.org/debian-security bookworm-security'],
  );
  const pick = pickBaseSource(sources);
  t.is(pick.uri, 'http://deb.debian.org/debian');
  t.is(pick.suite, 'bookworm');
  t.is(pick.keyring, '/usr/share/keyrings/debian-archive-keyring.gpg');
  const disabled = await parseDeb822Sources(`Enabled: no\n${text}`, 'x.sources');
  t.deepEqual(disabled.map((s) => s.suite), ['bookworm-security'], 'the disabled paragraph is skipped');
});

test('one-line sources.list with options; the release suite is picked over updates and security', (t) => {
  const sources = parseOneLineSources(
    `# comment
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://ftp.example.org/debian bookworm-updates main
deb [arch=amd64 signed-by=/etc/apt/keyrings/x.gpg] http://ftp.example.org/debian bookworm main contrib
deb-src http://ftp.example.org/debian bookworm main
`,
    'sources.list',
  );
  t.is(sources.length, 3);
  const pick = pickBaseSource(sources);
  t.deepEqual([pick.uri, pick.suite, pick.keyring], ['http://ftp.example.org/debian', 'bookworm', '/etc/apt/keyrings/x.gpg']);
  const none = t.throws(() => pickBaseSource(sources.filter((s) => s.suite !== 'bookworm')), { instanceOf: TinyxError });
  t.is(none?.code, 'E_NO_MIRROR');
  t.regex(none?.hint ?? '', /--mirror .* --suite/);
});

test('the bundled blacklists parse, and patterns match as documented', async (t) => {
  const blacklist = await loadBlacklist();
  for (const pkg of ['dpkg', 'apt', 'debconf', 'perl-base', 'init-system-helpers', 'runit-helper', 'perl-modules-5.36', 'perl:any']) t.true(blacklist.isPackageExcluded(pkg), pkg);
  for (const pkg of ['libc6', 'libssl3', 'nginx', 'nginx-common', 'busybox-static']) t.false(blacklist.isPackageExcluded(pkg), pkg);
  for (const path of ['/usr/share/doc/nginx/copyright', '/usr/share/man/man8/nginx.8.gz', '/usr/share/locale/de/LC_MESSAGES/x.mo', '/var/lib/dpkg/status', '/lib/systemd/system/nginx.service', '/etc/rc2.d/S01nginx', '/etc/sv/ssh/run', '/var/lib/systemd/deb-systemd-helper-enabled/nginx.service.dsh-also'])
    t.true(blacklist.isPathExcluded(path), path);
  for (const path of ['/etc/nginx/nginx.conf', '/usr/share/nginx/html/index.html', '/usr/lib/x86_64-linux-gnu/libc.so.6']) t.false(blacklist.isPathExcluded(path), path);
  t.true(globToRegExp('/etc/*.conf', true).test('/etc/a.conf'));
  t.false(globToRegExp('/etc/*.conf', true).test('/etc/x/a.conf'), '* stays inside one component');
  t.true(makeBlacklist(['lib*-dev'], []).isPackageExcluded('libssl-dev'));
});

const wish = (...names: string[]) => ({ users: names.map((name) => ({ name, reason: 'recipe users' })) });

test('accounts: root, nobody, the wanted ones, their primary groups, the kept members of kept groups, no login shells', (t) => {
  const passwd =
    'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nredis:x:100:101::/var/lib/redis:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
  const group = 'root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nredis:x:101:\nadm:x:4:syslog,redis\nnogroup:x:65534:\n';
  const accounts = selectAccounts(passwd, group, wish('www-data', 'root'), 'recipes/nginx.yaml');
  t.is(accounts.passwd, 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/sbin/nologin\n');
  t.is(accounts.group, 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n');
  t.is(selectAccounts('root:x:0:0::/root:/bin/sh\n', 'root:x:0:\n', wish(), 'r.yaml').passwd, 'root:x:0:0::/root:/sbin/nologin\n', 'a root without nobody is no error');
  t.deepEqual(accounts.users.get('www-data'), { name: 'www-data', uid: 33, gid: 33, home: '/var/www' });
  // A kept group keeps its members that are kept accounts, and only those (postgres reads ssl-cert's key as a member).
  const members = selectAccounts(passwd, `${group}ssl-cert:x:102:redis,postgres,www-data\n`, { ...wish('redis'), groups: [{ name: 'ssl-cert', reason: 'the install added it' }] }, 'r.yaml');
  t.regex(members.group, /^ssl-cert:x:102:redis$/m);
  t.regex(members.group, /^redis:x:101:$/m);
  const error = t.throws(() => selectAccounts(passwd, group, wish('nginx'), 'recipes/nginx.yaml'), { instanceOf: TinyxError });
  t.regex(error?.message ?? '', /recipes\/nginx\.yaml: the account "nginx" does not exist/);
});

test('accounts: the owners of the image\'s entries and the groups the install added are kept, each with why', (t) => {
  const passwd = 'root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nhaproxy:x:100:101::/var/lib/haproxy:/usr/sbin/nologin\nbackup:x:34:34::/var/backups:/usr/sbin/nologin\n';
  const group = 'root:x:0:\nadm:x:4:\nwww-data:x:33:\nbackup:x:34:\nhaproxy:x:101:\nssl-cert:x:102:\n';
  const accounts = selectAccounts(
    passwd,
    group,
    {
      users: [{ name: 'haproxy', reason: 'account added by the install (named in haproxy.postinst)' }],
      groups: [{ name: 'ssl-cert', reason: 'account added by the install (named in ssl-cert.postinst)' }],
      owners: [
        { path: '/var/log/lighttpd', uid: 33, gid: 33 },
        { path: '/var/log/redis', uid: 0, gid: 4 },
        // An owner the root has no account for stays out (its entries become root's).
        { path: '/srv/x', uid: 4242, gid: 4242 },
      ],
    },
    '--package haproxy',
  );
  t.is(accounts.passwd, 'root:x:0:0:root:/root:/sbin/nologin\nhaproxy:x:100:101::/var/lib/haproxy:/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/sbin/nologin\n');
  t.is(accounts.group, 'root:x:0:\nadm:x:4:\nwww-data:x:33:\nhaproxy:x:101:\nssl-cert:x:102:\n');
  t.deepEqual(accounts.kept.users.map((u) => [u.name, u.reason]), [
    ['root', 'root'],
    ['haproxy', 'account added by the install (named in haproxy.postinst)'],
    ['www-data', 'owner of /var/log/lighttpd'],
  ]);
  t.deepEqual(accounts.kept.groups.map((g) => [g.name, g.reason]), [
    ['root', 'root'],
    ['adm', 'group of /var/log/redis'],
    ['www-data', 'the group of www-data'],
    ['haproxy', 'the group of haproxy'],
    ['ssl-cert', 'account added by the install (named in ssl-cert.postinst)'],
  ]);
});

test('/init: network from the command line, the app under its uid, readiness from /proc/net/tcp', (t) => {
  const init = generateInit({
    name: 'redis',
    cmd: ['/usr/bin/redis-server', '/etc/redis/redis.conf', '--logfile', '', '--save', "it's"],
    user: { name: 'redis', uid: 100, gid: 101 },
    env: { TZ: 'UTC' },
    readiness: { tcp: { port: 6379 } },
    libraryPath: ['/opt/lib'],
  });
  t.true(init.startsWith('#!/bin/sh\n'));
  t.regex(init, /tinyx\.ip=\*\) addr=/);
  t.regex(init, /start-stop-daemon -S -c 100:101 -x \/usr\/bin\/redis-server -- \/etc\/redis\/redis\.conf --logfile '' --save 'it'\\''s' &/);
  // 6379 = 0x18EB, as /proc/net/tcp writes it; 0A is LISTEN.
  t.regex(init, /grep -qE ':18EB \[0-9A-F\]\+:0000 0A' \/proc\/net\/tcp \/proc\/net\/tcp6/);
  t.regex(init, /read uptime _ < \/proc\/uptime\n.*echo "tinyx: ready \(listening on 6379\) at \$\{uptime\} s of guest uptime"/);
  t.regex(init, /export TZ=UTC/);
  t.regex(init, /export LD_LIBRARY_PATH=\/opt\/lib/);
  t.regex(init, /reboot -f\n$/);
  const asRoot = generateInit({ name: 'x', cmd: ['/x'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, readiness: null, libraryPath: [] });
  t.regex(asRoot, /^\/x &$/m);
  t.notRegex(asRoot, /start-stop-daemon/);
  t.notRegex(asRoot, /LD_LIBRARY_PATH/);
  t.notRegex(asRoot, /^cd /m);
  const inDir = generateInit({ name: 'x', cmd: ['/x'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, workdir: '/var/lib/my app', readiness: null, libraryPath: [] });
  t.regex(inDir, /^cd '\/var\/lib\/my app'\necho "tinyx: starting \/x"\n\/x &$/m);
});

test("/init with a relay: tinyx-relay from the VM's address to each loopback port, started before the app; a forking app's watch leaves the relay and its connections out", (t) => {
  const relay = [
    { port: 6379, address: '127.0.0.1' },
    { port: 3306, address: '::1' },
  ];
  const init = generateInit({ name: 'db', cmd: ['/usr/sbin/db'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, readiness: { tcp: { port: 6379 } }, libraryPath: [], relay });
  t.regex(init, /^if \[ -n "\$addr" \]; then\n {2}\/usr\/sbin\/tinyx-relay "\$\{addr%\/\*\}" 6379 127\.0\.0\.1 "\$\{addr%\/\*\}" 3306 ::1 &\n {2}relay=\$!$/m);
  t.true(init.indexOf('tinyx-relay') < init.indexOf('echo "tinyx: starting'), 'the relay is up before the app starts');
  t.true(init.indexOf('tinyx.ip=*)') < init.indexOf('/usr/sbin/tinyx-relay'), "after the network, whose address it listens on");
  t.regex(init, /for arg in \$\{TINYX_CMDLINE:-\$\(cat \/proc\/cmdline\)\}; do/, 'the command line, or what verify gives in its place');
  // Ready is the app's own socket at 127.0.0.1:6379, never the relay's on the same port.
  t.true(init.includes("grep -qE '(0100007F|0000000000000000FFFF00000100007F):18EB [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6"), init);
  t.is(procNetAddress('::1'), '00000000000000000000000001000000');
  t.is(procNetAddress('127.0.0.53'), '(3500007F|0000000000000000FFFF00003500007F)');
  const forking = generateInit({ name: 'db', cmd: ['/usr/sbin/db'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, forks: true, readiness: null, libraryPath: [], relay });
  t.regex(forking, /\[ "\$p" = "\$relay" \] && continue/);
  t.true(forking.includes('[ -n "$relay" ] && grep -qs "^PPid:[[:space:]]*$relay$" "$d/status" && continue'), 'its connections are its children');
  const none = generateInit({ name: 'db', cmd: ['/usr/sbin/db'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, forks: true, readiness: null, libraryPath: [] });
  t.notRegex(none, /relay/);
});

test('/init on a read-only root: tmpfs on each writable directory not under another, seeded ones copied first, owner and mode kept (chmod again only for set-id bits a chown cleared)', (t) => {
  const lines = writableLines([
    { path: '/var/lib/nginx', mode: 0o750, uid: 33, gid: 33, seeded: true },
    { path: '/run/nginx', mode: 0o755, uid: 33, gid: 0, seeded: false },
    { path: '/run', mode: 0o755, uid: 0, gid: 0, seeded: false },
    { path: '/tmp', mode: 0o1777, uid: 0, gid: 0, seeded: false },
    { path: '/var/log/app', mode: 0o2750, uid: 0, gid: 4, seeded: false },
  ]);
  t.regex(lines[2]!, /^unwritable\(\) \{ echo "tinyx: \/init could not make \$1 writable.*reboot -f; \}$/, 'a directory that cannot be made ends the VM');
  t.deepEqual(lines.slice(3), [
    'mount -t tmpfs -o mode=0755 tmpfs /run || unwritable /run',
    'mkdir -p -m 0755 /run/nginx || unwritable /run/nginx',
    'chown 33:0 /run/nginx || unwritable /run/nginx',
    'mount -t tmpfs -o mode=1777 tmpfs /tmp || unwritable /tmp',
    'mkdir -p /dev/.tinyx-seed && mount -t tmpfs -o mode=0750 tmpfs /dev/.tinyx-seed && cp -a /var/lib/nginx/. /dev/.tinyx-seed/ && mount -o move /dev/.tinyx-seed /var/lib/nginx || unwritable /var/lib/nginx',
    'chown 33:33 /var/lib/nginx || unwritable /var/lib/nginx',
    'mount -t tmpfs -o mode=2750 tmpfs /var/log/app || unwritable /var/log/app',
    'chown 0:4 /var/log/app || unwritable /var/log/app',
    'chmod 2750 /var/log/app || unwritable /var/log/app',
  ]);
  const traced = writableLines([{ path: '/var/log/app', mode: 0o755, uid: 0, gid: 0, seeded: false, reason: 'traced: written by /usr/sbin/app' }]);
  t.deepEqual(traced.slice(3), ['# traced: written by /usr/sbin/app', 'mount -t tmpfs -o mode=0755 tmpfs /var/log/app || unwritable /var/log/app'], 'why, when the trace found it');
  const init = generateInit({ name: 'x', cmd: ['/x'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, readiness: null, libraryPath: [], writable: [{ path: '/tmp', mode: 0o1777, uid: 0, gid: 0, seeded: false }] });
  t.true(init.indexOf('mount -t tmpfs -o mode=1777 tmpfs /tmp || unwritable /tmp') > init.indexOf('mount -t devtmpfs'), 'after /dev, where a seeded copy is staged');
  t.true(init.indexOf('mount -t tmpfs -o mode=1777 tmpfs /tmp || unwritable /tmp') < init.indexOf('echo "tinyx: starting'), 'before the app');
  t.notRegex(generateInit({ name: 'x', cmd: ['/x'], user: { name: 'root', uid: 0, gid: 0 }, env: {}, readiness: null, libraryPath: [] }), /read-only/, 'an initramfs root is writable as it is');
});

test('the writable directories of a read-only root: from the entries, seeded when the image has files under them; a path that is not a directory is an error', (t) => {
  const entries = new Map<string, ImageEntry>([
    ['/run', { type: 'dir', path: '/run', mode: 0o755 }],
    ['/var/lib/x', { type: 'dir', path: '/var/lib/x', mode: 0o700, uid: 5, gid: 6 }],
    ['/var/lib/x/seed', { type: 'file', path: '/var/lib/x/seed', mode: 0o600, source: { content: Buffer.from('') } }],
    ['/etc/passwd', { type: 'file', path: '/etc/passwd', mode: 0o644, source: { content: Buffer.from('') } }],
  ]);
  t.deepEqual(writableDirs(entries, ['/run', '/var/lib/x', '/run']), [
    { path: '/run', mode: 0o755, uid: 0, gid: 0, seeded: false },
    { path: '/var/lib/x', mode: 0o700, uid: 5, gid: 6, seeded: true },
  ]);
  t.throws(() => writableDirs(entries, ['/etc/passwd']), { message: /\/etc\/passwd is not a directory of the image/ });
});
