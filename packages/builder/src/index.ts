/**
 * @tinyx/builder: turn an application recipe into a minimal VM image directory,
 * the TinyX way (LightVM, SOSP 2017).
 */
export { build, createBuild, Build, formatBytes } from './build.js';
export { compilerCacheSummary, readKconfigFiles, tinyConfigText } from './kernel/build-kernel.js';
export { findDependencies, parseKconfig } from './kernel/kconfig.js';
export { holds, kconfigSymbols, minimizeCandidates, minimizeOptions } from './kernel/minimize.js';
export { kernelFragments } from './kernel/fragments.js';
export type { KconfigSymbols, MinimizeResult, MinimizeStep, ProtectedOption, TrialOutcome } from './kernel/minimize.js';
export { PLATFORMS } from '@tinyx/image';
export type { BuildOptions, BuildEvent, BuildStep, StepId, StepResult, Platform, KernelResult } from './build.js';
export type { Manifest } from './manifest.js';
export { MANIFEST_VERSION } from './manifest.js';
export type { Recipe, Readiness, Fixup, DirectorySpec } from './recipe/recipe.js';
export { loadRecipe, loadRecipeFile, findRecipe, parseRecipe, recipeFromPackage, listRecipes } from './recipe/load-recipe.js';
export { BUNDLED_RECIPES_DIR, recipeSearchPath, recipeSearchCandidates, WORKING_DIRECTORY_RECIPE_DIRS } from './recipe/recipe-search-path.js';
export type { RecipeSearchOptions, RecipeSearchDir } from './recipe/recipe-search-path.js';
export type { PackageRecipeOptions } from './recipe/load-recipe.js';
export { parseUnit, unitValues, unitValue, parseExecLine, parseEnvironment, parseEnvironmentFile, environmentFiles, splitUnitWords, UnitSyntaxError } from './recipe/systemd-unit.js';
export type { SystemdUnit, UnitAssignment, ExecCommand } from './recipe/systemd-unit.js';
export { recipeFromUnit } from './recipe/recipe-from-unit.js';
export { chooseServiceUnit, isUmbrella, recipeFromInstalledUnit, umbrellaInstance, UNIT_DIRS } from './recipe/package-unit.js';
export type { UnitRecipeRequest } from './recipe/package-unit.js';
export { recipeToYaml, setRecipeKernelDisable, writeNewFile } from './recipe/recipe-yaml.js';
export { recipeJsonSchema, recipeSchemaText, RECIPE_SCHEMA_ID } from './recipe/recipe-json-schema.js';
export { recipeFieldReference, withRecipeReference } from './recipe/recipe-reference.js';
export type { DerivedFrom, UnitRecipeOptions } from './recipe/recipe-from-unit.js';
export { parseTmpfiles } from './recipe/tmpfiles.js';
export type { TmpfilesEntry } from './recipe/tmpfiles.js';
export { KERNEL_FEATURES, isKernelFeature } from './kernel-features.js';
export type { KernelFeature } from './kernel-features.js';
export { OUTPUT_FORMATS, packedFileName } from './pack/formats.js';
export { COMPRESSIONS } from './pack/compressions.js';
export type { Compression } from './pack/compressions.js';
export type { OutputFormat } from './pack/formats.js';
export { TinyxError, RecipeError, MissingToolError, CommandFailedError, InterruptedError } from './errors.js';
export type { ErrorKind } from './errors.js';
export { hasOverlayFs } from './host-check.js';
export { defaultCacheDir, processExists } from './cache.js';
export { checkOutputDir, replaceOutputDir } from './emit/output-dir.js';
export type { OutputState } from './emit/output-dir.js';

// Registries: an image directory pushed and pulled as an OCI artifact (and a kernel-boot container).
export { KERNEL_BOOT_PATHS, TINYX_ARTIFACT_TYPE, imageLayout, pullImage, pushImage } from './oci/image-artifact.js';
export type { PullResult, PushResult, RegistryOptions } from './oci/image-artifact.js';
export { parseReference, formatReference } from './oci/reference.js';
export type { ImageReference } from './oci/reference.js';
export { credentialFiles, registryCredentials } from './oci/credentials.js';
