import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { removeTree } from './mounts.js';
import type { CompressedStore } from './pack/formats.js';

/** The kinds of cache entry, each a directory of the cache. */
export type CacheKind = 'bases' | 'layers' | 'busybox' | 'kernel-src' | 'kernel-configs' | 'kernels' | 'packed' | 'xen-dom0';

/** Bumped when the layout or content of a cache entry changes, so that old entries are not reused. */
const CACHE_FORMAT = 1;

/**
 * The build cache: $TINYX_CACHE, default $XDG_CACHE_HOME/tinyx (~/.cache/tinyx).
 *
 *   bases/<key>/       a debootstrapped root (read-only once published)
 *   layers/<key>/      an install step's OverlayFS upper directory
 *   busybox/<key>/     the image's BusyBox (/init's applets, static), by source version, applets and compiler
 *   kernel-src/<key>/  an extracted kernel source tree
 *   kernel-configs/<key>/  a final .config, by source and fragments; and the source's tinyconfig, which each starts from
 *   kernels/<key>/     a built kernel (bzImage, vmlinux, .config, System.map), by source and final .config
 *   packed/<key>/      a compressed archive, by the hash of the raw archive and the compression
 *   xen-dom0/<key>/    the Xen test harness's hypervisor, dom0 kernel and dom0 root (test/xen)
 *   kernel-trees/<key>/  the build tree of the last kernel of a source and platform, kept to build the next one incrementally
 *   ccache/            ccache's own store for kernel compiles, when the host has ccache
 *   tmp/<random>/      work in progress; an entry is built here and renamed into place
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TINYX_CACHE) return env.TINYX_CACHE;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'tinyx');
}

/** A stable hash of a JSON value (object keys sorted), for cache keys. */
export function cacheKey(kind: string, inputs: unknown): string {
  return createHash('sha256')
    .update(stableJson({ kind, format: CACHE_FORMAT, inputs }))
    .digest('hex')
    .slice(0, 24);
}

export function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
}

export class Cache {
  constructor(
    readonly dir: string,
    /** Told when lookup finds a damaged entry and removes it: which entry, and what was wrong. */
    private readonly onDiscard?: (entry: string, problem: string) => void,
  ) {}

  entryDir(kind: CacheKind, key: string): string {
    return join(this.dir, kind, key);
  }

  /**
   * The entry's directory when it is complete and intact, else undefined.
   * Complete: its meta.json exists (written last, before the rename that
   * publishes it, so a half-written entry is never there to be found: a
   * build killed with SIGKILL leaves only a directory under tmp/). Intact:
   * what it holds still matches the contents recorded at publish time (see
   * ENTRY_CHECKS); a damaged entry (a truncated kernel, a file gone from a
   * layer) is removed, reported through onDiscard, and built again.
   */
  async lookup(kind: CacheKind, key: string): Promise<string | undefined> {
    const dir = this.entryDir(kind, key);
    const meta = await this.readMeta<{ contents?: EntryContents }>(dir).catch(() => undefined);
    if (!meta) return undefined;
    if (meta.contents) {
      const problem = compareContents(meta.contents, await entryContents(dir, ENTRY_CHECKS[kind]));
      if (problem) {
        await this.discard(kind, key, problem);
        return undefined;
      }
    }
    return dir;
  }

  /** Removes a damaged entry: renamed under tmp/ first (a lookup never sees it again), then removed. */
  private async discard(kind: CacheKind, key: string, problem: string): Promise<void> {
    const aside = join(this.dir, 'tmp', `discarded-${kind}-${key}-${process.pid}-${randomBytes(3).toString('hex')}`);
    await mkdir(join(this.dir, 'tmp'), { recursive: true });
    try {
      await rename(this.entryDir(kind, key), aside);
    } catch {
      return; // another build discarded it first
    }
    this.onDiscard?.(`${kind}/${key}`, problem);
    await removeTree(aside);
  }

  async readMeta<T>(entryDir: string): Promise<T> {
    return JSON.parse(await readFile(join(entryDir, 'meta.json'), 'utf8')) as T;
  }

  /** Compressed archives in packed/, for packImage: a warm rebuild of the same content does not compress again. */
  compressedStore(): CompressedStore {
    return {
      get: async (key) => {
        const dir = await this.lookup('packed', key);
        return dir ? join(dir, 'archive') : undefined;
      },
      put: async (key, file) => {
        const temp = await this.makeTemp('packed');
        try {
          await copyFile(file, join(temp, 'archive'));
          await this.publish('packed', key, temp, { key });
        } finally {
          await removeTree(temp);
        }
      },
    };
  }

  /**
   * Removes what builds that no longer run left under tmp/ (a build killed
   * with SIGKILL cannot clean up after itself): each directory there is named
   * <label>-<pid>-<random> by the process that made it, and is removed, with
   * whatever is still mounted below it, only when that process is gone.
   * Returns what was removed.
   */
  async sweepStale(): Promise<string[]> {
    const tmp = join(this.dir, 'tmp');
    const swept: string[] = [];
    for (const name of await readdir(tmp).catch(() => [] as string[])) {
      const pid = Number(name.match(/-(\d+)-[0-9a-f]+$/)?.[1]);
      if (!pid || pid === process.pid || processExists(pid)) continue;
      await removeTree(join(tmp, name));
      swept.push(name);
    }
    return swept;
  }

  /** A fresh directory under tmp/, to build in; the caller removes it (removeTree) in `finally`. */
  async makeTemp(label: string): Promise<string> {
    const dir = join(this.dir, 'tmp', `${label}-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /**
   * Publishes a directory built under tmp/ as a cache entry, atomically: meta.json
   * is written last inside it, then the whole directory is renamed into place.
   * When another build published the same key meanwhile, ours is discarded and
   * theirs is used (same key, same inputs): two concurrent builds both succeed.
   */
  async publish(kind: CacheKind, key: string, built: string, meta: object): Promise<string> {
    const contents = await entryContents(built, ENTRY_CHECKS[kind]);
    await writeFile(join(built, 'meta.json'), `${JSON.stringify({ ...meta, ...(contents ? { contents } : {}) }, null, 2)}\n`);
    const target = this.entryDir(kind, key);
    await mkdir(join(this.dir, kind), { recursive: true });
    try {
      await rename(built, target);
      return target;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await this.lookup(kind, key))) {
        await removeTree(built);
        return target;
      }
      throw error;
    }
  }
}

/**
 * How an entry is checked on use. Small entries (kernels, configurations,
 * compressed archives: at most tens of MiB) by the sha256 of every file;
 * trees (a base, a layer: thousands of files) by their shape, the number of
 * entries and the bytes of their files, which a truncated or removed file
 * changes and which costs a directory walk (about 0.1 s for a base). A kernel
 * source tree (80,000 files, 1.3 GB: seconds to walk) and the Xen harness's
 * entries are not checked on use.
 */
const ENTRY_CHECKS: Record<CacheKind, 'sha256' | 'tree' | 'none'> = {
  bases: 'tree',
  layers: 'tree',
  busybox: 'sha256',
  'kernel-src': 'none',
  'kernel-configs': 'sha256',
  kernels: 'sha256',
  packed: 'sha256',
  'xen-dom0': 'none',
};

/** What an entry held when it was published (in its meta.json). */
export type EntryContents = { sha256: Record<string, string> } | { tree: { entries: number; bytes: number } };

async function entryContents(dir: string, check: 'sha256' | 'tree' | 'none'): Promise<EntryContents | undefined> {
  if (check === 'none') return undefined;
  const all = await readdir(dir, { recursive: true, withFileTypes: true });
  const entries = all.filter((e) => !(e.name === 'meta.json' && e.parentPath === dir));
  if (check === 'tree') {
    let bytes = 0;
    for (const e of entries) if (e.isFile()) bytes += (await lstat(join(e.parentPath, e.name))).size;
    return { tree: { entries: entries.length, bytes } };
  }
  const sha256: Record<string, string> = {};
  for (const e of entries.filter((x) => x.isFile())) {
    const path = join(e.parentPath, e.name);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    sha256[relative(dir, path)] = hash.digest('hex');
  }
  return { sha256 };
}

/** What differs between the recorded contents and what is there now, or undefined when nothing does. */
export function compareContents(recorded: EntryContents, now: EntryContents | undefined): string | undefined {
  if (!now) return undefined;
  if ('tree' in recorded) {
    if (!('tree' in now)) return 'its check changed';
    const [a, b] = [recorded.tree, now.tree];
    if (a.entries !== b.entries) return `${a.entries} entries were published, ${b.entries} are there`;
    if (a.bytes !== b.bytes) return `its files held ${a.bytes} bytes, they hold ${b.bytes}`;
    return undefined;
  }
  if (!('sha256' in now)) return 'its check changed';
  for (const [file, sum] of Object.entries(recorded.sha256)) {
    if (now.sha256[file] === undefined) return `${file} is missing`;
    if (now.sha256[file] !== sum) return `${file} is not what was published (sha256 differs)`;
  }
  const extra = Object.keys(now.sha256).find((file) => recorded.sha256[file] === undefined);
  return extra ? `${extra} was added` : undefined;
}

/** The process exists (signal 0 is not sent, only checked); EPERM means it exists as another user's. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
