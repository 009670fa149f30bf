import { posix } from 'node:path';
import type { Blacklist } from '../blacklist.js';
import { RecipeError, TinyxError } from '../errors.js';
import type { Recipe } from '../recipe/recipe.js';
import { dependencyClosure, type InstalledPackage } from '../dpkg/status.js';
import { classifyExecutable, readInterpreter } from './elf.js';
import { defaultLibraryDirs, parseLdSoConf } from './ld-so-conf.js';
import { expandDynamicStringTokens, parseObjdumpPrivateHeaders } from './objdump.js';
import { resolveInRoot, type ResolvedPath } from './root-path.js';
import type { RootView } from './root-view.js';

/** A regular file of the install root that goes into the image, at the same path. */
export interface PlannedFile {
  path: string;
  mode: number;
  size: number;
  /** Owner in the install root (dpkg-statoverride makes some config readable only by the daemon's account). */
  uid: number;
  gid: number;
  /** Why it is in the image: "entrypoint", "NEEDED by /usr/sbin/nginx", "package nginx-common", "include", "dlopen". */
  reason: string;
  /** The package that installed it, when dpkg knows. */
  package: string | undefined;
  elf: boolean;
}

export interface ImagePlan {
  /** argv[0] of the entrypoint as an absolute path in the image. */
  entrypoint: string;
  files: Map<string, PlannedFile>;
  /** Symlinks the image needs (path -> target as stored), e.g. /lib64 -> usr/lib64. */
  symlinks: Map<string, string>;
  /** Installed packages that contribute files, with their versions. */
  packages: { name: string; version: string; files: number }[];
  /** Packages of the Depends closure that the blacklist cut. */
  excludedPackages: string[];
  /** The Depends closure the image keeps, whether or not a package contributes files: what the install made for them counts (planInstallMade). */
  closure: string[];
  /** Library directories known only from ld.so.conf: the image has no ld.so.cache, so /init exports them. */
  libraryPath: string[];
}

export interface PlanInput {
  view: RootView;
  recipe: Pick<Recipe, 'packages' | 'entrypoint' | 'include' | 'dlopen' | 'source'>;
  installed: readonly InstalledPackage[];
  /** Each installed package's file list as dpkg records it (/var/lib/dpkg/info/*.list). */
  fileLists: ReadonlyMap<string, readonly string[]>;
  blacklist: Blacklist;
  /** Files every image has whatever the recipe says (BusyBox, for /init), with the reason shown. */
  alwaysInclude?: readonly { path: string; reason: string }[];
  /**
   * Files the trace pass saw the app use (opened, executed, stat'ed): added
   * whatever the blacklist says, with their ELF closure, and an executed
   * script's interpreter.
   */
  traced?: readonly { path: string; reason: string }[];
  /** The Debian multiarch triplet, e.g. x86_64-linux-gnu. */
  multiarch: string;
  signal?: AbortSignal;
}

/** Enough of a file to tell ELF from a #! script from data. */
const HEAD_BYTES = 128;

/** Where a shell would look for a bare command name; the image's own PATH. */
export const IMAGE_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The entrypoint's program in the install root (argv[0] as a path, or looked
 * up on the image's PATH) and the package that installed it: the errors a
 * user meets for a --cmd that names nothing, or something no package
 * installed. The trace checks it before it runs anything.
 */
export async function locateEntrypoint(
  view: RootView,
  recipe: Pick<Recipe, 'entrypoint' | 'packages' | 'source'>,
  fileLists: ReadonlyMap<string, readonly string[]>,
  dirCache = new Map<string, string>(),
  /** Every listed path, resolved, with its package (the planner has it); without it, the lists are searched by name. */
  owners?: ReadonlyMap<string, string>,
): Promise<ResolvedPath & { requested: string; owner: string }> {
  const argv0 = recipe.entrypoint.cmd[0]!;
  const hint = (): string => `the recipe's packages (${recipe.packages.join(', ')}) install these programs: ${programsOf(fileLists, recipe.packages).join(', ') || 'none'}`;
  const candidates = argv0.includes('/') ? [posix.resolve('/', argv0)] : IMAGE_PATH.map((dir) => `${dir}/${argv0}`);
  for (const candidate of candidates) {
    const resolved = await resolveInRoot(view, candidate, dirCache);
    if (resolved.node?.kind !== 'file') continue;
    const known = owners?.get(resolved.path);
    if (known) return { ...resolved, requested: candidate, owner: known };
    // dpkg lists the file by a name with the same last component, maybe through a linked directory (/bin -> usr/bin).
    const name = posix.basename(resolved.path);
    for (const [pkg, paths] of owners ? [] : fileLists) {
      for (const listed of paths) {
        if (posix.basename(listed) === name && (await resolveInRoot(view, listed, dirCache)).path === resolved.path) return { ...resolved, requested: candidate, owner: pkg };
      }
    }
    throw new TinyxError('E_ENTRY_NOT_PACKAGED', `${recipe.source}: entrypoint.cmd: ${argv0} is not in any installed package`, { kind: 'user', hint: hint() });
  }
  throw new TinyxError('E_ENTRY_MISSING', `${recipe.source}: entrypoint.cmd: ${argv0} does not exist in the install root${argv0.includes('/') ? '' : ` (searched ${IMAGE_PATH.join(':')})`}`, {
    kind: 'user',
    hint: hint(),
  });
}

/** The executables a set of packages installs, for hints. */
function programsOf(fileLists: ReadonlyMap<string, readonly string[]>, packages: readonly string[]): string[] {
  const programs: string[] = [];
  for (const pkg of packages) {
    for (const path of fileLists.get(pkg.replace(/:.*$/, '')) ?? []) {
      if (/^(\/usr)?\/s?bin\/[^/]+$/.test(path)) programs.push(path);
    }
  }
  return programs.sort();
}

/**
 * Decides what goes into the image, without copying anything: the ELF closure
 * of the entrypoint (NEEDED, RPATH/RUNPATH, $ORIGIN, the interpreter), of the
 * recipe's dlopen'd modules and included ELF files; the Depends closure of the
 * recipe's packages minus the package blacklist; and the non-ELF files (config,
 * data) of those packages minus the path blacklist. Reads the root only through
 * `view`, so unit tests run it on fixture texts.
 */
export async function planImage(input: PlanInput): Promise<ImagePlan> {
  const planner = new Planner(input);
  return planner.plan();
}

class Planner {
  private readonly files = new Map<string, PlannedFile>();
  private readonly symlinks = new Map<string, string>();
  private readonly dirCache = new Map<string, string>();
  private readonly owners = new Map<string, string>();
  private readonly elfQueue: { path: string; reason: string; rpath: string[] }[] = [];
  private readonly elfDone = new Set<string>();
  private readonly libraryPath = new Set<string>();
  private ldConfDirs: string[] = [];

  constructor(private readonly input: PlanInput) {}

  async plan(): Promise<ImagePlan> {
    const { recipe, view } = this.input;
    await this.indexOwners();
    this.ldConfDirs = await this.readLdSoConf('/etc/ld.so.conf', 0);

    const entry = await locateEntrypoint(view, recipe, this.input.fileLists, this.dirCache, this.owners);
    const entryOwner = entry.owner;
    await this.addResolved(entry, 'entrypoint', true);

    for (const { path, reason } of this.input.alwaysInclude ?? []) await this.addPath(path, reason, true);
    for (const { path, reason } of this.input.traced ?? []) await this.addPath(path, reason, false);
    for (const [i, pattern] of recipe.dlopen.entries()) {
      const matches = await this.expandGlob(pattern);
      if (matches.length === 0) throw new RecipeError(recipe.source, `dlopen[${i}]`, `${pattern} matches nothing in the install root`);
      for (const path of matches) await this.addPath(path, 'dlopen', true);
    }
    for (const [i, path] of recipe.include.entries()) {
      const resolved = await resolveInRoot(view, path, this.dirCache);
      if (!resolved.node) throw new RecipeError(recipe.source, `include[${i}]`, `${path} does not exist in the install root`);
      await this.addTree(path, 'include');
    }
    await this.resolveElfClosure();

    const roots = [...new Set([...recipe.packages.map((p) => p.replace(/:.*$/, '')), entryOwner])];
    const closure = dependencyClosure(roots, [...this.input.installed], { exclude: (name) => this.input.blacklist.isPackageExcluded(name) });
    for (const pkg of closure.kept) await this.addPackageData(pkg.name);

    return {
      entrypoint: entry.requested,
      files: new Map([...this.files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      symlinks: new Map([...this.symlinks].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      packages: this.contributingPackages(),
      excludedPackages: closure.excluded,
      closure: closure.kept.map((p) => p.name),
      libraryPath: [...this.libraryPath],
    };
  }

  /** Maps every path dpkg lists (resolved through the root's symlinks) to its package. */
  private async indexOwners(): Promise<void> {
    for (const [pkg, paths] of this.input.fileLists) {
      for (const path of paths) {
        const resolved = await this.resolve(path);
        if (resolved.node && resolved.node.kind !== 'dir') this.owners.set(resolved.path, pkg);
      }
    }
  }

  private async resolve(path: string): Promise<ResolvedPath> {
    return resolveInRoot(this.input.view, path, this.dirCache);
  }

  /** Adds a path (and the symlinks leading to it); ELF files join the closure queue. */
  private async addPath(path: string, reason: string, mustExist: boolean): Promise<void> {
    const resolved = await this.resolve(path);
    if (!resolved.node) {
      if (mustExist) throw new TinyxError('E_RESOLVE', `${path} (${reason}) does not exist in the install root`);
      return;
    }
    await this.addResolved(resolved, reason, false);
  }

  private async addResolved(resolved: ResolvedPath, reason: string, isEntry: boolean, rpath: string[] = []): Promise<void> {
    for (const link of resolved.links) this.symlinks.set(link.path, link.target);
    const node = resolved.node;
    if (node?.kind !== 'file') return;
    const head = await this.input.view.read(resolved.path, 0, HEAD_BYTES);
    const kind = classifyExecutable(head);
    const existing = this.files.get(resolved.path);
    if (!existing) {
      this.files.set(resolved.path, {
        path: resolved.path,
        mode: node.mode,
        size: node.size,
        uid: node.uid,
        gid: node.gid,
        reason,
        package: this.owners.get(resolved.path),
        elf: kind.kind === 'elf',
      });
    }
    if (kind.kind === 'elf') this.elfQueue.push({ path: resolved.path, reason, rpath });
    else if (kind.kind === 'script' && (isEntry || reason === 'dlopen' || reason.startsWith('traced: executed'))) {
      // A script entrypoint needs its interpreter (and that one's libraries).
      await this.addPath(kind.interpreter, `interpreter of ${resolved.path}`, true);
    }
  }

  /** Copies a directory tree as it is (recipe `include`). */
  private async addTree(path: string, reason: string): Promise<void> {
    const resolved = await this.resolve(path);
    for (const link of resolved.links) this.symlinks.set(link.path, link.target);
    if (resolved.node?.kind === 'dir') {
      for (const name of await this.input.view.readDir(resolved.path)) await this.addTree(`${resolved.path}/${name}`, reason);
    } else {
      await this.addResolved(resolved, reason, false);
    }
  }

  private async resolveElfClosure(): Promise<void> {
    const { view, multiarch, signal } = this.input;
    while (this.elfQueue.length > 0) {
      if (signal?.aborted) throw new TinyxError('E_INTERRUPTED', 'interrupted', { kind: 'interrupted' });
      const { path, rpath: inheritedRpath } = this.elfQueue.shift()!;
      if (this.elfDone.has(path)) continue;
      this.elfDone.add(path);

      const interp = await readInterpreter((offset, length) => view.read(path, offset, length));
      if (interp) await this.addPath(interp, `interpreter of ${path}`, true);

      const dyn = parseObjdumpPrivateHeaders(await view.objdump(path));
      if (!dyn.dynamic) continue;
      const origin = posix.dirname(path);
      const expand = (dirs: string[]): string[] => dirs.map((d) => posix.normalize(expandDynamicStringTokens(d, origin, multiarch)));
      // ld.so: DT_RPATH (of the object, then of its loaders) only when there is no DT_RUNPATH.
      const rpath = dyn.runpath.length === 0 ? [...expand(dyn.rpath), ...inheritedRpath] : [];
      const runpath = expand(dyn.runpath);
      for (const soname of dyn.needed) {
        const found = await this.findLibrary(soname, rpath, runpath);
        if (!found) {
          throw new TinyxError('E_LIBRARY_MISSING', `${soname}, NEEDED by ${path}, is not in the install root`, {
            hint: `searched ${[...rpath, ...runpath, ...this.ldConfDirs, ...defaultLibraryDirs(multiarch)].join(':')}; add the package that provides it to the recipe's packages`,
          });
        }
        for (const link of found.resolved.links) this.symlinks.set(link.path, link.target);
        if (found.viaLdConf) this.libraryPath.add(found.dir);
        if (!this.files.has(found.resolved.path)) {
          await this.addResolved(found.resolved, `NEEDED by ${path}`, false, rpath);
        }
      }
    }
  }

  private async findLibrary(
    soname: string,
    rpath: string[],
    runpath: string[],
  ): Promise<{ resolved: ResolvedPath; dir: string; viaLdConf: boolean } | undefined> {
    if (soname.includes('/')) {
      const resolved = await this.resolve(soname);
      return resolved.node?.kind === 'file' ? { resolved, dir: posix.dirname(soname), viaLdConf: false } : undefined;
    }
    const defaults = defaultLibraryDirs(this.input.multiarch);
    const order: [string[], boolean][] = [
      [rpath, false],
      [runpath, false],
      [this.ldConfDirs.filter((d) => !defaults.includes(d)), true],
      [defaults, false],
    ];
    for (const [dirs, viaLdConf] of order) {
      for (const dir of dirs) {
        const resolved = await this.resolve(`${dir}/${soname}`);
        if (resolved.node?.kind === 'file') return { resolved, dir, viaLdConf };
      }
    }
    return undefined;
  }

  private async readLdSoConf(file: string, depth: number): Promise<string[]> {
    const resolved = await this.resolve(file);
    if (resolved.node?.kind !== 'file' || depth > 4) return [];
    const text = Buffer.from(await this.input.view.read(resolved.path, 0, resolved.node.size)).toString('utf8');
    const conf = parseLdSoConf(text);
    const dirs = [...conf.dirs];
    for (const pattern of conf.includes) {
      const absolute = pattern.startsWith('/') ? pattern : posix.join(posix.dirname(file), pattern);
      for (const included of await this.expandGlob(absolute)) dirs.push(...(await this.readLdSoConf(included, depth + 1)));
    }
    return [...new Set(dirs.map((d) => posix.normalize(d)))];
  }

  /** Expands `*` and `?` in the last path component. */
  private async expandGlob(pattern: string): Promise<string[]> {
    const dir = posix.dirname(pattern);
    const base = posix.basename(pattern);
    if (!/[*?]/.test(base)) return (await this.resolve(pattern)).node ? [pattern] : [];
    const resolvedDir = await this.resolve(dir);
    if (resolvedDir.node?.kind !== 'dir') return [];
    const re = new RegExp(`^${base.replace(/[\\^$.|+()[\]{}]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
    return (await this.input.view.readDir(resolvedDir.path)).filter((name) => re.test(name)).map((name) => `${dir}/${name}`);
  }

  /** The non-ELF files of a kept package (config, data), minus the path blacklist. */
  private async addPackageData(pkg: string): Promise<void> {
    const { blacklist } = this.input;
    for (const listed of this.input.fileLists.get(pkg) ?? []) {
      if (blacklist.isPathExcluded(listed)) continue;
      const resolved = await this.resolve(listed);
      if (resolved.node?.kind !== 'file') continue;
      if (blacklist.isPathExcluded(resolved.path)) continue;
      if (this.files.has(resolved.path)) continue;
      const head = await this.input.view.read(resolved.path, 0, HEAD_BYTES);
      // ELF files come only through the closure: a package's other programs and plugins stay out.
      if (classifyExecutable(head).kind === 'elf') continue;
      for (const link of resolved.links) this.symlinks.set(link.path, link.target);
      this.files.set(resolved.path, {
        path: resolved.path,
        mode: resolved.node.mode,
        size: resolved.node.size,
        uid: resolved.node.uid,
        gid: resolved.node.gid,
        reason: `package ${pkg}`,
        package: pkg,
        elf: false,
      });
    }
  }

  private contributingPackages(): { name: string; version: string; files: number }[] {
    const counts = new Map<string, number>();
    for (const file of this.files.values()) if (file.package) counts.set(file.package, (counts.get(file.package) ?? 0) + 1);
    return this.input.installed
      .filter((p) => counts.has(p.name))
      .map((p) => ({ name: p.name, version: p.version, files: counts.get(p.name)! }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
  }
}
