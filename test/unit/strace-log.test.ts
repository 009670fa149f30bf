import test from 'ava';
import { readFile } from 'node:fs/promises';
import { listeningPorts, listeningSockets, parseStraceLog, readOnlyInMessages, syscallFeatures } from '@tinyx/builder/internals';

// test/fixtures/strace/lighttpd.log: `strace -f -yy -qq -s 512` of `unshare --root=ROOT --setuid 0 -- lighttpd -D`
// started in lighttpd's full install root (Debian 12), as the trace pass runs it, with the noisiest calls
// (mmap, read, write, ...) filtered out and the root renamed /cache/tmp/trace-1/root.
const ROOT = '/cache/tmp/trace-1/root';
const fixture = await readFile(new URL('../../fixtures/strace/lighttpd.log', import.meta.url), 'utf8');

test('the paths the app reached, inside the root, as it named them (through /etc/localtime, not the zoneinfo file)', (t) => {
  const log = parseStraceLog(fixture, ROOT, 2);
  t.like(log.reached.get('/etc/lighttpd/lighttpd.conf'), { how: 'opened', by: '/usr/sbin/lighttpd' });
  t.like(log.reached.get('/etc/localtime'), { how: 'opened' });
  t.false(log.reached.has('/usr/share/zoneinfo/Etc/UTC'));
  t.like(log.reached.get('/etc/lighttpd/conf-enabled'), { how: 'directory' });
  // The config's include_shell: /bin/sh runs a Perl script, which stats and opens its modules.
  t.like(log.reached.get('/usr/share/lighttpd/use-ipv6.pl'), { how: 'executed', by: '/usr/share/lighttpd/use-ipv6.pl' });
  t.like(log.reached.get('/usr/lib/x86_64-linux-gnu/perl-base/Socket.pm'), { by: '/usr/share/lighttpd/use-ipv6.pl' });
  t.like(log.reached.get('/bin/sh'), { how: 'executed' });
});

test("what the sandbox's own unshare did before it ran the app is not the app's", (t) => {
  const log = parseStraceLog(fixture, ROOT, 2);
  // unshare's own libraries (host paths) and its setuid(0) come before the app's execve.
  t.false([...log.reached.keys()].some((p) => p.startsWith('/cache')));
  t.false(log.uids.has(0));
  t.deepEqual([...log.uids], [33]);
  t.deepEqual([...log.gids].sort(), [33]);
  // Without the skip, unshare's own execve and setuid(0) count.
  t.true(parseStraceLog(fixture, ROOT, 0).uids.has(0));
});

test('paths looked for in vain, system calls that succeeded, socket families', (t) => {
  const log = parseStraceLog(fixture, ROOT, 2);
  t.is(log.missing.get('/etc/ld.so.preload'), '/usr/sbin/lighttpd');
  t.true(log.families.has('AF_INET6'));
  t.true(log.families.has('AF_INET'));
  t.true((log.syscalls.get('listen') ?? 0) >= 2);
  t.true(log.syscalls.has('epoll_create1'));
  t.false(log.syscalls.has('no_such_call'));
  const features = syscallFeatures(log.syscalls, log.families);
  t.deepEqual(features.get('ipv6'), ['traced: socket(AF_INET6)']);
  t.truthy(features.get('epoll'));
});

test('relative paths against the directory fd, halves of interrupted calls joined, truncated and outside paths dropped', (t) => {
  const text = [
    '5     execve("/usr/bin/unshare", ["unshare"], 0x0 /* 1 var */) = 0',
    '5     execve("/usr/sbin/app", ["app"], 0x0 /* 1 var */) = 0',
    '5     openat(AT_FDCWD</r/etc/app>, "conf.d/a.conf", O_RDONLY) = 3</r/etc/app/conf.d/a.conf>',
    '5     openat(4</r/usr/lib/app>, "../share/x", O_RDONLY) = 3</r/usr/lib/share/x>',
    '6     newfstatat(AT_FDCWD</r>, "/usr/lib/mod.so",  <unfinished ...>',
    '5     statx(AT_FDCWD</r>, "/var/lib/app\\x2fdb", AT_STATX_SYNC_AS_STAT, STATX_ALL, {...}) = 0',
    '6     <... newfstatat resumed>{st_mode=S_IFREG|0644, st_size=1}, 0) = 0',
    '5     openat(AT_FDCWD</r>, "/very/long"..., O_RDONLY) = 3</r/very/long>',
    '5     openat(AT_FDCWD</elsewhere>, "x", O_RDONLY) = 3</elsewhere/x>',
    '5     open("/etc/missing", O_RDONLY) = -1 ENOENT (No such file or directory)',
  ].join('\n');
  const log = parseStraceLog(text, '/r', 2);
  t.deepEqual([...log.reached.keys()].sort(), ['/etc/app/conf.d/a.conf', '/usr/lib/mod.so', '/usr/lib/share/x', '/usr/sbin/app', '/var/lib/app/db']);
  t.is(log.reached.get('/usr/lib/mod.so')?.how, 'stat');
  t.is(log.missing.get('/etc/missing'), '/usr/sbin/app');
});

test('listening sockets from /proc/net/tcp and tcp6: only those in LISTEN (0A), loopback told apart, with their address', (t) => {
  const table = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0',
    '   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   100        0 2 1 0 100 0 0 10 0',
    '   2: 0100007F:0050 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1',
    '   3: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0',
    '   4: 0F02000A:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0',
  ].join('\n');
  t.deepEqual(listeningSockets(table), [
    { port: 80, loopback: false, address: '0.0.0.0' },
    { port: 6379, loopback: true, address: '127.0.0.1' },
    { port: 53, loopback: true, address: '127.0.0.53' },
    { port: 22, loopback: false, address: '10.0.2.15' },
  ]);
  const table6 = [
    '  sl  local_address                         remote_address                        st',
    '   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 0',
    '   1: 0000000000000000FFFF00000100007F:2BCB 00000000000000000000000000000000:0000 0A 0',
    '   2: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0',
  ].join('\n');
  t.deepEqual(listeningSockets(table6), [
    { port: 6379, loopback: true, address: '::1' },
    { port: 11211, loopback: true, address: '127.0.0.1' },
    { port: 80, loopback: false, address: '::' },
  ]);
});

test('listening ports: loopback only when every socket of the port is, reached at its IPv4 loopback address first (what a relay forwards to)', (t) => {
  const v4 = listeningSockets('h\n   0: 0100007F:18EB 00000000:0000 0A\n   1: 00000000:0050 00000000:0000 0A\n   2: 0100007F:0050 00000000:0000 0A');
  const v6 = listeningSockets('h\n   0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A\n   1: 00000000000000000000000001000000:0CEA 00000000000000000000000000000000:0000 0A');
  t.deepEqual(listeningPorts([...v6, ...v4]), [
    { port: 80, loopback: false },
    { port: 3306, loopback: true, loopbackAddress: '::1' },
    { port: 6379, loopback: true, loopbackAddress: '127.0.0.1' },
  ]);
  t.deepEqual(listeningPorts([]), []);
});

test('writes refused by a read-only root (EROFS): the path of any call that writes, with the program; other failures are not', (t) => {
  const log = parseStraceLog(
    [
      `100 execve("/usr/sbin/app", ["app"], 0x7ffd /* 3 vars */) = 0`,
      `100 openat(AT_FDCWD<${ROOT}/var>, "log/app.log", O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0644) = -1 EROFS (Read-only file system)`,
      `100 mkdir("/var/cache/app", 0755) = -1 EROFS (Read-only file system)`,
      `100 renameat2(AT_FDCWD<${ROOT}>, "/etc/app.conf.new", AT_FDCWD<${ROOT}>, "/etc/app.conf", 0) = -1 EROFS (Read-only file system)`,
      `100 openat(AT_FDCWD<${ROOT}>, "/etc/app.conf", O_RDONLY) = 3<${ROOT}/etc/app.conf>`,
      `100 openat(AT_FDCWD<${ROOT}>, "/etc/missing", O_RDONLY) = -1 ENOENT (No such file or directory)`,
    ].join('\n'),
    ROOT,
    0,
  );
  t.deepEqual([...log.readOnly], [
    ['/var/log/app.log', '/usr/sbin/app'],
    ['/var/cache/app', '/usr/sbin/app'],
    ['/etc/app.conf.new', '/usr/sbin/app'],
  ]);
  t.true(log.missing.has('/etc/missing'));
  t.false(log.readOnly.has('/etc/missing'));
});

test("a read-only root in the app's own words (when the log lacks the call): the absolute paths quoted on its EROFS lines, or before perror's colon", (t) => {
  const output = [
    'tinyx: starting /usr/sbin/nginx',
    '2026/12/02 11:43:04 [emerg] 23#23: open() "/var/log/nginx/error.log" failed (30: Read-only file system)',
    "mkdir: cannot create directory '/var/cache/app': Read-only file system",
    '/var/lib/app/state: Read-only file system',
    'open() "/etc/app.conf" failed (2: No such file or directory)',
    'open() "/var/log/nginx/error.log" failed (30: Read-only file system)',
  ].join('\n');
  t.deepEqual(readOnlyInMessages(output), ['/var/log/nginx/error.log', '/var/cache/app', '/var/lib/app/state']);
  t.deepEqual(readOnlyInMessages('open() "/etc/app.conf" failed (2: No such file or directory)'), []);
});

test('what the app wrote: opened for writing, made, removed, renamed, chmod\'ed, a Unix socket bound; not what it only read, not a call that failed, not an abstract socket', (t) => {
  const log = parseStraceLog(
    [
      `100 execve("/usr/sbin/app", ["app"], 0x7ffd /* 3 vars */) = 0`,
      `100 openat(AT_FDCWD<${ROOT}/var>, "log/app/app.log", O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0644) = 3<${ROOT}/var/log/app/app.log>`,
      `100 openat(AT_FDCWD<${ROOT}>, "/var/lib/app/db", O_RDWR|O_CLOEXEC) = 4<${ROOT}/var/lib/app/db>`,
      `100 openat(AT_FDCWD<${ROOT}>, "/etc/app.conf", O_RDONLY|O_CLOEXEC) = 5<${ROOT}/etc/app.conf>`,
      `100 mkdir("/var/cache/app/tmp", 0700) = 0`,
      `100 mkdir("/var/cache/other", 0700) = -1 EACCES (Permission denied)`,
      `100 unlinkat(AT_FDCWD<${ROOT}>, "/var/spool/app/old", 0) = 0`,
      `100 renameat2(AT_FDCWD<${ROOT}>, "/etc/app/state.new", AT_FDCWD<${ROOT}>, "/etc/app/state", 0) = 0`,
      `100 fchmodat(AT_FDCWD<${ROOT}>, "/srv/app", 0750) = 0`,
      `100 bind(6<UNIX:[1234]>, {sa_family=AF_UNIX, sun_path="/var/lib/app/app.sock"}, 110) = 0`,
      `100 bind(7<UNIX:[1235]>, {sa_family=AF_UNIX, sun_path=@"abstract"}, 12) = 0`,
      `100 creat("/var/tmp/x", 0600) = 8<${ROOT}/var/tmp/x>`,
    ].join('\n'),
    ROOT,
    0,
  );
  t.deepEqual(
    [...log.written.keys()],
    ['/var/log/app/app.log', '/var/lib/app/db', '/var/cache/app/tmp', '/var/spool/app/old', '/etc/app/state.new', '/srv/app', '/var/lib/app/app.sock', '/var/tmp/x'],
  );
  t.is(log.written.get('/var/log/app/app.log'), '/usr/sbin/app');
});

test("the recorded lighttpd run wrote its pid file, its error log and /dev/null (opened read-write)", (t) => {
  const log = parseStraceLog(fixture, ROOT, 2);
  t.deepEqual([...log.written.keys()].sort(), ['/dev/null', '/run/lighttpd.pid', '/var/log/lighttpd/error.log']);
});
