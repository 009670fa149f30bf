import test from 'ava';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TinyxError, findRecipe, loadRecipe, recipeSearchCandidates, recipeSearchPath } from '@tinyx/builder';
import { dataRootFor } from '@tinyx/builder/internals';

const recipe = (cmd: string): string => `packages: [app]\nentrypoint:\n  cmd: [${cmd}]\n`;

/** A project directory with recipes of its own, and a stand-in for tinyx's bundled ones; removed at teardown. */
async function project(t: import('ava').ExecutionContext): Promise<{ cwd: string; bundled: string; dir(name: string, files?: Record<string, string>): Promise<string> }> {
  const root = await mkdtemp(join(tmpdir(), 'tinyx-search-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const cwd = join(root, 'project');
  const dir = async (name: string, files: Record<string, string> = {}): Promise<string> => {
    const path = join(root, name);
    await mkdir(path, { recursive: true });
    for (const [file, text] of Object.entries(files)) await writeFile(join(path, file), text);
    return path;
  };
  await mkdir(cwd);
  return { cwd, bundled: await dir('bundled', { 'nginx.yaml': recipe('/bundled/nginx'), 'redis.yaml': recipe('/bundled/redis') }), dir };
}

test('the candidates, in order: given dirs, $TINYX_RECIPES, ./tinyx, ./recipes, tinyx own; relative paths from the working directory', (t) => {
  const candidates = recipeSearchCandidates({ dirs: ['mine', '/abs/other'], dirsLabel: '--recipes', env: '/env/a::env-b:', cwd: '/work/app', bundled: '/pkg/recipes' });
  t.deepEqual(candidates, [
    { dir: '/work/app/mine', origin: '--recipes', required: true },
    { dir: '/abs/other', origin: '--recipes', required: true },
    { dir: '/env/a', origin: 'TINYX_RECIPES', required: true },
    { dir: '/work/app/env-b', origin: 'TINYX_RECIPES', required: true },
    { dir: '/work/app/tinyx', origin: 'the working directory', required: false },
    { dir: '/work/app/recipes', origin: 'the working directory', required: false },
    { dir: '/pkg/recipes', origin: "tinyx's own", required: false },
  ]);
});

test('the candidates default to $TINYX_RECIPES, the process working directory and the bundled recipes', (t) => {
  const saved = process.env.TINYX_RECIPES;
  process.env.TINYX_RECIPES = '/from/env';
  let candidates;
  try {
    candidates = recipeSearchCandidates();
  } finally {
    if (saved === undefined) delete process.env.TINYX_RECIPES;
    else process.env.TINYX_RECIPES = saved;
  }
  t.deepEqual(
    candidates.map((c) => c.dir),
    ['/from/env', join(process.cwd(), 'tinyx'), join(process.cwd(), 'recipes'), candidates.at(-1)!.dir],
  );
  t.regex(candidates.at(-1)!.dir, /\/recipes$/);
});

test('the search path keeps the directories that exist, once each; a named one that does not exist is an error', async (t) => {
  const p = await project(t);
  const mine = await p.dir('mine');
  await mkdir(join(p.cwd, 'recipes'));
  // ./tinyx is missing: skipped. The bundled directory reached again through a link: one entry, both origins.
  await symlink(p.bundled, join(p.cwd, 'linked'));
  const path = recipeSearchPath({ dirs: [mine, 'linked'], dirsLabel: '--recipes', env: '', cwd: p.cwd, bundled: p.bundled });
  t.deepEqual(path, [
    { dir: mine, origin: '--recipes', required: true },
    { dir: join(p.cwd, 'linked'), origin: "--recipes, tinyx's own", required: true },
    { dir: join(p.cwd, 'recipes'), origin: 'the working directory', required: false },
  ]);

  const missing = t.throws(() => recipeSearchPath({ env: `${mine}:${join(p.cwd, 'nope')}`, cwd: p.cwd, bundled: p.bundled }), { instanceOf: TinyxError });
  t.is(missing?.code, 'E_RECIPE_DIR');
  t.is(missing?.kind, 'user');
  t.is(missing?.message, `TINYX_RECIPES: ${join(p.cwd, 'nope')} is not a directory`);
  const file = join(p.cwd, 'a-file');
  await writeFile(file, '');
  t.throws(() => recipeSearchPath({ dirs: [file], dirsLabel: '--recipes', env: '', cwd: p.cwd, bundled: p.bundled }), { message: `--recipes: ${file} is not a directory` });
});

test('a name is the file of the first directory that has it, in search order', async (t) => {
  const p = await project(t);
  const given = await p.dir('given', { 'nginx.yml': recipe('/given/nginx') });
  const env = await p.dir('env', { 'nginx.yaml': recipe('/env/nginx'), 'redis.yaml': recipe('/env/redis') });
  await mkdir(join(p.cwd, 'tinyx'));
  await mkdir(join(p.cwd, 'recipes'));
  await writeFile(join(p.cwd, 'tinyx', 'nginx.yaml'), recipe('/tinyx/nginx'));
  await writeFile(join(p.cwd, 'recipes', 'nginx.yaml'), recipe('/recipes/nginx'));
  const cmdOf = async (name: string, search: Parameters<typeof loadRecipe>[1]): Promise<string> => (await loadRecipe(name, search)).entrypoint.cmd[0]!;

  const all = { dirs: [given], env, cwd: p.cwd, bundled: p.bundled };
  t.is(await cmdOf('nginx', all), '/given/nginx', '.yml counts too');
  t.is(await cmdOf('redis', all), '/env/redis');
  t.is(await cmdOf('nginx', { env, cwd: p.cwd, bundled: p.bundled }), '/env/nginx');
  t.is(await cmdOf('nginx', { env: '', cwd: p.cwd, bundled: p.bundled }), '/tinyx/nginx');
  await rm(join(p.cwd, 'tinyx'), { recursive: true });
  t.is(await cmdOf('nginx', { env: '', cwd: p.cwd, bundled: p.bundled }), '/recipes/nginx');
  t.is(await cmdOf('redis', { env: '', cwd: p.cwd, bundled: p.bundled }), '/bundled/redis');
  t.is(await findRecipe('redis', { env: '', cwd: p.cwd, bundled: p.bundled }), join(p.bundled, 'redis.yaml'));
  // The recipe records the file it came from (messages name it).
  t.is((await loadRecipe('nginx', { env: '', cwd: p.cwd, bundled: p.bundled })).source, join(p.cwd, 'recipes', 'nginx.yaml'));
});

test('an unknown name lists each directory searched, in order, with its recipes; the hint names a real recipe file', async (t) => {
  const p = await project(t);
  const given = await p.dir('given', { 'web.yaml': recipe('/web'), 'notes.txt': '' });
  await mkdir(join(p.cwd, 'recipes'));
  const error = await t.throwsAsync(findRecipe('ngnix', { dirs: [given], dirsLabel: '--recipes', env: '', cwd: p.cwd, bundled: p.bundled }), { instanceOf: TinyxError });
  t.is(error?.code, 'E_UNKNOWN_RECIPE');
  t.is(error?.kind, 'user');
  t.is(
    error?.message,
    [
      'no recipe named "ngnix"; did you mean "nginx"?',
      '  searched, in order:',
      `    ${given} (--recipes): web`,
      `    recipes (the working directory): none`,
      `    ${p.bundled} (tinyx's own): nginx, redis`,
    ].join('\n'),
  );
  t.is(error?.hint, `write recipes/ngnix.yaml (for an example, see ${join(p.bundled, 'nginx.yaml')}), or build a Debian package without a recipe, from its systemd unit: tinyx build --package ngnix (or with --cmd "/usr/bin/ngnix ...")`);
});

test('the data directories: the top level of a tinyx checkout, else the installed package itself', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'tinyx-data-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const checkout = join(root, 'checkout');
  await mkdir(join(checkout, 'packages', 'builder'), { recursive: true });
  await writeFile(join(checkout, 'package.json'), JSON.stringify({ name: 'tinyx', workspaces: ['packages/builder'] }));
  t.is(dataRootFor(join(checkout, 'packages', 'builder')), checkout);

  const installed = join(root, 'project', 'node_modules', '@tinyx', 'builder');
  await mkdir(installed, { recursive: true });
  t.is(dataRootFor(installed), installed);
  // Another project's workspace that happens to hold a package named builder is not tinyx.
  const other = join(root, 'other');
  await mkdir(join(other, 'packages', 'builder'), { recursive: true });
  await writeFile(join(other, 'package.json'), JSON.stringify({ name: 'other', workspaces: ['packages/builder'] }));
  t.is(dataRootFor(join(other, 'packages', 'builder')), join(other, 'packages', 'builder'));
});
