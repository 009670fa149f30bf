import type { ImageManifest } from '@tinyx/image';
import type { KernelFeature } from './kernel-features.js';
import type { OutputFormat } from './pack/formats.js';
import type { Compression } from './pack/compressions.js';
import type { Recipe } from './recipe/recipe.js';
import type { DerivedFrom } from './recipe/recipe-from-unit.js';

export { MANIFEST_VERSION } from '@tinyx/image';

/**
 * manifest.json as the builder writes it: the contract's ImageManifest
 * (@tinyx/image), with the builder's own types for the recipe, the format,
 * the compression, the kernel features and the unit the recipe came from.
 */
export type Manifest = ImageManifest<Omit<Recipe, 'source'> & { source: string }, OutputFormat, Compression, KernelFeature, DerivedFrom>;
