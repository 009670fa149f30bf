import type { RECIPE_FIELDS } from './recipe-fields.js';
import type { Output } from './value-kind.js';

/** A validated, normalized recipe: every field of RECIPE_FIELDS present, defaults filled in. */
export interface Recipe extends Output<typeof RECIPE_FIELDS> {
  /** Where the recipe came from: a file path, or a description such as "--package memcached". */
  source: string;
}

/** How the toolstack (and the generated /init) tells that the application is ready. */
export type Readiness = NonNullable<Recipe['readiness']>;

/** A recipe-specific edit of a file in the image, applied after the files are resolved. */
export type Fixup = Recipe['fixups'][number];

export type DirectorySpec = Recipe['directories'][number];
