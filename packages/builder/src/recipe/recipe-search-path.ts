import { realpathSync, statSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { bundledDataDir } from '../bundled-data.js';
import { TinyxError } from '../errors.js';

/** The recipes that ship with tinyx: recipes/ of the checkout, or of the installed package. */
export const BUNDLED_RECIPES_DIR = bundledDataDir('recipes');

/** The directories of the working directory searched for recipes, in order (as mkosi reads mkosi.conf from it). */
export const WORKING_DIRECTORY_RECIPE_DIRS = ['tinyx', 'recipes'] as const;

/** Where a recipe name is looked up. Every field has a default; a build script usually sets none. */
export interface RecipeSearchOptions {
  /** Directories searched first, in order (the CLI's `--recipes`). Each must exist. */
  dirs?: readonly string[] | undefined;
  /** How `dirs` are named in messages; default "recipeDirs" (the CLI says "--recipes"). */
  dirsLabel?: string | undefined;
  /** Directories separated by ":", searched next; default $TINYX_RECIPES ("" for none). Each must exist. */
  env?: string | undefined;
  /** The working directory, whose tinyx/ and recipes/ are searched next when they exist; default process.cwd(). */
  cwd?: string | undefined;
  /** Searched last when it exists; default the recipes that ship with tinyx. */
  bundled?: string | undefined;
}

/** One directory of the search path, and why it is there (for messages). */
export interface RecipeSearchDir {
  dir: string;
  origin: string;
  /** Named by the user (--recipes, TINYX_RECIPES): a directory that is not there is an error, not a skip. */
  required: boolean;
}

/**
 * The candidate directories for recipe names, in search order, before any
 * look at the file system: the given directories, $TINYX_RECIPES, the working
 * directory's tinyx/ and recipes/, then tinyx's own recipes. Relative paths
 * are taken from the working directory.
 */
export function recipeSearchCandidates(options: RecipeSearchOptions = {}): RecipeSearchDir[] {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env.TINYX_RECIPES;
  const given = (options.dirs ?? []).map((dir) => ({ dir: resolve(cwd, dir), origin: options.dirsLabel ?? 'recipeDirs', required: true }));
  const fromEnv = (env ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => ({ dir: resolve(cwd, dir), origin: 'TINYX_RECIPES', required: true }));
  const local = WORKING_DIRECTORY_RECIPE_DIRS.map((name) => ({ dir: join(cwd, name), origin: 'the working directory', required: false }));
  const bundled = { dir: resolve(options.bundled ?? BUNDLED_RECIPES_DIR), origin: "tinyx's own", required: false };
  return [...given, ...fromEnv, ...local, bundled];
}

/**
 * The search path itself: the candidates that are directories, each once, in
 * the first place it appears (by real path: in a checkout, ./recipes is
 * tinyx's own, and says so). A directory the user named that is not there is
 * an error naming where it was named.
 */
export function recipeSearchPath(options: RecipeSearchOptions = {}): RecipeSearchDir[] {
  const byRealPath = new Map<string, RecipeSearchDir>();
  for (const candidate of recipeSearchCandidates(options)) {
    if (!isDirectory(candidate.dir)) {
      if (!candidate.required) continue;
      throw new TinyxError('E_RECIPE_DIR', `${candidate.origin}: ${candidate.dir} is not a directory`, {
        kind: 'user',
        hint: 'name a directory of recipe files (NAME.yaml), or leave it out to use ./tinyx, ./recipes and the recipes that come with tinyx',
      });
    }
    const real = realpathSync(candidate.dir);
    const first = byRealPath.get(real);
    if (!first) byRealPath.set(real, { ...candidate });
    else if (!first.origin.split(', ').includes(candidate.origin)) first.origin += `, ${candidate.origin}`;
  }
  return [...byRealPath.values()];
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
