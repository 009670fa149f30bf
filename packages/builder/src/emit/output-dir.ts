import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, readdir, rename, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { processExists } from '../cache.js';
import { SYSTEM_MAP } from '@tinyx/image';
import { TinyxError } from '../errors.js';
import { removeTree } from '../mounts.js';
import { COMPRESSIONS, type Compression } from '../pack/compressions.js';
import { OUTPUT_FORMATS, packedFileName, type OutputFormat } from '../pack/formats.js';

/**
 * The directories tinyx writes (an image directory, `tinyx kernel build
 * --out`) replace whatever was at their path. tinyx runs as root, so that
 * path is only ever replaced when it is provably tinyx's own: nothing there,
 * an empty directory, or a directory of tinyx's making (its marker file
 * parses as tinyx wrote it, and every entry is a regular file with a name
 * tinyx writes). Anything else is refused before any work starts, and again
 * just before the swap; the old directory is then removed file by file, by
 * those names only, never recursively.
 */

/** The marker of each kind of output directory, and what its JSON must hold. */
const MARKERS = {
  /** An image directory: manifest.json as the emit step writes it. */
  image: 'manifest.json',
  /** `tinyx kernel build --out`: kernel.json. */
  kernel: 'kernel.json',
} as const;

export type OutputKind = keyof typeof MARKERS;

/** What an output path holds now: nothing, an empty directory, or a directory tinyx made. */
export type OutputState = 'absent' | 'empty' | 'tinyx';

/** Every root filesystem file name a format and compression can give. */
const ROOTFS_NAMES: ReadonlySet<string> = new Set(
  (Object.keys(OUTPUT_FORMATS) as OutputFormat[]).flatMap((format) => [null, ...(Object.keys(COMPRESSIONS) as Compression[])].map((c) => packedFileName(format, c))),
);

/** The file names tinyx writes into an output directory whose marker names `name`. */
export function tinyxFileNames(name: string | undefined): Set<string> {
  return new Set(['vmlinuz', 'vmlinux', SYSTEM_MAP, 'kernel.config', ...Object.values(MARKERS), ...ROOTFS_NAMES, ...(name ? [`${name}.xl.cfg`] : [])]);
}

/** The marker's JSON when it is one tinyx wrote: an object with tinyx's version in it. */
export function parseMarker(kind: OutputKind, text: string): { name?: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!json || typeof json !== 'object') return undefined;
  const record = json as Record<string, unknown>;
  if (kind === 'image') {
    const build = record.build as Record<string, unknown> | undefined;
    const ok = typeof record.manifestVersion === 'number' && typeof record.name === 'string' && typeof build?.tinyx === 'string' && typeof record.artifacts === 'object';
    return ok ? { name: record.name as string } : undefined;
  }
  return record.generator === 'tinyx' && record.kind === 'kernel' ? {} : undefined;
}

/**
 * Says what is at `path`, and throws E_OUTPUT_NOT_OURS (a user error, exit 2)
 * unless it may be replaced: nothing, an empty directory, or a directory
 * tinyx made (of either kind: an image directory may become a kernel
 * directory and back).
 */
export async function checkOutputDir(path: string, option = '--out'): Promise<OutputState> {
  return (await inspectOutputDir(path, path, option)).state;
}

/**
 * checkOutputDir's work: the state of `path`, and the names tinyx may remove
 * there (those it writes, with the image's own `<name>.xl.cfg`). Errors name
 * `shown`: the user's path, also when `path` is where it was moved aside.
 */
async function inspectOutputDir(path: string, shown: string, option = '--out'): Promise<{ state: OutputState; removable: Set<string> }> {
  const refuse = (what: string): never => {
    throw new TinyxError('E_OUTPUT_NOT_OURS', `${option} ${shown}: ${what}; tinyx replaces only a new path, an empty directory or a directory it wrote`, {
      kind: 'user',
      hint: `choose a new path, e.g. ${option} ${join(shown, 'image')} (or move what is there away yourself)`,
    });
  };
  const stat = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!stat) return { state: 'absent', removable: new Set() };
  if (stat.isSymbolicLink()) refuse('is a symbolic link');
  if (!stat.isDirectory()) refuse('is a file, not a directory');
  const names = await readdir(path);
  if (names.length === 0) return { state: 'empty', removable: new Set() };
  const marker = await readMarker(path, names);
  if (!marker) refuse(`holds ${describeEntries(names)} and no image that tinyx wrote (no tinyx manifest.json or kernel.json)`);
  const allowed = tinyxFileNames(marker!.name);
  const foreign: string[] = [];
  for (const name of names) {
    const entry = await lstat(join(path, name));
    if (!entry.isFile() || !allowed.has(name)) foreign.push(entry.isDirectory() ? `${name}/` : name);
  }
  if (foreign.length > 0) refuse(`is a tinyx output with other files in it (${describeEntries(foreign)})`);
  return { state: 'tinyx', removable: new Set(names) };
}

async function readMarker(dir: string, names: string[]): Promise<{ name?: string } | undefined> {
  for (const [kind, file] of Object.entries(MARKERS) as [OutputKind, string][]) {
    if (!names.includes(file)) continue;
    const entry = await lstat(join(dir, file));
    if (!entry.isFile()) continue;
    const marker = parseMarker(kind, await readFile(join(dir, file), 'utf8'));
    if (marker) return marker;
  }
  return undefined;
}

function describeEntries(names: string[]): string {
  const shown = names.slice(0, 5).join(', ');
  return names.length > 5 ? `${shown} and ${names.length - 5} more` : shown;
}

/**
 * Moves a finished staging directory to `out`. What is at `out` is checked
 * again (it may have changed since the build started) and moved aside, the
 * new directory renamed into place, then the old one's files removed by name
 * and the directory itself with rmdir: a file tinyx did not write that
 * appeared meanwhile is never removed (the old directory is then left, and
 * its path returned).
 */
export async function replaceOutputDir(staging: string, out: string): Promise<{ leftBehind: string | undefined }> {
  const state = await checkOutputDir(out);
  if (state === 'absent') {
    await rename(staging, out);
    return { leftBehind: undefined };
  }
  const old = join(dirname(staging), `${basename(staging)}.old`);
  await rename(out, old);
  let removable: Set<string>;
  try {
    // Checked once more where nothing else writes: a race between the check and the rename is caught here.
    ({ removable } = await inspectOutputDir(old, out));
  } catch (error) {
    await rename(old, out);
    throw error;
  }
  await rename(staging, out);
  // Only the files that check saw, each a regular file with a name tinyx writes; rmdir then fails on anything else.
  for (const name of removable) await unlink(join(old, name));
  try {
    await rmdir(old);
    return { leftBehind: undefined };
  } catch {
    return { leftBehind: old };
  }
}

/**
 * The staging directory a build writes the new image directory into, beside
 * `out` (the same filesystem, so that the swap is a rename). What builds
 * killed before their cleanup left beside it (their process is gone) is
 * tinyx's own: a staging directory is removed; a `.old` one is the earlier
 * image, moved aside by the swap, and when the build was killed before the
 * new one took its place (nothing is at `out`) it is put back, not removed.
 */
export async function makeStagingDir(out: string, notice: (line: string) => void): Promise<string> {
  await mkdir(dirname(out), { recursive: true });
  const pattern = new RegExp(`^\\.${basename(out).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.tmp-(\\d+)-[0-9a-f]+(\\.old)?$`);
  const stale = (await readdir(dirname(out)))
    .map((name) => ({ name, match: name.match(pattern) }))
    .flatMap(({ name, match }) => (match ? [{ name, pid: Number(match[1]), old: match[2] !== undefined }] : []))
    .filter((s) => s.pid !== process.pid && !processExists(s.pid))
    // The earlier image first: put back before anything else is looked at.
    .sort((a, b) => Number(b.old) - Number(a.old));
  for (const { name, pid, old } of stale) {
    const path = join(dirname(out), name);
    if (old && !(await lstat(out).then(() => true, () => false))) {
      await rename(path, out);
      notice(`${out} was moved aside by a build killed during its swap (pid ${pid}): put back`);
    } else await removeTree(path);
  }
  const staging = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
  await mkdir(staging);
  return staging;
}
