import test from 'ava';
import { Ajv } from 'ajv';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { RecipeError, parseRecipe, recipeSchemaText, withRecipeReference } from '@tinyx/builder';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const REGENERATE = 'run: npx tsc -b && node scripts/recipe-schema.js';
const MINIMAL = 'packages: [nginx]\nentrypoint:\n  cmd: [/usr/sbin/nginx]\n';

async function schemaValidator() {
  const schema: unknown = JSON.parse(await readFile(join(REPO, 'recipes/schema.json'), 'utf8'));
  // Strict, so that a keyword ajv does not know or finds in the wrong place is an error, not ignored; but
  // a union type (an environment value is a string or a number) is allowed, and so is `oneOf: [{ required:
  // [tcp] }, ...]` naming properties its parent defines (strictRequired): the usual "exactly one of".
  const ajv = new Ajv({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: true, formats: { regex: isRegex } });
  return ajv.compile(schema as object);
}

function isRegex(source: string): boolean {
  try {
    new RegExp(source, 'm');
    return true;
  } catch {
    return false;
  }
}

test('recipes/schema.json is what the recipe table makes', async (t) => {
  t.is(await readFile(join(REPO, 'recipes/schema.json'), 'utf8'), recipeSchemaText(), REGENERATE);
});

test("the README's recipe field reference is what the recipe table makes", async (t) => {
  const readme = await readFile(join(REPO, 'README.md'), 'utf8');
  t.is(readme, withRecipeReference(readme), REGENERATE);
  t.regex(readme, /\| `fixups\[\]\.delete-lines` \| regular expression \|/);
});

test("the README's example recipe loads", async (t) => {
  const readme = await readFile(join(REPO, 'README.md'), 'utf8');
  const example = /## Recipes\n[^]*?```yaml\n([^]*?)```/.exec(readme)?.[1];
  t.truthy(example);
  const recipe = parseRecipe(example!, 'README.md', 'nginx');
  t.deepEqual(recipe.directories[1], { path: '/var/log/nginx', owner: 'www-data', mode: 0o750 });
  t.true((await schemaValidator())(parse(example!)));
});

test('every recipe in recipes/ validates against schema.json, and the schema comment changes nothing the loader reads', async (t) => {
  const validate = await schemaValidator();
  const files = (await readdir(join(REPO, 'recipes'))).filter((f) => f.endsWith('.yaml'));
  t.true(files.length >= 2);
  for (const file of files) {
    const text = await readFile(join(REPO, 'recipes', file), 'utf8');
    t.true(validate(parse(text)), `${file}: ${JSON.stringify(validate.errors)}`);
    t.true(text.startsWith('# yaml-language-server: $schema=./schema.json\n'), file);
    const withoutComment = text.replace(/^# yaml-language-server: .*\n/, '');
    t.deepEqual(parseRecipe(text, file, 'x'), parseRecipe(withoutComment, file, 'x'));
  }
});

// The inputs of recipe.test.ts that the validator rejects, and a few more: schema.json must reject each too.
const REJECTED: [yaml: string, message: string | RegExp][] = [
  [`${MINIMAL}  usr: www-data\n`, 'recipes/x.yaml: entrypoint.usr: unknown key'],
  [`${MINIMAL}pakages: [x]\n`, 'recipes/x.yaml: pakages: unknown key'],
  ['packages: nginx\nentrypoint: { cmd: [/x] }\n', 'recipes/x.yaml: packages: must be a list, not the string "nginx"'],
  [`${MINIMAL}readiness: { tcp: "80" }\n`, 'recipes/x.yaml: readiness.tcp: must be a port number 1-65535, not the string "80"'],
  [`${MINIMAL}readiness: { http: { port: 70000 } }\n`, 'recipes/x.yaml: readiness.http.port: must be a port number 1-65535, not number 70000'],
  [`${MINIMAL}users: [1]\n`, 'recipes/x.yaml: users[0]: must be a string, not number 1'],
  ['packages: [nginx]\n', 'recipes/x.yaml: entrypoint: is required'],
  ['- just a list\n', 'recipes/x.yaml: (top level): must be a mapping, not a list'],
  ['packages: [Nginx]\nentrypoint: { cmd: [/x] }\n', 'recipes/x.yaml: packages[0]: "Nginx" is not a Debian package name'],
  ['packages: [Bad_Name]\nentrypoint: { cmd: [/x] }\n', 'recipes/x.yaml: packages[0]: "Bad_Name" is not a Debian package name'],
  [`${MINIMAL}include: [var/www]\n`, 'recipes/x.yaml: include[0]: "var/www" must be an absolute path'],
  [`${MINIMAL}include: [/var/../etc]\n`, 'recipes/x.yaml: include[0]: "/var/../etc" must not contain ".."'],
  [`${MINIMAL}kernel: { features: [epol] }\n`, 'recipes/x.yaml: kernel.features[0]: unknown feature "epol"'],
  ['packages: [xyz]\nentrypoint: { cmd: [/x], pidFile: /run/x.pid }\n', 'recipes/x.yaml: entrypoint.pidFile: is only for an app whose command forks'],
  ['packages: [xyz]\nentrypoint: { cmd: [/x], forks: yes please }\n', 'recipes/x.yaml: entrypoint.forks: must be true or false, not the string "yes please"'],
  [`${MINIMAL}readiness: { tcp: 80, console: ready }\n`, 'recipes/x.yaml: readiness: names 2 probes (tcp, console)'],
  [`${MINIMAL}readiness: {}\n`, 'recipes/x.yaml: readiness: names no probe'],
  [`${MINIMAL}readiness: { tcp: { port: 6379, send: PING } }\n`, 'recipes/x.yaml: readiness.tcp.send: needs `expect`: the text the answer must contain'],
  [`${MINIMAL}readiness: { tcp: { send: PING, expect: PONG } }\n`, 'recipes/x.yaml: readiness.tcp.port: is required'],
  [`${MINIMAL}fixups: [{ file: /etc/x, delete-lines: "(" }]\n`, /^recipes\/x\.yaml: fixups\[0\]\.delete-lines: is not a valid regular expression: /],
  [`${MINIMAL}fixups: [{ file: /etc/x, replace: a }]\n`, 'recipes/x.yaml: fixups[0].with: is required'],
  [`${MINIMAL}fixups: [{ file: /etc/x, write: a, delete-lines: b }]\n`, 'recipes/x.yaml: fixups[0]: names delete-lines and write at once'],
  [`${MINIMAL}fixups: [{ file: /etc/x, delete-lines: b, with: c }]\n`, 'recipes/x.yaml: fixups[0].with: goes only with replace'],
  [`${MINIMAL}directories: [{ path: /x, mode: "0999" }]\n`, 'recipes/x.yaml: directories[0].mode: "0999" is not an octal mode'],
  [`${MINIMAL}users: [Www]\n`, 'recipes/x.yaml: users[0]: "Www" is not a user name'],
  [`${MINIMAL}  env: { 1A: x }\n`, 'recipes/x.yaml: entrypoint.env.1A: is not a valid environment variable name'],
  ['packages: []\nentrypoint: { cmd: [/x] }\n', 'recipes/x.yaml: packages: must name at least one Debian package'],
  ['packages: [ab]\nentrypoint: { cmd: [] }\n', 'recipes/x.yaml: entrypoint.cmd: must name the program to run'],
  ['name: Web\npackages: [ab]\nentrypoint: { cmd: [/x] }\n', 'recipes/x.yaml: name: "Web" is not a valid image name'],
];

/** A RecipeError's field as a JSON Pointer: directories[0].mode is /directories/0/mode. */
function pointer(field: string | undefined): string {
  return !field || field === '(top level)' ? '' : `/${field.replace(/\[(\d+)\]/g, '.$1').split('.').join('/')}`;
}

test('schema.json rejects what the validator rejects, at that field or the mapping that holds it', async (t) => {
  const validate = await schemaValidator();
  for (const [yaml, message] of REJECTED) {
    const error = t.throws(() => parseRecipe(yaml, 'recipes/x.yaml', 'x'), { instanceOf: RecipeError, message }, yaml);
    t.false(validate(parse(yaml)), `schema.json accepts: ${yaml}`);
    const at = pointer(error?.field);
    const where = (validate.errors ?? []).map((e) => e.instancePath);
    t.true(
      where.some((path) => at === path || at.startsWith(`${path}/`)),
      `${yaml}: the validator faults ${at}, the schema ${where.join(', ')}`,
    );
  }
});

test('schema.json accepts what the validator accepts, short forms included', async (t) => {
  const validate = await schemaValidator();
  const accepted = [
    MINIMAL,
    `packages: [app]\nentrypoint:\n  cmd: /usr/bin/x -g "daemon off;" --name 'a b' c\\ d\n  env: { PORT: 8080, MODE: prod }\n`,
    `${MINIMAL}directories: [/run/x, { path: /var/lib/x, owner: www-data, mode: 0750 }]\nreadiness: null\ncheck: /usr/sbin/nginx -t\n`,
    `${MINIMAL}readiness: { console: "ready to accept" }\nfixups: [{ file: /etc/x, replace: "a+", with: b }, { file: /etc/y, write: "" }]\n`,
    'packages: [xyz]\nentrypoint: { cmd: [/x], forks: true, pidFile: /run/x.pid }\n',
    `${MINIMAL}readiness: { tcp: { port: 6379, send: "PING\\r\\n", expect: +PONG } }\n`,
    `${MINIMAL}readiness: { tcp: { port: 22, expect: SSH- } }\n`,
  ];
  for (const yaml of accepted) {
    t.notThrows(() => parseRecipe(yaml, 'recipes/x.yaml', 'x'), yaml);
    t.true(validate(parse(yaml)), `${yaml}: ${JSON.stringify(validate.errors)}`);
  }
});
