import { RECIPE } from './recipe-fields.js';
import type { JsonSchema } from './value-kind.js';

/** Where schema.json is published: recipes/ of the repository, beside the recipes that name it. */
export const RECIPE_SCHEMA_ID = 'https://raw.githubusercontent.com/tinyx/tinyx/main/recipes/schema.json';

/**
 * The recipe as JSON Schema (draft-07, which editors' YAML support knows
 * best), made from RECIPE_FIELDS. It checks what a schema can; only the
 * validator checks the digits of a mode written as a number, the quotes of a
 * command string and that its first word is not empty, and the name a recipe
 * takes from its file.
 */
export function recipeJsonSchema(): JsonSchema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: RECIPE_SCHEMA_ID,
    $comment: 'Generated from packages/builder/src/recipe/recipe-fields.ts by scripts/recipe-schema.js: edit the table, not this file.',
    title: 'tinyx recipe',
    description: 'One application to build into a minimal Linux VM image: the Debian packages that hold it, how it starts, how to tell that it is ready.',
    ...RECIPE.schema,
  };
}

/** recipes/schema.json as committed. */
export function recipeSchemaText(): string {
  return `${JSON.stringify(recipeJsonSchema(), null, 2)}\n`;
}
