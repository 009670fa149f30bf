/**
 * What dpkg says is installed in a root (`/var/lib/dpkg/status` and
 * `/var/lib/dpkg/info/*.list`), and the pure planner that picks the packages
 * an application needs: the closure of its Depends and Pre-Depends.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TinyxError } from '../errors.js';
import { readControlFile, type ControlParagraph } from './control.js';
import { formatDependencyGroup, parseDepends, parseProvides, type Dependency, type DependencyGroup, type ProvidedName } from './depends.js';
import { satisfies } from './version.js';

/** One installed package, from its paragraph of the status file. */
export interface InstalledPackage {
  name: string;
  version: string;
  /** `amd64`, `all`... */
  architecture: string;
  /** `same`, `foreign`, `allowed` or `no`; absent when the package does not say. */
  multiArch?: string;
  /** Pre-Depends groups first, then Depends. Recommends and Suggests are left out on purpose. */
  depends: DependencyGroup[];
  provides: ProvidedName[];
  /** `Essential: yes`. */
  essential: boolean;
  priority?: string;
  /** The Status field as written: `install ok installed`, `hold ok installed`... */
  status: string;
}

/** The packages of a dpkg status file that are installed (see `installedFromParagraphs`). */
export async function readDpkgStatus(path: string): Promise<InstalledPackage[]> {
  return installedFromParagraphs(await readControlFile(path), path);
}

/**
 * The installed packages among status-file paragraphs: those whose Status
 * says the package is `installed` with no error flag (`ok`), whatever the
 * selection: `hold ok installed` and `deinstall ok installed` packages are on
 * disk too. Packages that left only their configuration files behind
 * (`deinstall ok config-files`), are half-installed, unpacked and so on are
 * skipped. Throws a TinyxError (`E_DPKG_STATUS`) naming `source` and the
 * package for a paragraph that lacks a required field or has a malformed one.
 */
export function installedFromParagraphs(paragraphs: readonly ControlParagraph[], source = 'dpkg status'): InstalledPackage[] {
  const packages: InstalledPackage[] = [];
  paragraphs.forEach((paragraph, index) => {
    const name = paragraph.get('Package');
    const where = name === undefined ? `${source}: paragraph ${index + 1}` : `${source}: package ${name}`;
    const required = (field: string): string => {
      const value = paragraph.get(field);
      if (value === undefined || value === '') throw new TinyxError('E_DPKG_STATUS', `${where}: no ${field} field`);
      return value;
    };

    const status = required('Status');
    const words = status.split(/\s+/);
    if (words.length !== 3) {
      throw new TinyxError('E_DPKG_STATUS', `${where}: Status "${status}" is not "<selection> <flag> <state>"`);
    }
    if (words[1] !== 'ok' || words[2] !== 'installed') return;

    const packageName = required('Package');
    const relations = (field: string): DependencyGroup[] => parseDepends(paragraph.get(field) ?? '', `${where}: ${field}`);
    const installed: InstalledPackage = {
      name: packageName,
      version: required('Version'),
      architecture: required('Architecture'),
      depends: [...relations('Pre-Depends'), ...relations('Depends')],
      provides: parseProvides(paragraph.get('Provides') ?? '', `${where}: Provides`),
      essential: paragraph.get('Essential') === 'yes',
      status,
    };
    const multiArch = paragraph.get('Multi-Arch');
    if (multiArch !== undefined) installed.multiArch = multiArch;
    const priority = paragraph.get('Priority');
    if (priority !== undefined) installed.priority = priority;
    packages.push(installed);
  });
  return packages;
}

export interface ClosureOptions {
  /** The blacklist: packages not wanted in the image even when something depends on them. */
  exclude: (name: string) => boolean;
}

export interface DependencyClosure {
  /** The roots and everything they need, sorted by name (then architecture). */
  kept: InstalledPackage[];
  /** Names of packages that were needed but excluded, sorted. */
  excluded: string[];
  /**
   * Needs that no installed package meets, sorted: `"jq: libonig5 (>= 6.8.1)"`
   * for a dependency group of package jq, and the bare name for a root that
   * is not installed.
   */
  missing: string[];
}

/**
 * The packages to put in the image: the roots and, breadth-first, every
 * package their Pre-Depends and Depends reach (not Recommends or Suggests).
 *
 * - A group is met by its first alternative that an installed package
 *   satisfies: the package of that name at a version meeting the relation,
 *   or else one that Provides the name (for a versioned relation only a
 *   versioned Provides that meets it counts). The real package wins over
 *   providers so that naming a package means that package. When several
 *   packages provide a name, one already chosen is preferred, then the first
 *   by name. Architecture qualifiers (`perl:any`) are ignored: the status
 *   file is taken to be single-architecture, as debootstrap makes it.
 * - A chosen package that `exclude` matches is not kept and not descended
 *   into, and is listed in `excluded`. It still meets the group: the
 *   blacklist says the dependency is not needed in the image, so no other
 *   alternative is pulled in instead.
 * - Roots are what the user asked for by name, so they are always kept, even
 *   when `exclude` matches them: a recipe may name a blacklisted package on
 *   purpose. A root may be a virtual name (`awk`) or carry an architecture
 *   qualifier.
 * - Groups nothing meets are listed in `missing`, not thrown: the caller
 *   decides whether that is fatal.
 *
 * Pure: the same input always gives the same, sorted, output.
 */
export function dependencyClosure(
  roots: readonly string[],
  installed: readonly InstalledPackage[],
  options: ClosureOptions,
): DependencyClosure {
  const byName = new Map<string, InstalledPackage[]>();
  const providers = new Map<string, { pkg: InstalledPackage; version: string | undefined }[]>();
  for (const pkg of [...installed].sort(byNameAndArchitecture)) {
    append(byName, pkg.name, pkg);
    for (const provided of pkg.provides) append(providers, provided.name, { pkg, version: provided.version });
  }

  // Chosen packages, kept or excluded: each is decided once.
  const chosen = new Set<InstalledPackage>();
  const preferChosen = (candidates: InstalledPackage[]): InstalledPackage | undefined =>
    candidates.find((pkg) => chosen.has(pkg)) ?? candidates[0];

  /** The installed package that meets one alternative, if any. */
  const satisfierOf = (dep: Dependency): InstalledPackage | undefined => {
    const { relation } = dep;
    const real = (byName.get(dep.name) ?? []).filter((pkg) => !relation || satisfies(pkg.version, relation.op, relation.version));
    if (real.length > 0) return preferChosen(real);
    const virtual = (providers.get(dep.name) ?? [])
      .filter(({ version }) => !relation || (version !== undefined && satisfies(version, relation.op, relation.version)))
      .map(({ pkg }) => pkg);
    return preferChosen(virtual);
  };

  const kept: InstalledPackage[] = [];
  const excluded = new Set<string>();
  const missing = new Set<string>();
  const keep = (pkg: InstalledPackage): void => {
    chosen.add(pkg);
    kept.push(pkg);
  };
  for (const root of roots) {
    const pkg = satisfierOf({ name: withoutArchQualifier(root) });
    if (pkg === undefined) missing.add(root);
    else if (!chosen.has(pkg)) keep(pkg);
  }

  // `kept` doubles as the breadth-first queue.
  for (let next = 0; next < kept.length; next++) {
    const pkg = kept[next]!;
    for (const group of pkg.depends) {
      let match: InstalledPackage | undefined;
      for (const alternative of group) {
        match = satisfierOf(alternative);
        if (match !== undefined) break;
      }
      if (match === undefined) {
        missing.add(`${pkg.name}: ${formatDependencyGroup(group)}`);
      } else if (!chosen.has(match)) {
        if (options.exclude(match.name)) {
          chosen.add(match);
          excluded.add(match.name);
        } else {
          keep(match);
        }
      }
    }
  }

  return {
    kept: kept.sort(byNameAndArchitecture),
    excluded: [...excluded].sort(),
    missing: [...missing].sort(),
  };
}

/**
 * The files and directories a package installed, from dpkg's
 * `<infoDir>/<name>.list` or, for Multi-Arch: same packages,
 * `<infoDir>/<name>:<arch>.list` (both names are tried, the likelier first).
 * Absolute paths in dpkg's order, without the `/.` line for the root itself.
 * Throws a TinyxError (`E_DPKG_INFO`) when neither file can be read.
 */
export async function readPackageFileList(
  infoDir: string,
  pkg: Pick<InstalledPackage, 'name' | 'architecture' | 'multiArch'>,
): Promise<string[]> {
  const plain = `${pkg.name}.list`;
  const qualified = `${pkg.name}:${pkg.architecture}.list`;
  const names = pkg.multiArch === 'same' ? [qualified, plain] : [plain, qualified];
  for (const name of names) {
    let text: string;
    try {
      text = await readFile(join(infoDir, name), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      const reason = error instanceof Error ? error.message : String(error);
      throw new TinyxError('E_DPKG_INFO', `${pkg.name}: cannot read ${join(infoDir, name)}: ${reason}`, { cause: error });
    }
    return text.split('\n').filter((line) => line !== '' && line !== '/.');
  }
  throw new TinyxError('E_DPKG_INFO', `${pkg.name}: no file list in ${infoDir} (looked for ${names.join(' and ')})`, {
    hint: 'is the package installed in this root? dpkg -L should list its files',
  });
}

function withoutArchQualifier(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(0, colon);
}

function append<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function byNameAndArchitecture(a: InstalledPackage, b: InstalledPackage): number {
  return compareStrings(a.name, b.name) || compareStrings(a.architecture, b.architecture);
}

/** Code-unit order, not the locale's: the output must not depend on the host. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
