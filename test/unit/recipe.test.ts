import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecipeError, TinyxError, listRecipes, loadRecipe, parseRecipe, recipeFromPackage } from '@tinyx/builder';

const MINIMAL = 'packages: [nginx]\nentrypoint:\n  cmd: [/usr/sbin/nginx]\n';

function recipeError(t: import('ava').ExecutionContext, yaml: string): RecipeError {
  const error = t.throws(() => parseRecipe(yaml, 'recipes/x.yaml', 'x'), { instanceOf: RecipeError });
  return error!;
}

test('the bundled recipes load and validate', async (t) => {
  const names = await listRecipes();
  t.true(names.includes('nginx'));
  t.true(names.includes('redis'));
  for (const name of names) {
    const recipe = await loadRecipe(name);
    t.is(recipe.name, name);
    t.true(recipe.packages.length > 0);
    t.truthy(recipe.readiness, `${name} has a readiness probe`);
    t.truthy(recipe.check, `${name} has a self-check`);
  }
  const nginx = await loadRecipe('nginx');
  t.deepEqual(nginx.readiness, { http: { port: 80, path: '/' } });
  t.deepEqual(nginx.fixups[0], { file: '/etc/nginx/sites-available/default', deleteLines: 'listen \\[::\\]:80' });
  const redis = await loadRecipe('redis');
  t.is(redis.entrypoint.user, 'redis');
  t.deepEqual(redis.directories[0], { path: '/var/lib/redis', owner: 'redis', mode: 0o750 });
});

test('defaults are filled in', (t) => {
  const recipe = parseRecipe(MINIMAL, 'recipes/x.yaml', 'x');
  t.is(recipe.name, 'x');
  t.is(recipe.entrypoint.user, 'root');
  t.is(recipe.entrypoint.workdir, '/');
  t.false(recipe.entrypoint.forks);
  t.is(recipe.entrypoint.pidFile, null);
  t.deepEqual(recipe.users, []);
  t.is(recipe.readiness, null);
  t.deepEqual(recipe.kernel.features, []);
  t.is(recipe.source, 'recipes/x.yaml');
});

test('an unknown key names the file, the field and the close match', (t) => {
  const error = recipeError(t, `${MINIMAL}  usr: www-data\n`);
  t.is(error.message, 'recipes/x.yaml: entrypoint.usr: unknown key');
  t.regex(error.hint ?? '', /did you mean "user"/);
  t.is(error.field, 'entrypoint.usr');
  t.is(error.kind, 'user');
  t.is(recipeError(t, `${MINIMAL}pakages: [x]\n`).message, 'recipes/x.yaml: pakages: unknown key');
});

test('a wrong type names the field and what it got', (t) => {
  t.is(recipeError(t, 'packages: nginx\nentrypoint: { cmd: [/x] }\n').message, 'recipes/x.yaml: packages: must be a list, not the string "nginx"');
  t.is(recipeError(t, `${MINIMAL}readiness: { tcp: "80" }\n`).message, 'recipes/x.yaml: readiness.tcp: must be a port number 1-65535, not the string "80"');
  t.is(recipeError(t, `${MINIMAL}readiness: { http: { port: 70000 } }\n`).message, 'recipes/x.yaml: readiness.http.port: must be a port number 1-65535, not number 70000');
  t.is(recipeError(t, `${MINIMAL}users: [1]\n`).message, 'recipes/x.yaml: users[0]: must be a string, not number 1');
  t.is(recipeError(t, 'packages: [nginx]\n').message, 'recipes/x.yaml: entrypoint: is required');
  t.is(recipeError(t, '- just a list\n').message, 'recipes/x.yaml: (top level): must be a mapping, not a list');
});

test('bad values: package names, paths, features, probes, fix-ups, modes', (t) => {
  t.is(recipeError(t, 'packages: [Nginx]\nentrypoint: { cmd: [/x] }\n').message, 'recipes/x.yaml: packages[0]: "Nginx" is not a Debian package name');
  t.is(recipeError(t, `${MINIMAL}include: [var/www]\n`).message, 'recipes/x.yaml: include[0]: "var/www" must be an absolute path');
  t.is(recipeError(t, `${MINIMAL}include: [/var/../etc]\n`).message, 'recipes/x.yaml: include[0]: "/var/../etc" must not contain ".."');
  const feature = recipeError(t, `${MINIMAL}kernel: { features: [epol] }\n`);
  t.is(feature.message, 'recipes/x.yaml: kernel.features[0]: unknown feature "epol"');
  t.regex(feature.hint ?? '', /did you mean "epoll"/);
  const symbol = recipeError(t, `${MINIMAL}kernel: { disable: [CONFIG_TMPFS] }\n`);
  t.is(symbol.message, 'recipes/x.yaml: kernel.disable[0]: "CONFIG_TMPFS" is not a Kconfig symbol');
  t.regex(symbol.hint ?? '', /without CONFIG_/);
  t.is(recipeError(t, `${MINIMAL}kernel: { disable: [tmpfs] }\n`).message, 'recipes/x.yaml: kernel.disable[0]: "tmpfs" is not a Kconfig symbol');
  t.is(recipeError(t, 'packages: [xyz]\nentrypoint: { cmd: [/x], pidFile: /run/x.pid }\n').message, 'recipes/x.yaml: entrypoint.pidFile: is only for an app whose command forks');
  t.is(recipeError(t, 'packages: [xyz]\nentrypoint: { cmd: [/x], forks: yes please }\n').message, 'recipes/x.yaml: entrypoint.forks: must be true or false, not the string "yes please"');
  t.is(recipeError(t, `${MINIMAL}readiness: { tcp: 80, console: ready }\n`).message, 'recipes/x.yaml: readiness: names 2 probes (tcp, console)');
  t.is(recipeError(t, `${MINIMAL}fixups: [{ file: /etc/x, delete-lines: "(" }]\n`).message.split(':').slice(0, 3).join(':'), 'recipes/x.yaml: fixups[0].delete-lines: is not a valid regular expression');
  t.is(recipeError(t, `${MINIMAL}fixups: [{ file: /etc/x, replace: a }]\n`).message, 'recipes/x.yaml: fixups[0].with: is required');
  t.is(recipeError(t, `${MINIMAL}fixups: [{ file: /etc/x, write: a, delete-lines: b }]\n`).message, 'recipes/x.yaml: fixups[0]: names delete-lines and write at once');
  t.is(recipeError(t, `${MINIMAL}directories: [{ path: /x, mode: "0999" }]\n`).message, 'recipes/x.yaml: directories[0].mode: "0999" is not an octal mode');
  t.is(recipeError(t, `${MINIMAL}users: [Www]\n`).message, 'recipes/x.yaml: users[0]: "Www" is not a user name');
});

test('YAML syntax errors give the line and column', (t) => {
  const error = recipeError(t, 'packages: [nginx\nentrypoint: x\n');
  t.regex(error.message, /^recipes\/x\.yaml: line \d+, column \d+: not valid YAML/);
  t.regex(recipeError(t, 'packages: [a]\npackages: [b]\n').message, /not valid YAML: Map keys must be unique/);
});

test('a command line string is split like a shell would', (t) => {
  const recipe = parseRecipe(`packages: [app]\nentrypoint:\n  cmd: /usr/bin/x -g "daemon off;" --name 'a b' c\\ d\n`, 'x.yaml', 'x');
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/bin/x', '-g', 'daemon off;', '--name', 'a b', 'c d']);
  t.is(recipeError(t, 'packages: [app]\nentrypoint: { cmd: "/x \'oops" }\n').message, `recipes/x.yaml: entrypoint.cmd: unterminated ' quote in: /x 'oops`);
});

test('an unknown recipe name lists the recipes and suggests the close one', async (t) => {
  const error = await t.throwsAsync(loadRecipe('ngnix'), { instanceOf: TinyxError });
  t.is(error?.code, 'E_UNKNOWN_RECIPE');
  t.regex(error?.message ?? '', /^no recipe named "ngnix"; did you mean "nginx"\?\n  searched, in order:\n.*: .*nginx.*$/m);
  t.regex(error?.hint ?? '', /tinyx build --package ngnix \(or with --cmd/);
});

test('a recipe file is read from its path and named after it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-recipe-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'web.yaml'), MINIMAL);
  const recipe = await loadRecipe(join(dir, 'web.yaml'));
  t.is(recipe.name, 'web');
  await writeFile(join(dir, 'bad.yaml'), `${MINIMAL}extra: 1\n`);
  const error = await t.throwsAsync(loadRecipe(join(dir, 'bad.yaml')), { instanceOf: RecipeError });
  t.regex(error?.message ?? '', /bad\.yaml: extra: unknown key$/);
});

test('a TCP probe: a port, or a mapping whose send needs an expect', (t) => {
  const exchange = parseRecipe(`${MINIMAL}readiness:\n  tcp: { port: 6379, send: "PING\\r\\n", expect: "+PONG" }\n`, 'recipes/x.yaml', 'x');
  t.deepEqual(exchange.readiness, { tcp: { port: 6379, send: 'PING\r\n', expect: '+PONG' } }, "YAML's double quotes make the CR LF");
  t.deepEqual(parseRecipe(`${MINIMAL}readiness: { tcp: { port: 22, expect: SSH- } }\n`, 'recipes/x.yaml', 'x').readiness, { tcp: { port: 22, expect: 'SSH-' } }, 'a server that speaks first: no send');
  t.deepEqual(parseRecipe(`${MINIMAL}readiness: { tcp: { port: 80 } }\n`, 'recipes/x.yaml', 'x').readiness, { tcp: { port: 80 } }, 'a mapping of only the port is the short form');
  const lone = recipeError(t, `${MINIMAL}readiness: { tcp: { port: 6379, send: PING } }\n`);
  t.is(lone.message, 'recipes/x.yaml: readiness.tcp.send: needs `expect`: the text the answer must contain');
  t.regex(lone.hint ?? '', /expect: "\+PONG"/);
  t.is(recipeError(t, `${MINIMAL}readiness: { tcp: { send: PING, expect: PONG } }\n`).message, 'recipes/x.yaml: readiness.tcp.port: is required');
  t.is(recipeError(t, `${MINIMAL}readiness: { tcp: { port: 1, expect: "" } }\n`).message, 'recipes/x.yaml: readiness.tcp.expect: must not be empty');
  t.is(recipeError(t, `${MINIMAL}readiness: { tcp: { port: 1, expct: x } }\n`).message, 'recipes/x.yaml: readiness.tcp.expct: unknown key');
});

test('--package and --cmd make a recipe with a tcp probe', (t) => {
  const recipe = recipeFromPackage({ package: 'memcached', cmd: '/usr/bin/memcached -u nobody -p 11211', port: 11211 });
  t.is(recipe.name, 'memcached');
  t.deepEqual(recipe.packages, ['memcached']);
  t.deepEqual(recipe.entrypoint.cmd, ['/usr/bin/memcached', '-u', 'nobody', '-p', '11211']);
  t.deepEqual(recipe.readiness, { tcp: { port: 11211 } });
  t.is(recipe.source, '--package memcached');
  t.throws(() => recipeFromPackage({ package: 'Bad_Name', cmd: 'x' }), { instanceOf: RecipeError, message: '--package Bad_Name: packages[0]: "Bad_Name" is not a Debian package name' });
});
