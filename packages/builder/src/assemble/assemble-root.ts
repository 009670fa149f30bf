import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RecipeError } from '../errors.js';
import type { ImageEntry } from '../image-tree.js';
import type { Fixup, Recipe } from '../recipe/recipe.js';
import type { ImagePlan } from '../resolve/plan-image.js';
import type { InstallMadePlan } from '../resolve/plan-install-made.js';
import { resolveInRoot } from '../resolve/root-path.js';
import { DirectoryRootView } from '../resolve/root-view.js';
import { selectAccounts, type Account, type ImageAccounts } from './accounts.js';
import { INIT_APPLETS, generateInit, type WritableDir } from './init-script.js';
import { RELAY_PATH, type LoopbackRelay } from './relay.js';
import type { ImageSecret } from '../trace/secrets.js';

export interface AssembledRoot {
  entries: ImageEntry[];
  /** Regular files with their digests, for the manifest. */
  files: { path: string; size: number; sha256: string; mode: number; package: string | null; reason: string }[];
  /** The directories the image lists itself (not the parents the packer adds as root's 0755), with why. */
  directories: { path: string; mode: number; uid: number; gid: number; reason: string }[];
  symlinks: { path: string; target: string; reason: string }[];
  accounts: ImageAccounts['kept'];
  user: Account;
  /** On a read-only root: the directories /init puts on tmpfs. */
  writable?: WritableDir[];
}

/** Where BusyBox is: the install's busybox-static (part of every base), which the image replaces with its own (assemble/busybox.ts). */
export const BUSYBOX_PATH = '/bin/busybox';

/** The skeleton's directories an app may write in, made writable on a read-only root. */
const SKELETON_WRITABLE = ['/run', '/tmp', '/var/tmp'];

/**
 * The writable directories of a read-only root, as /init makes them: each
 * path's entry (owner, mode), and whether the image has anything under it.
 */
export function writableDirs(entries: ReadonlyMap<string, ImageEntry>, paths: readonly string[], reasons: ReadonlyMap<string, string> = new Map()): WritableDir[] {
  return [...new Set(paths)].map((path) => {
    const entry = entries.get(path);
    if (entry?.type !== 'dir') throw new Error(`writable directory ${path} is not a directory of the image`);
    const seeded = [...entries.keys()].some((p) => p.startsWith(`${path}/`));
    const reason = reasons.get(path);
    return { path, mode: entry.mode, uid: entry.uid ?? 0, gid: entry.gid ?? 0, seeded, ...(reason ? { reason } : {}) };
  });
}

/** Directories every image has, with their modes; /tmp is world-writable and sticky. */
const SKELETON_DIRS: [string, number][] = [
  ['/dev', 0o755],
  ['/proc', 0o555],
  ['/sys', 0o555],
  ['/run', 0o755],
  ['/tmp', 0o1777],
  ['/root', 0o700],
  ['/var/tmp', 0o1777],
];

/** The image's /etc/hosts: localhost and its own name (/init sets the host name) on the loopback addresses. */
export function imageHosts(name: string): string {
  return `127.0.0.1\tlocalhost ${name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

/** Where /init's BusyBox applets are linked. */
const APPLET_PATHS = INIT_APPLETS.map((applet) => `/usr/${['mount', 'ip', 'hostname', 'reboot', 'start-stop-daemon'].includes(applet) ? 'sbin' : 'bin'}/${applet}`);

/**
 * Paths the image makes itself, never copied from the install (the trace
 * does not add them): its /init, its account and host files, BusyBox and the
 * applet links /init runs (an app that runs /bin/sh gets BusyBox's).
 */
export const IMAGE_MADE_PATHS: ReadonlySet<string> = new Set(['/init', '/etc/passwd', '/etc/group', '/etc/hosts', '/etc/nsswitch.conf', BUSYBOX_PATH, ...APPLET_PATHS]);

/** What the install made that no package lists, when the build has read it (planInstallMade). */
const NOTHING_MADE: InstallMadePlan = { files: [], directories: [], symlinks: [], users: [], groups: [], leftOut: [] };

/**
 * Turns the plan into the image's entries: the resolved files, what the
 * install made for the kept packages (files, links, directories, accounts),
 * BusyBox with the applet links /init calls, a minimal /etc, the generated
 * /init, the recipe's directories and fix-ups, and /dev/console (the kernel
 * opens it for PID 1 before any devtmpfs is mounted).
 */
export async function assembleRoot(
  root: string,
  recipe: Recipe,
  plan: ImagePlan,
  made: InstallMadePlan = NOTHING_MADE,
  secrets: readonly ImageSecret[] = [],
  options: {
    relay?: { binary: Uint8Array; ports: readonly LoopbackRelay[] } | undefined;
    /** The root is mounted read-only in the VM (ROOT_FORMATS): /init puts SKELETON_WRITABLE and the recipe's directories on tmpfs. */
    readOnlyRoot?: boolean;
    /** The directories the trace saw the app write in (TraceResult.wroteIn): on a read-only root, on tmpfs too. */
    wroteIn?: readonly { dir: string; reason: string }[];
    /** The image's own BusyBox (buildBusybox), in place of the install's busybox-static at BUSYBOX_PATH. */
    busybox?: { path: string; reason: string } | undefined;
  } = {},
): Promise<AssembledRoot> {
  const { relay } = options;
  const view = new DirectoryRootView(root);
  const entries = new Map<string, ImageEntry>();
  const reasons = new Map<string, string>();
  const add = (entry: ImageEntry, reason?: string): void => {
    entries.set(entry.path, entry);
    if (reason) reasons.set(entry.path, reason);
    else reasons.delete(entry.path);
  };

  // The merged-/usr links (/bin -> usr/bin, /lib64 -> usr/lib64, ...) as the base has them.
  for (const top of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    const node = await view.lstat(top);
    if (node?.kind === 'symlink') add({ type: 'symlink', path: top, target: node.target }, 'merged /usr, as the base has it');
  }
  for (const [path, target] of plan.symlinks) add({ type: 'symlink', path, target }, 'on the way to a file of the image');
  for (const link of made.symlinks) if (!entries.has(link.path)) add({ type: 'symlink', path: link.path, target: link.target }, link.reason);

  // The planner always includes BusyBox (BUSYBOX_PATH); /init's applets are links to it.
  const busybox = await resolveInRoot(view, BUSYBOX_PATH);
  for (const path of APPLET_PATHS) if (!entries.has(path)) add({ type: 'symlink', path, target: busybox.path }, 'a BusyBox applet /init runs');

  const files = [...plan.files.values(), ...made.files.filter((f) => !plan.files.has(f.path))];
  // The recipe's directories win over what the install made of them (owner and mode as the recipe says).
  const recipeDirs = new Set<string>();
  for (const dir of recipe.directories) recipeDirs.add((await resolveInRoot(view, dir.path)).path);
  const madeDirs = made.directories.filter((d) => !recipeDirs.has(d.path));
  const accounts = selectAccounts(
    await readFile(join(root, 'etc/passwd'), 'utf8'),
    await readFile(join(root, 'etc/group'), 'utf8'),
    {
      users: [
        { name: recipe.entrypoint.user, reason: 'the entrypoint runs as it' },
        ...recipe.users.map((name) => ({ name, reason: 'recipe users' })),
        ...recipe.directories.map((d) => ({ name: d.owner, reason: `owner of ${d.path} (recipe directories)` })),
        ...made.users,
      ],
      groups: made.groups,
      owners: [...files, ...madeDirs, ...secrets],
    },
    recipe.source,
  );
  const user = accounts.users.get(recipe.entrypoint.user)!;
  // Entries keep an owner the image has an account for (redis.conf is redis:redis 0640); the rest belong to root.
  const keptUids = new Set(accounts.kept.users.map((a) => a.uid));
  const keptGids = new Set(accounts.kept.groups.map((g) => g.gid));
  const owned = (node: { uid: number; gid: number }): { uid: number; gid: number } => ({ uid: keptUids.has(node.uid) ? node.uid : 0, gid: keptGids.has(node.gid) ? node.gid : 0 });
  for (const file of files) {
    add({ type: 'file', path: file.path, mode: file.mode, ...owned(file), source: { path: join(root, file.path) } }, file.reason);
  }
  if (options.busybox) add({ type: 'file', path: busybox.path, mode: 0o755, source: { path: options.busybox.path } }, options.busybox.reason);
  // Made for this image (sshd's host keys), never the install's copy that every image of the package would share.
  for (const secret of secrets) add({ type: 'file', path: secret.path, mode: secret.mode, ...owned(secret), source: { content: secret.content } }, `a secret made for this image: ${secret.madeBy}`);
  for (const dir of madeDirs) if (!entries.has(dir.path)) add({ type: 'dir', path: dir.path, mode: dir.mode, ...owned(dir) }, dir.reason);
  const text = (path: string, content: string, mode = 0o644): void => add({ type: 'file', path, mode, source: { content: Buffer.from(content) } });
  text('/etc/passwd', accounts.passwd);
  text('/etc/group', accounts.group);
  text('/etc/hosts', imageHosts(recipe.name));
  // glibc reads nsswitch.conf for every user and host lookup; "files" is built into libc.so.6 since glibc 2.34.
  text('/etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nservices: files\nprotocols: files\n');
  if (relay) add({ type: 'file', path: RELAY_PATH, mode: 0o755, source: { content: relay.binary } }, `relays the VM's address to ${relay.ports.map((p) => `${p.address}:${p.port}`).join(', ')}, where the app listens (built from tinyx's helpers/tinyx-relay.c)`);

  for (const [path, mode] of SKELETON_DIRS) if (!entries.has(path)) add({ type: 'dir', path, mode }, 'filesystem skeleton');
  add({ type: 'char', path: '/dev/console', mode: 0o600, major: 5, minor: 1 });
  add({ type: 'char', path: '/dev/null', mode: 0o666, major: 1, minor: 3 });
  const recipeDirPaths: string[] = [];
  for (const dir of recipe.directories) {
    const owner = accounts.users.get(dir.owner)!;
    // /var/run is a link to /run in Debian: the directory goes where the link leads.
    const { path } = await resolveInRoot(view, dir.path);
    recipeDirPaths.push(path);
    add({ type: 'dir', path, mode: dir.mode, uid: owner.uid, gid: owner.gid }, 'recipe directories');
  }

  // Generated once every directory is known: on a read-only root it makes the writable ones, the
  // skeleton's, the recipe's and those the trace saw the app write in (each in the image, as the install has it).
  let writable: WritableDir[] | undefined;
  if (options.readOnlyRoot) {
    const declared = [...SKELETON_WRITABLE, ...recipeDirPaths];
    const under = (dir: string, others: readonly string[]): boolean => others.some((o) => dir !== o && (o === '/' || dir.startsWith(`${o}/`)));
    const traced: { dir: string; reason: string }[] = [];
    for (const written of options.wroteIn ?? []) {
      if (declared.includes(written.dir) || under(written.dir, declared)) continue;
      if (!entries.has(written.dir)) {
        const node = await view.lstat(written.dir);
        if (node?.kind !== 'dir') continue;
        add({ type: 'dir', path: written.dir, mode: node.mode, uid: node.uid, gid: node.gid }, written.reason);
      }
      if (entries.get(written.dir)?.type === 'dir') traced.push(written);
    }
    const tracedDirs = traced.map((w) => w.dir);
    const kept = traced.filter((w) => !under(w.dir, tracedDirs));
    writable = writableDirs(entries, [...declared, ...kept.map((w) => w.dir)], new Map(kept.map((w) => [w.dir, w.reason])));
  }
  text(
    '/init',
    generateInit({
      name: recipe.name,
      cmd: recipe.entrypoint.cmd.map((c, i) => (i === 0 ? plan.entrypoint : c)),
      user,
      env: recipe.entrypoint.env,
      workdir: recipe.entrypoint.workdir,
      forks: recipe.entrypoint.forks,
      pidFile: recipe.entrypoint.pidFile,
      readiness: recipe.readiness,
      libraryPath: plan.libraryPath,
      relay: relay?.ports ?? [],
      ...(writable ? { writable } : {}),
    }),
    0o755,
  );

  // The app starts there (/init cd's into it): it must be a directory of the image, listed or holding something.
  if (recipe.entrypoint.workdir !== '/') {
    const { path } = await resolveInRoot(view, recipe.entrypoint.workdir);
    const inImage = entries.get(path)?.type === 'dir' || [...entries.keys()].some((p) => p.startsWith(`${path}/`));
    if (!inImage) throw new RecipeError(recipe.source, 'entrypoint.workdir', `${recipe.entrypoint.workdir} is not a directory of the image`, 'list it under directories (or include it)');
  }

  for (const [i, fixup] of recipe.fixups.entries()) {
    const resolved = await resolveInRoot(view, fixup.file);
    const existing = entries.get(resolved.path);
    const before = existing?.type !== 'file' ? undefined : 'content' in existing.source ? Buffer.from(existing.source.content).toString('utf8') : await readFile(existing.source.path, 'utf8');
    const content = fixedContent(fixup, before, `fixups[${i}]`, recipe.source);
    const owner = existing?.type === 'file' ? { mode: existing.mode, uid: existing.uid ?? 0, gid: existing.gid ?? 0 } : { mode: 0o644 };
    add({ type: 'file', path: resolved.path, ...owner, source: { content: Buffer.from(content) } }, reasons.get(resolved.path));
  }

  const sorted = [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const fileList: AssembledRoot['files'] = [];
  const directories: AssembledRoot['directories'] = [];
  const symlinks: AssembledRoot['symlinks'] = [];
  for (const entry of sorted) {
    const reason = reasons.get(entry.path) ?? 'tinyx';
    if (entry.type === 'dir') directories.push({ path: entry.path, mode: entry.mode, uid: entry.uid ?? 0, gid: entry.gid ?? 0, reason });
    if (entry.type === 'symlink') symlinks.push({ path: entry.path, target: entry.target, reason });
    if (entry.type !== 'file') continue;
    const planned = plan.files.get(entry.path);
    const { size, sha256 } = await digest(entry.source);
    fileList.push({ path: entry.path, size, sha256, mode: entry.mode, package: planned?.package ?? null, reason });
  }
  return { entries: sorted, files: fileList, directories, symlinks, accounts: accounts.kept, user, ...(writable ? { writable } : {}) };
}

/**
 * A file's text after one fix-up (`before` is undefined when the file does
 * not exist). Errors name the recipe field: a fix-up that edits a missing
 * file, or that changes nothing, is a recipe gone stale.
 */
export function fixedContent(fixup: Fixup, before: string | undefined, field: string, source: string): string {
  if ('write' in fixup) return fixup.write;
  if (before === undefined) throw new RecipeError(source, `${field}.file`, `${fixup.file} is not a file of the image`, 'a fix-up edits a file the image already has; use `write` to create one');
  const content =
    'deleteLines' in fixup
      ? before
          .split('\n')
          .filter((line) => !new RegExp(fixup.deleteLines).test(line))
          .join('\n')
      : before.replace(new RegExp(fixup.replace, 'gm'), fixup.with);
  if (content === before) throw new RecipeError(source, field, `changes nothing in ${fixup.file}`, 'the file may have changed upstream; update the pattern or drop the fix-up');
  return content;
}

async function digest(source: { path: string } | { content: Uint8Array }): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  if ('content' in source) return { size: source.content.length, sha256: hash.update(source.content).digest('hex') };
  let size = 0;
  for await (const chunk of createReadStream(source.path)) {
    size += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
  }
  return { size, sha256: hash.digest('hex') };
}
