import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The data directories tinyx ships: recipes, blacklists, kernel fragments, the C source of the image's helpers. */
export type DataDirName = 'recipes' | 'blacklists' | 'kernel' | 'helpers';
export const DATA_DIR_NAMES: readonly DataDirName[] = ['recipes', 'blacklists', 'kernel', 'helpers'];

/** This package's directory: packages/builder in a checkout, node_modules/@tinyx/builder once installed. */
export const PACKAGE_DIR = fileURLToPath(new URL('../', import.meta.url));

/**
 * Where the data directories are, for a package directory.
 *
 * In a checkout of tinyx (packages/builder of a repository whose package.json
 * is the tinyx workspace root) they are the repository's own top-level
 * directories: that is where the design puts them and where they are edited,
 * so an edit counts at once and no copy of them is ever read there. Anywhere
 * else (an installed package) they are inside the package, copied in by its
 * `prepack` script from those same directories when the tarball was made.
 * A leftover copy in a checkout is thus never read, and the copy in a tarball
 * is as fresh as the tarball: neither can go stale.
 */
export function dataRootFor(packageDir: string): string {
  const checkout = resolve(packageDir, '..', '..');
  return isTinyxCheckout(checkout, packageDir) ? checkout : packageDir;
}

function isTinyxCheckout(root: string, packageDir: string): boolean {
  let manifest: { name?: unknown; workspaces?: unknown };
  try {
    manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as typeof manifest;
  } catch {
    return false; // node_modules/ has no package.json: an installed package
  }
  const workspace = `packages/${resolve(packageDir).split('/').pop()}`;
  return manifest.name === 'tinyx' && Array.isArray(manifest.workspaces) && manifest.workspaces.includes(workspace);
}

/** The root of this installation's data directories (see dataRootFor). */
export const DATA_ROOT = dataRootFor(PACKAGE_DIR);

/** One of the data directories that ship with tinyx, as an absolute path. */
export function bundledDataDir(name: DataDirName): string {
  return join(DATA_ROOT, name);
}
