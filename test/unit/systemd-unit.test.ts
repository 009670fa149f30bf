import test from 'ava';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirectoryRootView, expandSpecifiers } from '@tinyx/builder/internals';
import { RecipeError, UnitSyntaxError, chooseServiceUnit, isUmbrella, recipeFromInstalledUnit, umbrellaInstance, parseRecipe, recipeToYaml, parseEnvironmentFile, parseExecLine, parseTmpfiles, parseUnit, recipeFromUnit, unitValues } from '@tinyx/builder';

const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../../fixtures/systemd/${name}`, import.meta.url)), 'utf8');
const unit = (name: string) => parseUnit(fixture(name), `/usr/lib/systemd/system/${name}`);

test('sections, repeated keys, comments and continuations', (t) => {
  const u = parseUnit('# c\n[Unit]\nDescription=x\n[Service]\nExecReload=a\nExecReload=b\nEnvironment=A=1 \\\n# inside\n  B=2\n;semi\n', '/x.service');
  t.deepEqual(unitValues(u, 'Service', 'ExecReload').map((a) => a.value), ['a', 'b']);
  t.deepEqual(unitValues(u, 'Service', 'Environment').map((a) => a.value), ['A=1  B=2']);
  // An empty assignment resets a list.
  const reset = parseUnit('[Service]\nExecStartPre=a\nExecStartPre=\nExecStartPre=b\n', '/y.service');
  t.deepEqual(unitValues(reset, 'Service', 'ExecStartPre').map((a) => a.value), ['b']);
});

test('Exec lines: prefixes, quotes, $VAR and ${VAR}, specifiers', (t) => {
  const u = parseUnit('[Service]\nExecStart=-@/usr/bin/prog prog-name --a "x y" $WORDS ${ONE}/z %i %n\n', '/lib/systemd/system/svc@inst.service');
  const exec = parseExecLine(unitValues(u, 'Service', 'ExecStart')[0]!, u, { WORDS: 'w1  w2', ONE: 'o n e' });
  t.deepEqual(exec.argv, ['/usr/bin/prog', '--a', 'x y', 'w1', 'w2', 'o n e/z', 'inst', 'svc@inst.service']);
  t.true(exec.ignoreFailure);
  t.is(exec.argv0, 'prog-name');
});

test('an EnvironmentFile: comments, quotes, export', (t) => {
  t.deepEqual(parseEnvironmentFile('# x\nA=1\nexport B="two words"\nC=\'$x\'\nbad line\n'), { A: '1', B: 'two words', C: '$x' });
});

test('tmpfiles.d: d lines with owner and mode, other types skipped', (t) => {
  t.deepEqual(parseTmpfiles(fixture('haproxy.tmpfiles.conf'), '/usr/lib/tmpfiles.d/haproxy.conf'), [
    { type: 'd', path: '/run/haproxy', mode: 0o2775, user: 'haproxy', group: 'haproxy', target: undefined, from: '/usr/lib/tmpfiles.d/haproxy.conf:1' },
  ]);
  const lighttpd = parseTmpfiles(fixture('lighttpd.tmpfiles.conf'), 'l.conf');
  t.deepEqual(lighttpd.map((e) => e.path), ['/run/lighttpd', '/var/log/lighttpd', '/var/cache/lighttpd', '/var/cache/lighttpd/compress', '/var/cache/lighttpd/uploads']);
  t.deepEqual(parseTmpfiles('f /etc/x 0644 - - -\nL /etc/y - - - - /usr/y\nd %t/q - - - -\n', 'x.conf').map((e) => [e.type, e.path, e.target, e.mode]), [
    ['L', '/etc/y', '/usr/y', 0o777],
    ['d', '/run/q', undefined, 0o755],
  ]);
});

test('haproxy (Type=notify): Environment expanded into ExecStart', (t) => {
  const { recipe, derivedFrom } = recipeFromUnit({
    package: 'haproxy',
    unit: unit('haproxy.service'),
    environmentFiles: { '/etc/default/haproxy': '# Defaults for HAProxy\n#CONFIG="/etc/haproxy/haproxy.cfg"\n', '/etc/sysconfig/haproxy': null },
  });
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/sbin/haproxy', '-Ws', '-f', '/etc/haproxy/haproxy.cfg', '-p', '/run/haproxy.pid', '-S', '/run/haproxy-master.sock']);
  t.is(recipe.entrypoint.user, 'root');
  t.is(recipe.entrypoint.env.CONFIG, '/etc/haproxy/haproxy.cfg');
  t.deepEqual(recipe.directories, []);
  // No ExecStartPre: ExecReload's `haproxy -c` tests the configuration, and is the check.
  t.deepEqual(recipe.check, ['/usr/sbin/haproxy', '-Ws', '-f', '/etc/haproxy/haproxy.cfg', '-c', '-q', '-S', '/run/haproxy-master.sock']);
  t.is(recipe.readiness, null);
  t.is(derivedFrom.unit, '/usr/lib/systemd/system/haproxy.service');
  t.true(derivedFrom.fields.some((f) => f.key === 'ExecStart'));
});

test('redis-server: User, RuntimeDirectory with its mode', (t) => {
  const { recipe, derivedFrom } = recipeFromUnit({ package: 'redis-server', unit: unit('redis-server.service'), environmentFiles: {}, port: 6379 });
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/bin/redis-server', '/etc/redis/redis.conf', '--supervised', 'systemd', '--daemonize', 'no']);
  t.is(recipe.entrypoint.user, 'redis');
  t.deepEqual(recipe.directories, [{ path: '/run/redis', owner: 'redis', mode: 0o2755 }]);
  t.deepEqual(recipe.readiness, { tcp: { port: 6379 } });
  t.true(derivedFrom.fields.some((f) => f.key === 'Group' && f.became.includes('own group')));
});

test('the template redis-server@.service: %i fills in the instance', (t) => {
  const u = parseUnit(fixture('redis-server@.service'), '/usr/lib/systemd/system/redis-server@.service', 'redis-server@main.service');
  const { recipe } = recipeFromUnit({ package: 'redis-server', unit: u, environmentFiles: {} });
  t.deepEqual(recipe.entrypoint.cmd.slice(0, 2), ['/usr/bin/redis-server', '/etc/redis/redis-main.conf']);
  t.deepEqual(recipe.directories[0]?.path, '/run/redis-main');
});

test('nginx (Type=forking): the foreground form, and ExecStartPre -t as the check', (t) => {
  const { recipe, derivedFrom } = recipeFromUnit({ package: 'nginx', unit: unit('nginx.service'), environmentFiles: {} });
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/sbin/nginx', '-g', 'daemon off; master_process on;']);
  t.deepEqual(recipe.check, ['/usr/sbin/nginx', '-t', '-q', '-g', 'daemon on; master_process on;']);
  t.true(derivedFrom.fields.some((f) => f.key === 'Type' && f.became.includes('daemon off')));
});

test('lighttpd: ExecStartPre -tt is the check', (t) => {
  const { recipe } = recipeFromUnit({ package: 'lighttpd', unit: unit('lighttpd.service'), environmentFiles: {} });
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/sbin/lighttpd', '-D', '-f', '/etc/lighttpd/lighttpd.conf']);
  t.deepEqual(recipe.check, ['/usr/sbin/lighttpd', '-tt', '-f', '/etc/lighttpd/lighttpd.conf']);
});

test('memcached: the wrapper is the command', (t) => {
  const { recipe } = recipeFromUnit({ package: 'memcached', unit: unit('memcached.service'), environmentFiles: {} });
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/share/memcached/scripts/systemd-memcached-wrapper', '/etc/memcached.conf']);
});

test('a forking unit with no known foreground flag runs as it is, and /init follows it: by PIDFile= (relative to /run), or by what it leaves', (t) => {
  const u = parseUnit('[Service]\nType=forking\nPIDFile=food/food.pid\nExecStart=/usr/sbin/food --pidfile /run/food/food.pid\n', '/usr/lib/systemd/system/food.service');
  const { recipe, derivedFrom } = recipeFromUnit({ package: 'food', unit: u, environmentFiles: {} });
  t.like(recipe.entrypoint, { cmd: ['/usr/sbin/food', '--pidfile', '/run/food/food.pid'], forks: true, pidFile: '/run/food/food.pid' });
  t.like(derivedFrom.fields.find((f) => f.key === 'PIDFile'), { became: 'entrypoint.pidFile /run/food/food.pid' });
  const bare = parseUnit('[Service]\nType=forking\nExecStart=/usr/sbin/food\n', '/usr/lib/systemd/system/food.service');
  t.like(recipeFromUnit({ package: 'food', unit: bare, environmentFiles: {} }).recipe.entrypoint, { forks: true, pidFile: null });
  // A known foreground flag wins: nginx stays in the foreground (see above), never forks.
  t.false(recipeFromUnit({ package: 'nginx', unit: unit('nginx.service'), environmentFiles: {} }).recipe.entrypoint.forks);
});

test("ExecStartPre= lines that make directories (mosquitto's mkdir and chown) become the recipe's directories; other lines are not carried", (t) => {
  const u = parseUnit(
    [
      '[Service]',
      'ExecStartPre=/bin/mkdir -m 740 -p /var/log/mosquitto',
      'ExecStartPre=/bin/chown mosquitto /var/log/mosquitto',
      'ExecStartPre=/bin/mkdir -m 740 -p /run/mosquitto',
      'ExecStartPre=/bin/chown mosquitto:mosquitto /run/mosquitto',
      'ExecStartPre=/bin/rm -f /run/mosquitto/stale',
      'ExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf',
      '',
    ].join('\n'),
    '/usr/lib/systemd/system/mosquitto.service',
  );
  const { recipe, derivedFrom } = recipeFromUnit({ package: 'mosquitto', unit: u, environmentFiles: {} });
  t.deepEqual(recipe.directories, [
    { path: '/var/log/mosquitto', owner: 'mosquitto', mode: 0o740 },
    { path: '/run/mosquitto', owner: 'mosquitto', mode: 0o740 },
  ]);
  t.is(derivedFrom.fields.filter((f) => f.key === 'ExecStartPre').at(-1)?.became, 'directories /run/mosquitto (mosquitto, 0740)');
  t.deepEqual(derivedFrom.notCarried.map((n) => n.value), ['/bin/rm -f /run/mosquitto/stale']);
});

test('AmbientCapabilities=CAP_NET_BIND_SERVICE needs nothing in a tinyx VM; any other capability is listed as not carried', (t) => {
  const bind = parseUnit('[Service]\nUser=caddy\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nExecStart=/usr/bin/caddy run\n', '/usr/lib/systemd/system/caddy.service');
  const caddy = recipeFromUnit({ package: 'caddy', unit: bind, environmentFiles: {} });
  t.regex(caddy.derivedFrom.fields.find((f) => f.key === 'AmbientCapabilities')?.became ?? '', /ip_unprivileged_port_start=0/);
  t.false(caddy.derivedFrom.notCarried.some((n) => n.key === 'AmbientCapabilities'));
  const lock = parseUnit('[Service]\nAmbientCapabilities=CAP_IPC_LOCK\nExecStart=/usr/sbin/mariadbd\n', '/usr/lib/systemd/system/mariadb.service');
  t.like(recipeFromUnit({ package: 'mariadb-server', unit: lock, environmentFiles: {} }).derivedFrom.notCarried.find((n) => n.key === 'AmbientCapabilities'), { value: 'CAP_IPC_LOCK' });
});

test('WorkingDirectory= is where the app starts; "~" (the home) is not carried over', (t) => {
  const u = parseUnit('[Service]\nExecStart=/usr/bin/x\nWorkingDirectory=-%S/x\n', '/lib/systemd/system/x.service');
  const { recipe, derivedFrom } = recipeFromUnit({ package: 'xd', unit: u, environmentFiles: {} });
  t.is(recipe.entrypoint.workdir, '/var/lib/x');
  t.true(derivedFrom.fields.some((f) => f.key === 'WorkingDirectory' && f.became === 'entrypoint.workdir /var/lib/x'));
  t.deepEqual(parseRecipe(recipeToYaml(recipe), 'x.yaml', 'x').entrypoint.workdir, '/var/lib/x');
  const home = recipeFromUnit({ package: 'xd', unit: parseUnit('[Service]\nExecStart=/usr/bin/x\nWorkingDirectory=~\n', '/x.service'), environmentFiles: {} });
  t.is(home.recipe.entrypoint.workdir, '/');
  t.true(home.derivedFrom.notCarried.some((n) => n.key === 'WorkingDirectory'));
});

test('a line tinyx cannot read is a user error naming the unit', (t) => {
  const open = parseUnit('[Service]\nExecStart=/usr/bin/x "open\n', '/lib/systemd/system/xd.service');
  t.throws(() => recipeFromUnit({ package: 'xd', unit: open, environmentFiles: {} }), { instanceOf: RecipeError, message: /xd\.service\): a " quote left open/ });
  const host = parseUnit('[Service]\nExecStart=/usr/bin/x --name %H\n', '/lib/systemd/system/xd.service');
  t.throws(() => recipeFromUnit({ package: 'xd', unit: host, environmentFiles: {} }), { instanceOf: RecipeError, message: /ExecStart: the specifier %H is not supported ahead of boot/ });
  t.throws(() => parseUnit('Key=before any section\n', '/x.service'), { instanceOf: UnitSyntaxError, message: /^\/x\.service:1: an assignment before any \[Section\]$/ });
});

test('a missing EnvironmentFile without "-" is an error', (t) => {
  const u = parseUnit('[Service]\nEnvironmentFile=/etc/default/x\nExecStart=/usr/bin/x\n', '/lib/systemd/system/x.service');
  t.throws(() => recipeFromUnit({ package: 'x', unit: u, environmentFiles: { '/etc/default/x': null } }), { instanceOf: RecipeError, message: /\/etc\/default\/x/ });
});

test("the package's unit: <package>.service, else the only service its file list names, else an error naming the candidates", (t) => {
  t.is(chooseServiceUnit('haproxy', ['/usr/lib/systemd/system/haproxy.service'], []), '/usr/lib/systemd/system/haproxy.service');
  t.is(chooseServiceUnit('openssh-server', [], ['/usr/lib/systemd/system/ssh.service', '/usr/lib/systemd/system/ssh@.service', '/usr/lib/systemd/system/ssh.socket']), '/usr/lib/systemd/system/ssh.service');
  const two = t.throws(() => chooseServiceUnit('apache2', [], ['/usr/lib/systemd/system/apache2x.service', '/usr/lib/systemd/system/apache-htcacheclean.service']));
  t.regex(two!.message, /apache2x\.service, \/usr\/lib\/systemd\/system\/apache-htcacheclean\.service/);
  const none = t.throws(() => chooseServiceUnit('busybox', [], ['/usr/bin/busybox']));
  t.regex(none!.message, /ships no systemd service unit/);
});

test('a derived recipe as YAML reads back as the same recipe, with where each setting came from in comments', (t) => {
  const { recipe, derivedFrom } = recipeFromUnit({ package: 'redis-server', unit: unit('redis-server.service'), environmentFiles: {} });
  const text = recipeToYaml(recipe, derivedFrom);
  t.regex(text, /^# Derived by tinyx from \/usr\/lib\/systemd\/system\/redis-server\.service/);
  t.regex(text, /# {3}RuntimeDirectory=redis -> directories \/run\/redis \(redis, 2755\)/);
  t.deepEqual(parseRecipe(text, 'recipes/redis-server.yaml', 'x'), { ...recipe, source: 'recipes/redis-server.yaml' });
  const nginx = recipeFromUnit({ package: 'nginx', unit: unit('nginx.service'), environmentFiles: {}, port: 80 }).recipe;
  t.deepEqual(parseRecipe(recipeToYaml(nginx), 'n.yaml', 'n'), { ...nginx, source: 'n.yaml' });
  // With a schema, editors are pointed at it by the first line; the recipe reads back the same.
  const pointed = recipeToYaml(recipe, derivedFrom, { schema: '../node_modules/@tinyx/builder/recipes/schema.json' });
  t.regex(pointed, /^# yaml-language-server: \$schema=\.\.\/node_modules\/@tinyx\/builder\/recipes\/schema\.json\n# Derived by tinyx from /);
  t.deepEqual(parseRecipe(pointed, 'recipes/redis-server.yaml', 'x'), { ...recipe, source: 'recipes/redis-server.yaml' });
});

test("an umbrella unit (postgresql.service: Type=oneshot, ExecStart=/bin/true) stands for the one template instance it wants; %i and %I of the instance", (t) => {
  t.true(isUmbrella(unit('postgresql.service')));
  t.false(isUmbrella(unit('redis-server.service')));
  t.is(umbrellaInstance('postgresql.service', ['postgresql@15-main.service', 'other.target']), 'postgresql@15-main.service');
  t.throws(() => umbrellaInstance('postgresql.service', []), { message: /runs nothing itself .* wants no instance of a service/ });
  t.throws(() => umbrellaInstance('postgresql.service', ['postgresql@15-main.service', 'postgresql@15-second.service']), { message: /wants 2 services: postgresql@15-main\.service, postgresql@15-second\.service/ });
  const instance = parseUnit(fixture('postgresql@.service'), '/usr/lib/systemd/system/postgresql@.service', 'postgresql@15-main.service');
  const { recipe } = recipeFromUnit({ package: 'postgresql', unit: instance, environmentFiles: {} });
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/bin/pg_ctlcluster', '--skip-systemctl-redirect', '15-main', 'start']);
  t.true(recipe.entrypoint.forks);
  t.is(recipe.entrypoint.pidFile, '/run/postgresql/15-main.pid');
  // %I is the instance unescaped (systemd-escape: "-" is "/"), as AssertPathExists= uses it.
  t.is(expandSpecifiers('/etc/postgresql/%I/postgresql.conf %i %%', instance, 'AssertPathExists'), '/etc/postgresql/15/main/postgresql.conf 15-main %');
});

test('recipeFromInstalledUnit: postgresql.service in an install root becomes postgresql@15-main, as what wants it says', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'tinyx-units-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'usr/lib/systemd/system'), { recursive: true });
  await writeFile(join(root, 'usr/lib/systemd/system/postgresql.service'), fixture('postgresql.service'));
  await writeFile(join(root, 'usr/lib/systemd/system/postgresql@.service'), fixture('postgresql@.service'));
  const asked: string[] = [];
  const derived = await recipeFromInstalledUnit(new DirectoryRootView(root), { package: 'postgresql' }, ['/lib/systemd/system/postgresql.service'], async (u) => {
    asked.push(u);
    return ['postgresql@15-main.service'];
  });
  t.deepEqual(asked, ['postgresql.service']);
  t.is(derived.derivedFrom.unit, '/usr/lib/systemd/system/postgresql@.service (postgresql@15-main.service)');
  t.like(derived.derivedFrom.fields[0], { key: 'Wants', value: 'postgresql@15-main.service' });
  t.is(derived.recipe.name, 'postgresql');
  t.deepEqual(derived.recipe.entrypoint.cmd.slice(-2), ['15-main', 'start']);
  // Nothing wanted: the error says so, and how to go on.
  await t.throwsAsync(recipeFromInstalledUnit(new DirectoryRootView(root), { package: 'postgresql' }, []), { message: /wants no instance/ });
});
