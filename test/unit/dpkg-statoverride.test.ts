import test from 'ava';
import { TinyxError } from '@tinyx/builder';
import { parseStatOverrides } from '@tinyx/builder/internals';

test('dpkg-statoverride lines: owner, group, octal mode, and a path that may hold spaces', (t) => {
  const overrides = parseStatOverrides('root ssl-cert 710 /etc/ssl/private\nredis redis 640 /etc/redis/redis.conf\n#1000 #1000 2750 /srv/a b\n');
  t.deepEqual(overrides.get('/etc/ssl/private'), { user: 'root', group: 'ssl-cert', mode: 0o710, path: '/etc/ssl/private' });
  t.deepEqual(overrides.get('/etc/redis/redis.conf'), { user: 'redis', group: 'redis', mode: 0o640, path: '/etc/redis/redis.conf' });
  t.deepEqual(overrides.get('/srv/a b'), { user: '#1000', group: '#1000', mode: 0o2750, path: '/srv/a b' });
  t.is(parseStatOverrides('').size, 0);
  t.throws(() => parseStatOverrides('root root 7x0 /etc/x', '/var/lib/dpkg/statoverride'), { instanceOf: TinyxError, message: /statoverride: line 1: "root root 7x0 \/etc\/x" is not "USER GROUP MODE PATH"/ });
});
