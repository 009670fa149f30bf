import { posix } from 'node:path';
import { addedNames, parseGroup, parsePasswd, type GroupEntry, type PasswdEntry } from '../account-files.js';
import type { Blacklist } from '../blacklist.js';
import type { InstalledPackage } from '../dpkg/status.js';
import { parseStatOverrides, type StatOverride } from '../dpkg/statoverride.js';
import { TinyxError } from '../errors.js';
import { classifyExecutable } from './elf.js';
import type { PlannedFile } from './plan-image.js';
import { parseTmpfiles } from '../recipe/tmpfiles.js';
import { resolveInRoot } from './root-path.js';
import type { RootNode, RootView } from './root-view.js';
import { looksSecret, SECRET_HEAD_BYTES } from '../trace/secrets.js';

/** A directory of the image with the owner and mode the install gave it. */
export interface PlannedDirectory {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  /** "shipped empty by haproxy", "created by the install (named in redis-tools.postinst)", "filesystem skeleton"... */
  reason: string;
}

export interface PlannedSymlink {
  path: string;
  target: string;
  reason: string;
}

/** An account (user or group) the image keeps, by name. */
export interface PlannedAccount {
  name: string;
  reason: string;
}

/** Something a kept package's install made that the image does not get. */
export interface LeftOut {
  path: string;
  why: string;
}

/** What the install made, beyond the files dpkg lists, that the image keeps. */
export interface InstallMadePlan {
  /** Regular files the maintainer scripts created (dpkg does not list them). */
  files: PlannedFile[];
  /** Directories shipped empty, created by the scripts, the skeleton, and parents whose owner or mode is not root's 0755. */
  directories: PlannedDirectory[];
  /** Links the scripts created (a2enmod's, lighty-enable-mod's), and /var/run -> /run. */
  symlinks: PlannedSymlink[];
  /** Users the image keeps beyond the recipe's: added by the install, or named by dpkg-statoverride. */
  users: PlannedAccount[];
  groups: PlannedAccount[];
  /** Created by the install for a kept package, and left out on purpose (secrets, logs, caches). */
  leftOut: LeftOut[];
}

export interface InstallMadeInput {
  /** The app layer: the OverlayFS upper directory, everything the install wrote on top of the base. */
  layer: RootView;
  /** The install root (base + layer), for owners, modes, links and dpkg's files. */
  view: RootView;
  installed: readonly InstalledPackage[];
  /** Each installed package's file list as dpkg records it (/var/lib/dpkg/info/*.list). */
  fileLists: ReadonlyMap<string, readonly string[]>;
  /** The packages the image keeps (the Depends closure): only their installs count. */
  closure: readonly string[];
  /** What the image plan already has: not planned twice, and their parents keep their owner and mode. */
  planned: { files: ReadonlyMap<string, unknown>; symlinks: ReadonlyMap<string, string> };
  blacklist: Blacklist;
  /** The base's /etc/passwd and /etc/group: an account not in them was added by the install. */
  base: { passwd: string; group: string };
  signal?: AbortSignal;
}

/**
 * Reads what the install made, in the style of planImage and as purely (the
 * roots only through RootViews): the app layer is the truth about it.
 *
 * - Files, links and directories the maintainer scripts created, which no
 *   package lists, count when they belong to a kept package: they lie in a
 *   directory only kept packages list (lighttpd's /etc/lighttpd/conf-enabled
 *   link, its index page in /var/www/html), or a kept package's preinst,
 *   postinst or config script names them or a directory above them below the
 *   nearest shared directory (/var/lib/redis in redis-tools.postinst,
 *   /etc/memcached.conf in memcached.postinst).
 * - Directories a kept package ships empty (no listed path below them):
 *   chroots, state, cache and log directories (/var/lib/haproxy/dev,
 *   /var/cache/lighttpd/uploads, /var/log/lighttpd), with the owner and mode
 *   dpkg-statoverride or the scripts gave them.
 * - Accounts the install added (in /etc/passwd and /etc/group, not in the
 *   base's) that a kept package's scripts name or whose home is a kept
 *   package's, and the accounts dpkg-statoverride names for kept paths.
 * - The skeleton: /var/run -> /run and /var/lock -> /run/lock as the base has
 *   them (pid files and locks are opened by those names).
 *
 * Left out, with the reason in `leftOut`: secrets (a file the install made
 * that not everyone may read: sshd's host keys, varnish's secret, the
 * snakeoil key are made once per cached layer and every image of the package
 * would share them; #11 asks for them per image), logs, caches and runtime
 * state of the install itself, and ELF files (programs come only through the
 * ELF closure). What the path blacklist excludes stays out too, as for
 * package data; except that a directory shipped empty under /var/cache is kept:
 * it is the daemon's own cache directory (bind, lighttpd), which it cannot
 * create itself once it has dropped root.
 */
export async function planInstallMade(input: InstallMadeInput): Promise<InstallMadePlan> {
  return new InstallMadePlanner(input).plan();
}

/** Created entries never copied, whoever's install made them. */
const NEVER_COPIED: { path: RegExp; why: string }[] = [
  { path: /^\/etc\/(passwd|group|shadow|gshadow|subuid|subgid)-?$|^\/etc\/\.pwd\.lock$/, why: 'account database: tinyx writes /etc/passwd and /etc/group with the kept accounts only' },
  { path: /^\/etc\/ld\.so\.cache$/, why: 'the image has no ld.so.cache: /init exports the library path' },
  { path: /^\/etc\/resolv\.conf$/, why: "the build host's resolver, copied in for apt" },
];

/**
 * Files (not directories) under these trees are the install's own by-products:
 * logs of the install (dpkg.log, nginx's empty access.log), regenerable caches
 * (debconf's 750 KB templates.dat), and runtime state of the build
 * (/run/adduser). The directories themselves stay: the daemon writes there.
 *
 * Measured on the bookworm layers of nginx, redis-server, haproxy, lighttpd,
 * apache2 and openssh-server: what the scripts made for the kept packages is
 * 0 to 11 KB per image (apache2: 26 links and files and its index page;
 * openssh-server: sshd_config and hosts.allow/deny, 4.3 KB), while what else
 * the install left in the layer is 0.8 to 2.3 MB (debconf's cache 0.76-1.6 MB,
 * dpkg's state 0.18-1.2 MB, dpkg.log and apt's logs 50-70 KB, ld.so.cache
 * 5-7 KB): TinyX's "the whole overlay minus a blacklist" would ship that
 * unless its blacklist knew every such path; keeping what a kept package made
 * and nothing else needs no such list.
 */
const BY_PRODUCTS: { prefix: string; why: string }[] = [
  { prefix: '/var/log/', why: 'a log written during the install' },
  { prefix: '/var/cache/', why: 'a cache filled during the install' },
  { prefix: '/run/', why: 'runtime state of the install' },
  { prefix: '/tmp/', why: 'a temporary file of the install' },
  { prefix: '/var/tmp/', why: 'a temporary file of the install' },
];

/** Maintainer scripts that run when a package is installed (postrm and prerm only remove). */
const INSTALL_SCRIPTS = ['preinst', 'config', 'postinst'] as const;

/** Enough of a file for classifyExecutable to tell an ELF file. */
const ELF_HEAD_BYTES = 64;

/** The default owner and mode of a directory nobody describes (the packers' implicit parents). */
const PLAIN_DIR_MODE = 0o755;

/** The skeleton links every Debian root has (base-files' postinst makes them). */
const SKELETON_LINKS = ['/var/run', '/var/lock'];

/** Characters of a path named in a shell script: a mention ends at anything else (quotes, spaces, `$`, `*`). */
const MENTION = /(?<![\w$}])\/[\w.+@%:-]+(?:\/[\w.+@%:-]+)*/g;

interface Script {
  /** "redis-tools.postinst" */
  name: string;
  text: string;
}

class InstallMadePlanner {
  private readonly dirCache = new Map<string, string>();
  private readonly canonicalDirs = new Map<string, string>();
  /** Canonical path -> the packages that list it. */
  private readonly listers = new Map<string, Set<string>>();
  /** Canonical directories some listed path lies directly in. */
  private readonly withListedChild = new Set<string>();
  private readonly closure: Set<string>;
  private scripts: Script[] = [];
  /** Canonical paths the closure's scripts name, with the script. */
  private mentions: { path: string; script: string }[] = [];
  private overrides = new Map<string, StatOverride>();
  private passwd: PasswdEntry[] = [];
  private groupEntries: GroupEntry[] = [];

  private readonly files = new Map<string, PlannedFile>();
  private readonly directories = new Map<string, PlannedDirectory>();
  private readonly symlinks = new Map<string, PlannedSymlink>();
  private readonly leftOut = new Map<string, string>();
  private readonly users = new Map<string, string>();
  private readonly groups = new Map<string, string>();

  constructor(private readonly input: InstallMadeInput) {
    this.closure = new Set(input.closure);
  }

  async plan(): Promise<InstallMadePlan> {
    await this.indexLists();
    this.scripts = await this.readScripts();
    this.mentions = await this.findMentions();
    this.overrides = await this.readStatOverrides();
    this.passwd = parsePasswd(await this.readText('/etc/passwd'));
    this.groupEntries = parseGroup(await this.readText('/etc/group'));

    await this.addSkeleton();
    await this.addShippedEmpty();
    await this.walkLayer('/');
    await this.addTmpfilesDirectories();
    this.dropPublicHalves();
    await this.keepAddedAccounts();
    this.keepOverriddenAccounts();
    await this.addParents();

    const byPath = <T extends { path: string }>(a: T, b: T): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
    return {
      files: [...this.files.values()].sort(byPath),
      directories: [...this.directories.values()].sort(byPath),
      symlinks: [...this.symlinks.values()].sort(byPath),
      users: [...this.users].map(([name, reason]) => ({ name, reason })),
      groups: [...this.groups].map(([name, reason]) => ({ name, reason })),
      leftOut: [...this.leftOut].map(([path, why]) => ({ path, why })).sort(byPath),
    };
  }

  private checkAborted(): void {
    if (this.input.signal?.aborted) throw new TinyxError('E_INTERRUPTED', 'interrupted', { kind: 'interrupted' });
  }

  /**
   * A listed path as it is in the root: its directory resolved through the
   * root's links (/lib/systemd -> /usr/lib/systemd, /var/run/x -> /run/x), its
   * last component not (a listed link is the link).
   */
  private async canonical(path: string): Promise<string> {
    const normal = posix.normalize(`/${path}`);
    if (normal === '/') return '/';
    const dir = posix.dirname(normal);
    let real = this.canonicalDirs.get(dir);
    if (real === undefined) {
      real = dir === '/' ? '/' : (await resolveInRoot(this.input.view, dir, this.dirCache)).path;
      this.canonicalDirs.set(dir, real);
    }
    return real === '/' ? `/${posix.basename(normal)}` : `${real}/${posix.basename(normal)}`;
  }

  private async indexLists(): Promise<void> {
    for (const [pkg, paths] of this.input.fileLists) {
      this.checkAborted();
      for (const listed of paths) {
        const path = await this.canonical(listed);
        let set = this.listers.get(path);
        if (!set) this.listers.set(path, (set = new Set()));
        set.add(pkg);
        this.withListedChild.add(posix.dirname(path));
      }
    }
  }

  private async readText(path: string): Promise<string> {
    const node = await this.input.view.lstat(path);
    if (node?.kind !== 'file') return '';
    return Buffer.from(await this.input.view.read(path, 0, node.size)).toString('utf8');
  }

  /** The closure's install-time maintainer scripts, and the sysusers.d files it ships (they declare accounts too). */
  private async readScripts(): Promise<Script[]> {
    const scripts: Script[] = [];
    const byName = new Map(this.input.installed.map((p) => [p.name, p]));
    for (const pkg of [...this.closure].sort()) {
      const installed = byName.get(pkg);
      const names = installed ? [pkg, `${pkg}:${installed.architecture}`] : [pkg];
      for (const kind of INSTALL_SCRIPTS) {
        for (const name of names) {
          const text = await this.readText(`/var/lib/dpkg/info/${name}.${kind}`);
          if (text) {
            scripts.push({ name: `${pkg}.${kind}`, text });
            break;
          }
        }
      }
      for (const listed of this.input.fileLists.get(pkg) ?? []) {
        if (!/\/sysusers\.d\/[^/]+\.conf$/.test(listed)) continue;
        const text = await this.readText(await this.canonical(listed));
        if (text) scripts.push({ name: listed, text });
      }
    }
    return scripts;
  }

  private async findMentions(): Promise<{ path: string; script: string }[]> {
    const mentions: { path: string; script: string }[] = [];
    const seen = new Set<string>();
    for (const script of this.scripts) {
      for (const match of script.text.matchAll(MENTION)) {
        const raw = match[0].replace(/[.:-]+$/, '');
        if (raw.length < 2) continue;
        const path = await this.canonical(raw);
        if (seen.has(path)) continue;
        seen.add(path);
        mentions.push({ path, script: script.name });
      }
    }
    return mentions;
  }

  private async readStatOverrides(): Promise<Map<string, StatOverride>> {
    const text = await this.readText('/var/lib/dpkg/statoverride');
    const overrides = new Map<string, StatOverride>();
    for (const override of parseStatOverrides(text, '/var/lib/dpkg/statoverride').values()) {
      overrides.set(await this.canonical(override.path), override);
    }
    return overrides;
  }

  /** Owner and mode of a kept path: dpkg-statoverride's when it names the path, else as on disk. */
  private ownership(path: string, node: { mode: number; uid: number; gid: number }): { mode: number; uid: number; gid: number } {
    const override = this.overrides.get(path);
    if (!override) return { mode: node.mode, uid: node.uid, gid: node.gid };
    const uid = override.user.startsWith('#') ? Number(override.user.slice(1)) : this.passwd.find((p) => p.name === override.user)?.uid;
    const gid = override.group.startsWith('#') ? Number(override.group.slice(1)) : this.groupEntries.find((g) => g.name === override.group)?.gid;
    return { mode: override.mode, uid: uid ?? node.uid, gid: gid ?? node.gid };
  }

  private isBlacklisted(...paths: string[]): boolean {
    return paths.some((p) => this.input.blacklist.isPathExcluded(p));
  }

  private addDirectory(path: string, node: RootNode & { kind: 'dir' }, reason: string): void {
    if (this.directories.has(path)) return;
    this.directories.set(path, { path, ...this.ownership(path, node), reason });
  }

  /**
   * The `d` lines of the kept packages' tmpfiles.d files (a file of the same
   * name in /etc/tmpfiles.d wins, as tmpfiles.d(5) says): directories
   * systemd-tmpfiles makes at boot, which the install never made, so they are
   * not in the layer (haproxy's `d /run/haproxy 2775 haproxy haproxy`). The
   * image has them from the start: /init mounts no tmpfs over /run. What the
   * install did make keeps the install's owner and mode.
   */
  private async addTmpfilesDirectories(): Promise<void> {
    const files = new Map<string, { path: string; pkg: string }>();
    for (const pkg of [...this.closure].sort()) {
      for (const listed of this.input.fileLists.get(pkg) ?? []) {
        if (/\/tmpfiles\.d\/[^/]+\.conf$/.test(listed) && !listed.startsWith('/etc/')) files.set(posix.basename(listed), { path: await this.canonical(listed), pkg });
      }
    }
    for (const [name, file] of files) {
      if ((await this.input.view.lstat(`/etc/tmpfiles.d/${name}`))?.kind === 'file') files.set(name, { ...file, path: `/etc/tmpfiles.d/${name}` });
    }
    for (const file of [...files.values()].sort((a, b) => (a.path < b.path ? -1 : 1))) {
      for (const entry of parseTmpfiles(await this.readText(file.path), file.path)) {
        if (entry.type !== 'd') continue;
        const path = (await resolveInRoot(this.input.view, entry.path, this.dirCache)).path;
        if (this.directories.has(path) || this.isBlacklisted(path)) continue;
        const uid = this.passwd.find((p) => p.name === entry.user)?.uid;
        const gid = this.groupEntries.find((g) => g.name === entry.group)?.gid;
        if (uid === undefined || gid === undefined) {
          this.leftOut.set(path, `${entry.from} names ${uid === undefined ? `the user ${entry.user}` : `the group ${entry.group}`}, which the install root does not have`);
          continue;
        }
        this.directories.set(path, { path, mode: entry.mode, uid, gid, reason: `tmpfiles.d of ${file.pkg} (${entry.from})` });
      }
    }
  }

  /** /var/run -> /run and /var/lock -> /run/lock, and the directories they lead to, as the root has them. */
  private async addSkeleton(): Promise<void> {
    for (const path of SKELETON_LINKS) {
      const resolved = await resolveInRoot(this.input.view, path, this.dirCache);
      for (const link of resolved.links) this.symlinks.set(link.path, { ...link, reason: 'filesystem skeleton, as the base has it' });
      if (resolved.node?.kind === 'dir') this.addDirectory(resolved.path, resolved.node, 'filesystem skeleton, as the base has it');
    }
  }

  private async addShippedEmpty(): Promise<void> {
    for (const pkg of [...this.closure].sort()) {
      this.checkAborted();
      for (const listed of this.input.fileLists.get(pkg) ?? []) {
        const path = await this.canonical(listed);
        if (this.withListedChild.has(path)) continue;
        const node = await this.input.view.lstat(path);
        if (node?.kind !== 'dir') continue;
        // A daemon's cache directory (bind's, lighttpd's uploads) must exist; the blacklist's /var/cache is about files.
        if (!path.startsWith('/var/cache/') && this.isBlacklisted(listed, path)) continue;
        this.addDirectory(path, node, `shipped empty by ${pkg}`);
      }
    }
  }

  private async walkLayer(dir: string): Promise<void> {
    this.checkAborted();
    for (const name of await this.input.layer.readDir(dir)) {
      const path = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const node = await this.input.layer.lstat(path);
      // Whiteouts (what the install deleted from the base) are character devices 0:0; sockets and fifos are never an image's.
      if (!node || node.kind === 'other') continue;
      if (!this.listers.has(path)) await this.considerCreated(path, node);
      if (node.kind === 'dir') await this.walkLayer(path);
    }
  }

  /** Which kept package made `path`, as a reason; undefined when none did (another package's, or apt's and dpkg's own). */
  private attribution(path: string): string | undefined {
    let shared = '/';
    for (let dir = posix.dirname(path); dir !== '/'; dir = posix.dirname(dir)) {
      const listers = this.listers.get(dir);
      if (!listers) continue;
      // The nearest listed directory: when only kept packages list it, what lies in it is theirs.
      if ([...listers].every((p) => this.closure.has(p))) return `created by the install (in ${[...listers].sort()[0]}'s ${dir})`;
      shared = dir;
      break;
    }
    // A shared directory (/etc, /var/lib): a kept package's script must name the path, or a directory of it below the shared one.
    const depth = shared === '/' ? 0 : shared.split('/').length;
    for (const mention of this.mentions) {
      if (mention.path.split('/').length <= depth) continue;
      if (path === mention.path || path.startsWith(`${mention.path}/`)) return `created by the install (named in ${mention.script})`;
    }
    return undefined;
  }

  private async considerCreated(path: string, node: RootNode): Promise<void> {
    if (this.input.planned.files.has(path) || this.input.planned.symlinks.has(path)) return;
    const reason = this.attribution(path);
    if (!reason) return;
    if (this.isBlacklisted(path)) return;
    const never = NEVER_COPIED.find((n) => n.path.test(path));
    if (never) {
      this.leftOut.set(path, never.why);
      return;
    }
    if (node.kind === 'dir') {
      this.addDirectory(path, node, reason);
      return;
    }
    const byProduct = BY_PRODUCTS.find((b) => path.startsWith(b.prefix));
    if (byProduct) {
      this.leftOut.set(path, byProduct.why);
      return;
    }
    if (node.kind === 'symlink') {
      this.symlinks.set(path, { path, target: node.target, reason });
      return;
    }
    if (node.kind !== 'file') return;
    const { mode, uid, gid } = this.ownership(path, node);
    const head = await this.input.view.read(path, 0, Math.max(ELF_HEAD_BYTES, SECRET_HEAD_BYTES));
    if ((mode & 0o004) === 0 && looksSecret(path, head)) {
      this.leftOut.set(path, 'not readable by all: a secret the install made once for every image of the package; it must be made per image');
      return;
    }
    if (classifyExecutable(head).kind === 'elf') {
      this.leftOut.set(path, 'an ELF file: programs and libraries come only through the ELF closure');
      return;
    }
    this.files.set(path, { path, mode, size: node.size, uid, gid, reason, package: undefined, elf: false });
  }

  /** ssh_host_ed25519_key.pub without its key is no use, and tells which key the layer holds. */
  private dropPublicHalves(): void {
    for (const path of [...this.files.keys()]) {
      if (path.endsWith('.pub') && this.leftOut.get(path.slice(0, -4))?.startsWith('not readable by all')) {
        this.files.delete(path);
        this.leftOut.set(path, 'the public half of a key left out');
      }
    }
  }

  /**
   * The script that names an account: one whose adduser, useradd, addgroup or
   * groupadd line (or sysusers.d line) names it, else the first that names it
   * at all (redis-tools' adduser takes the name from a variable); libc6's
   * postinst names sshd too, in its list of services to restart.
   */
  private mentionedIn(name: string): string | undefined {
    const word = new RegExp(`(^|[^\\w.-])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}($|[^\\w.-])`);
    const creating = (line: string): boolean => /(^|[\s;&|(])(adduser|useradd|addgroup|groupadd)\s/.test(line) || /^\s*[ugm]\s/.test(line);
    const lines = (text: string): string[] => text.replace(/\\\n/g, ' ').split('\n');
    return (
      this.scripts.find((s) => lines(s.text).some((line) => creating(line) && word.test(line)))?.name ??
      this.scripts.find((s) => lines(s.text).some((line) => word.test(line)))?.name
    );
  }

  /** The accounts the install added (compared with the base) that a kept package made. */
  private async keepAddedAccounts(): Promise<void> {
    const { base } = this.input;
    const keptGids = new Map<number, string>();
    for (const user of addedNames(parsePasswd(base.passwd), this.passwd)) {
      const script = this.mentionedIn(user.name);
      const home = await this.canonical(user.home);
      const homeOf = [...(this.listers.get(home) ?? [])].sort().find((p) => this.closure.has(p));
      const reason = script
        ? `account added by the install (named in ${script})`
        : homeOf
          ? `account added by the install (its home ${user.home} is ${homeOf}'s)`
          : this.directories.has(home)
            ? `account added by the install (its home ${user.home} is kept)`
            : undefined;
      if (!reason) continue;
      this.users.set(user.name, reason);
      if (!keptGids.has(user.gid)) keptGids.set(user.gid, user.name);
    }
    for (const group of addedNames(parseGroup(base.group), this.groupEntries)) {
      const script = this.mentionedIn(group.name);
      const of = keptGids.get(group.gid);
      const reason = script ? `account added by the install (named in ${script})` : of ? `account added by the install (the group of ${of})` : undefined;
      if (reason) this.groups.set(group.name, reason);
    }
  }

  /** dpkg-statoverride gives kept paths to accounts by name: the image needs those accounts for the owner to hold. */
  private keepOverriddenAccounts(): void {
    for (const [path, override] of this.overrides) {
      const kept = this.input.planned.files.has(path) || this.files.has(path) || this.directories.has(path);
      if (!kept) continue;
      if (!override.user.startsWith('#') && !this.users.has(override.user) && this.passwd.some((p) => p.name === override.user)) {
        this.users.set(override.user, `dpkg-statoverride of ${path}`);
      }
      if (!override.group.startsWith('#') && !this.groups.has(override.group) && this.groupEntries.some((g) => g.name === override.group)) {
        this.groups.set(override.group, `dpkg-statoverride of ${path}`);
      }
    }
  }

  /**
   * The directories on the way to every kept path, where the install gave
   * them another owner or mode than the packers' default (redis-tools makes
   * /etc/redis 2770 redis:redis): otherwise they would appear root's 0755.
   */
  private async addParents(): Promise<void> {
    const kept = [...this.input.planned.files.keys(), ...this.input.planned.symlinks.keys(), ...this.files.keys(), ...this.symlinks.keys(), ...this.directories.keys()];
    const seen = new Set<string>();
    for (const path of kept) {
      for (let dir = posix.dirname(path); dir !== '/' && !seen.has(dir); dir = posix.dirname(dir)) {
        seen.add(dir);
        if (this.directories.has(dir)) continue;
        const node = await this.input.view.lstat(dir);
        if (node?.kind !== 'dir') continue;
        const owned = this.ownership(dir, node);
        if (owned.mode === PLAIN_DIR_MODE && owned.uid === 0 && owned.gid === 0) continue;
        this.directories.set(dir, { path: dir, ...owned, reason: `the install's owner and mode for the directory of ${path}` });
      }
    }
  }
}
