#!/usr/bin/env node
// Writes recipes/schema.json and the README's recipe field reference (the
// block between <!-- recipe-fields:start --> and <!-- recipe-fields:end -->)
// from the one table of recipe fields, packages/builder/src/recipe/recipe-fields.ts,
// as compiled:
//
//   npx tsc -b && node scripts/recipe-schema.js
//
// test/unit/recipe-schema.test.ts fails while either file differs from what the table makes.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { recipeSchemaText } from '../packages/builder/dist/recipe/recipe-json-schema.js';
import { withRecipeReference } from '../packages/builder/dist/recipe/recipe-reference.js';

const repo = fileURLToPath(new URL('..', import.meta.url));

async function update(path, make) {
  const before = await readFile(repo + path, 'utf8').catch(() => '');
  const after = make(before);
  if (after === before) return console.log(`${path}: up to date`);
  await writeFile(repo + path, after);
  console.log(`${path}: written`);
}

await update('recipes/schema.json', () => recipeSchemaText());
await update('README.md', withRecipeReference);
