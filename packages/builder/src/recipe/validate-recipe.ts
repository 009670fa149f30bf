import type { Recipe } from './recipe.js';
import { RECIPE } from './recipe-fields.js';
import type { Json } from './value-kind.js';

// @tinyx/builder/internals has exported these from this module since before they had modules of their own.
export { splitCommandLine } from './split-command-line.js';
export { suggest } from './suggest.js';

/**
 * Validates the parsed YAML of a recipe and fills in defaults, as
 * RECIPE_FIELDS says. Strict: an unknown key, a wrong type or a bad value is a
 * RecipeError naming the file and the field, with a hint where one helps (a
 * close key name, the allowed values).
 */
export function validateRecipe(data: unknown, file: string, fallbackName: string): Recipe {
  return { ...RECIPE.read(data as Json, '', { file, fallbackName }), source: file };
}
