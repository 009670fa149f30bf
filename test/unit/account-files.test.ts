import test from 'ava';
import { addedNames, parseGroup, parsePasswd } from '@tinyx/builder/internals';

const BASE_PASSWD = 'root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n';
const BASE_GROUP = 'root:x:0:\nadm:x:4:syslog\nwww-data:x:33:\n';

test('passwd and group lines as fields; comments and malformed lines skipped', (t) => {
  t.deepEqual(parsePasswd(`# a comment\n${BASE_PASSWD}broken:x:y:0::/:/bin/sh\n`), [
    { name: 'root', uid: 0, gid: 0, gecos: 'root', home: '/root', shell: '/bin/bash' },
    { name: 'www-data', uid: 33, gid: 33, gecos: 'www-data', home: '/var/www', shell: '/usr/sbin/nologin' },
  ]);
  t.deepEqual(parseGroup(BASE_GROUP), [
    { name: 'root', gid: 0, members: [] },
    { name: 'adm', gid: 4, members: ['syslog'] },
    { name: 'www-data', gid: 33, members: [] },
  ]);
});

test('the accounts an install added: in the root, not in the base, in the root\'s order', (t) => {
  const after = parsePasswd(`${BASE_PASSWD}haproxy:x:100:101::/var/lib/haproxy:/usr/sbin/nologin\nredis:x:101:102::/var/lib/redis:/usr/sbin/nologin\n`);
  t.deepEqual(
    addedNames(parsePasswd(BASE_PASSWD), after).map((u) => [u.name, u.home]),
    [
      ['haproxy', '/var/lib/haproxy'],
      ['redis', '/var/lib/redis'],
    ],
  );
  t.deepEqual(addedNames(parseGroup(BASE_GROUP), parseGroup(`${BASE_GROUP}haproxy:x:101:\n`)), [{ name: 'haproxy', gid: 101, members: [] }]);
  t.deepEqual(addedNames(parseGroup(BASE_GROUP), parseGroup(BASE_GROUP)), []);
});
