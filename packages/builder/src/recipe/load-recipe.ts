import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { bundledDataDir } from '../bundled-data.js';
import { RecipeError, TinyxError } from '../errors.js';
import type { Recipe } from './recipe.js';
import { splitCommandLine, suggest, validateRecipe } from './validate-recipe.js';

/** The recipes that ship with tinyx: recipes/ of the checkout, or of the installed package. */
export const BUNDLED_RECIPES_DIR = bundledDataDir('recipes');

/** The names of the recipes in a directory (file names without .yaml). */
export async function listRecipes(dir = BUNDLED_RECIPES_DIR): Promise<string[]> {
  const files = await readdir(dir).catch(() => []);
  return files.filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).map((f) => basename(f, extname(f))).sort();
}

/**
 * Loads a recipe by name ("nginx", looked up in `dir`) or by path ("./my.yaml").
 * A name that is not a recipe is a user error that lists the recipes there are.
 */
export async function loadRecipe(nameOrPath: string, dir = BUNDLED_RECIPES_DIR): Promise<Recipe> {
  const looksLikePath = nameOrPath.includes('/') || nameOrPath.endsWith('.yaml') || nameOrPath.endsWith('.yml');
  if (looksLikePath) return loadRecipeFile(resolve(nameOrPath));
  const known = await listRecipes(dir);
  if (!known.includes(nameOrPath)) {
    throw new TinyxError('E_UNKNOWN_RECIPE', `no recipe named "${nameOrPath}" (recipes: ${known.join(', ') || 'none'})${suggest(nameOrPath, known)}`, {
      kind: 'user',
      hint: `write one (see ${displayPath(join(dir, 'nginx.yaml'))}), or build a Debian package without a recipe: tinyx build --package ${nameOrPath} --cmd "/usr/bin/${nameOrPath}"`,
    });
  }
  const file = (await readdir(dir)).find((f) => basename(f, extname(f)) === nameOrPath)!;
  return loadRecipeFile(join(dir, file));
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

function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') ? rel : file;
}
