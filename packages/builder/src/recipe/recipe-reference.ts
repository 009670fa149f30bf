import { TinyxError } from '../errors.js';
import { RECIPE_FIELDS } from './recipe-fields.js';
import type { FieldDocs } from './value-kind.js';

const START = '<!-- recipe-fields:start -->';
const END = '<!-- recipe-fields:end -->';

/** The README's reference of the recipe fields: one table row per field, a nested one by its path (`entrypoint.cmd`, `directories[].mode`). */
export function recipeFieldReference(): string {
  return [
    '<!-- Generated from packages/builder/src/recipe/recipe-fields.ts by `node scripts/recipe-schema.js`: edit the table, not this block. -->',
    '',
    'Every field, as `recipes/schema.json` describes it too. An editor with a YAML language server checks a recipe as it is',
    "typed when a comment names the schema: `# yaml-language-server: $schema=./schema.json` in tinyx's own, the path to",
    "`node_modules/@tinyx/builder/recipes/schema.json` in a project's.",
    '',
    '| Field | Type | Default | What it is |',
    '| --- | --- | --- | --- |',
    ...rows(RECIPE_FIELDS, ''),
    // The end marker is a block of its own, not a last row of the table.
    '',
  ].join('\n');
}

function rows(fields: FieldDocs, prefix: string): string[] {
  return Object.entries(fields).flatMap(([key, entry]) => {
    const path = `${prefix}${key}`;
    const inner = entry.kind.inner;
    return [`| \`${path}\` | ${entry.kind.type} | ${defaultCell(entry)} | ${entry.describe.replaceAll('|', '\\|')} |`, ...(inner ? rows(inner.fields, `${path}${inner.path}.`) : [])];
  });
}

function defaultCell(entry: FieldDocs[string]): string {
  if (entry.required) return 'required';
  if ('default' in entry && typeof entry.default !== 'function') return `\`${JSON.stringify(entry.default)}\``;
  // One that depends on the file, a variant (readiness.tcp), a companion (fixups[].with): said in words.
  return entry.defaultText ?? '';
}

/** The README's text with the field reference between its markers made anew. */
export function withRecipeReference(readme: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new TinyxError('E_INTERNAL', `the README has no ${START} ... ${END} block for the recipe field reference`);
  return `${readme.slice(0, start + START.length)}\n${recipeFieldReference()}\n${readme.slice(end)}`;
}
