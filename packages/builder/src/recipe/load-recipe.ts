import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { RecipeError, TinyxError } from '../errors.js';
import type { Recipe } from './recipe.js';
import { BUNDLED_RECIPES_DIR, recipeSearchPath, type RecipeSearchDir, type RecipeSearchOptions } from './recipe-search-path.js';
import { splitCommandLine } from './split-command-line.js';
import { suggest } from './suggest.js';
import { validateRecipe } from './validate-recipe.js';

/** The names of the recipes in a directory (file names without .yaml or .yml), sorted. */
export async function listRecipes(dir = BUNDLED_RECIPES_DIR): Promise<string[]> {
  return recipeNames(await readdir(dir).catch(() => []));
}

function recipeNames(files: readonly string[]): string[] {
  return [...new Set(files.filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).map((f) => basename(f, extname(f))))].sort();
}

/**
 * Loads a recipe by name ("nginx", looked up along the recipe search path:
 * see recipeSearchPath) or by path ("./my.yaml", "recipes/web.yml").
 */
export async function loadRecipe(nameOrPath: string, search: RecipeSearchOptions = {}): Promise<Recipe> {
  const looksLikePath = nameOrPath.includes('/') || nameOrPath.endsWith('.yaml') || nameOrPath.endsWith('.yml');
  if (looksLikePath) return loadRecipeFile(resolve(search.cwd ?? process.cwd(), nameOrPath));
  return loadRecipeFile(await findRecipe(nameOrPath, search));
}

/**
 * The file of a recipe name: NAME.yaml (or NAME.yml) in the first directory of
 * the search path that has one. A name found nowhere is a user error that
 * lists each directory searched, in order, with the recipes it holds.
 */
export async function findRecipe(name: string, search: RecipeSearchOptions = {}): Promise<string> {
  const searched: { dir: RecipeSearchDir; files: string[]; names: string[] }[] = [];
  for (const dir of recipeSearchPath(search)) {
    const files = await readdir(dir.dir);
    const file = [`${name}.yaml`, `${name}.yml`].find((f) => files.includes(f));
    if (file) return join(dir.dir, file);
    searched.push({ dir, files, names: recipeNames(files) });
  }
  const cwd = search.cwd ?? process.cwd();
  const shown = (path: string): string => displayPath(path, cwd);
  const all = [...new Set(searched.flatMap((s) => s.names))];
  const lines = searched.map((s) => `    ${shown(s.dir.dir)} (${s.dir.origin}): ${s.names.join(', ') || 'none'}`);
  // A real file to copy from: nginx's, else any recipe found.
  const examples = searched.flatMap((s) => s.files.filter((f) => /\.ya?ml$/.test(f)).map((f) => join(s.dir.dir, f)));
  const example = examples.find((f) => basename(f, extname(f)) === 'nginx') ?? examples[0];
  const exampleFile = example === undefined ? undefined : shown(example);
  throw new TinyxError('E_UNKNOWN_RECIPE', `no recipe named "${name}"${suggest(name, all)}\n  searched, in order:\n${lines.join('\n') || '    nothing: no directory of the search path exists'}`, {
    kind: 'user',
    hint: `write ${shown(join(cwd, 'recipes', `${name}.yaml`))}${exampleFile ? ` (for an example, see ${exampleFile})` : ''}, or build a Debian package without a recipe, from its systemd unit: tinyx build --package ${name} (or with --cmd "/usr/bin/${name} ...")`,
  });
}

export async function loadRecipeFile(file: string): Promise<Recipe> {
  const shown = displayPath(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new RecipeError(shown, undefined, `cannot read it: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return parseRecipe(text, shown, basename(file, extname(file)));
}

/** Parses recipe YAML text. `file` is only used in messages. */
export function parseRecipe(text: string, file: string, fallbackName: string): Recipe {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const problem = doc.errors[0];
  if (problem) {
    const where = problem.linePos?.[0];
    const at = where ? `line ${where.line}, column ${where.col}` : undefined;
    throw new RecipeError(file, at, `not valid YAML: ${problem.message.split('\n')[0]}`);
  }
  return validateRecipe(doc.toJS(), file, fallbackName);
}

export interface PackageRecipeOptions {
  package: string;
  /** The command line to run, split like a shell does (quotes, no expansion). */
  cmd: string;
  port?: number | undefined;
  user?: string | undefined;
  name?: string | undefined;
}

/** A recipe for `tinyx build --package X --cmd "..."`: one package, its command, a TCP probe if a port is given. */
export function recipeFromPackage(options: PackageRecipeOptions): Recipe {
  const source = `--package ${options.package}`;
  const data: Record<string, unknown> = {
    name: options.name ?? options.package.replace(/:.*$/, ''),
    packages: [options.package],
    entrypoint: {
      cmd: splitCommandLine(options.cmd, (p) => {
        throw new RecipeError(source, '--cmd', p);
      }),
      user: options.user ?? 'root',
    },
    // What almost every network server needs; a recipe file can say exactly.
    kernel: { features: ['net', 'unix', 'epoll', 'eventfd', 'futex', 'file-locking', 'shmem'] },
  };
  if (options.port !== undefined) data.readiness = { tcp: options.port };
  return validateRecipe(data, source, options.package);
}

/** A path as a user would type it: relative when it is below the working directory. */
function displayPath(file: string, cwd = process.cwd()): string {
  const rel = relative(cwd, file);
  return rel && !rel.startsWith('..') ? rel : file;
}
