import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundledDataDir } from './bundled-data.js';
import { RecipeError } from './errors.js';

/** The blacklists that ship with tinyx: blacklists/ of the checkout, or of the installed package. */
export const BUNDLED_BLACKLISTS_DIR = bundledDataDir('blacklists');

/** The packages and paths never shipped in an image (see blacklists/*.txt for the reasons). */
export interface Blacklist {
  packages: readonly string[];
  paths: readonly string[];
  isPackageExcluded(name: string): boolean;
  isPathExcluded(path: string): boolean;
}

export async function loadBlacklist(dir = BUNDLED_BLACKLISTS_DIR): Promise<Blacklist> {
  const packagesFile = join(dir, 'packages.txt');
  const pathsFile = join(dir, 'paths.txt');
  const packages = parseList(await readFile(packagesFile, 'utf8'), packagesFile, (entry) =>
    /^[a-z0-9*][a-z0-9+.*-]*$/.test(entry) ? undefined : 'is not a package name or a pattern of one',
  );
  const paths = parseList(await readFile(pathsFile, 'utf8'), pathsFile, (entry) => (entry.startsWith('/') ? undefined : 'must be an absolute path pattern'));
  return makeBlacklist(packages, paths);
}

export function makeBlacklist(packages: readonly string[], paths: readonly string[]): Blacklist {
  const packageRes = packages.map((p) => globToRegExp(p, false));
  const pathRes = paths.map((p) => globToRegExp(p, true));
  return {
    packages,
    paths,
    isPackageExcluded: (name) => packageRes.some((re) => re.test(name.replace(/:.*$/, ''))),
    isPathExcluded: (path) => pathRes.some((re) => re.test(path)),
  };
}

/** One entry per line; `#` starts a comment, blank lines are ignored. */
function parseList(text: string, file: string, check: (entry: string) => string | undefined): string[] {
  const entries: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const entry = raw.replace(/#.*/, '').trim();
    if (!entry) return;
    const problem = check(entry);
    if (problem) throw new RecipeError(file, `line ${i + 1}`, `"${entry}" ${problem}`);
    entries.push(entry);
  });
  return entries;
}

/** `**` matches across "/", `*` and `?` do not (for paths); for package names `*` matches anything. */
export function globToRegExp(glob: string, isPath: boolean): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += isPath ? '[^/]*' : '.*';
    else if (c === '?') re += isPath ? '[^/]' : '.';
    else re += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
