import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from './mounts.js';
import type { CompressedStore } from './pack/formats.js';

/** The kinds of cache entry, each a directory of the cache. */
export type CacheKind = 'bases' | 'layers' | 'kernel-src' | 'kernel-configs' | 'kernels' | 'packed' | 'xen-dom0';

/** Bumped when the layout or content of a cache entry changes, so that old entries are not reused. */
const CACHE_FORMAT = 1;

/**
 * The build cache: $TINYX_CACHE, default $XDG_CACHE_HOME/tinyx (~/.cache/tinyx).
 *
 *   bases/<key>/       a debootstrapped root (read-only once published)
 *   layers/<key>/      an install step's OverlayFS upper directory
 *   kernel-src/<key>/  an extracted kernel source tree
 *   kernel-configs/<key>/  a final .config, by source and fragments
 *   kernels/<key>/     a built kernel (bzImage, vmlinux, .config), by source and final .config
 *   packed/<key>/      a compressed archive, by the hash of the raw archive and the compression
 *   xen-dom0/<key>/    the Xen test harness's hypervisor, dom0 kernel and dom0 root (test/xen)
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
  constructor(readonly dir: string) {}

  entryDir(kind: CacheKind, key: string): string {
    return join(this.dir, kind, key);
  }

  /** The entry's directory when it is complete (its meta.json exists), else undefined. */
  async lookup(kind: CacheKind, key: string): Promise<string | undefined> {
    const dir = this.entryDir(kind, key);
    try {
      await stat(join(dir, 'meta.json'));
      return dir;
    } catch {
      return undefined;
    }
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
    await writeFile(join(built, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
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
