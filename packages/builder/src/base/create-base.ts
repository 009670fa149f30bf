import { join } from 'node:path';
import type { Cache } from '../cache.js';
import { cacheKey } from '../cache.js';
import { DEBIAN_ARCHIVE_KEYRING } from '@tinyx/image';
import { removeTree, unmountBelow } from '../mounts.js';
import { failingForSpace } from '../no-space.js';
import { run } from '@tinyx/image';
import { pickBaseSource, readAptSources } from './apt-sources.js';

/** What a base root is made from; its cache key. */
export interface BaseSpec {
  suite: string;
  mirror: string;
  architecture: string;
  /** Packages added to minbase: busybox-static, whose version the image's BusyBox is built at. */
  include: string[];
  keyring: string | undefined;
}

export interface BaseRoot {
  key: string;
  /** The root directory; read-only from now on (the OverlayFS lower layer). */
  root: string;
  cached: boolean;
}

/**
 * Packages every base includes: busybox-static. The image's BusyBox is built
 * from its source package, at its version (assemble/busybox.ts): the base's
 * copy pins that version, and the tests' own initramfs use it.
 */
export const BASE_INCLUDE = ['busybox-static'];

/**
 * The base a build on this host starts from: the given mirror and suite, or
 * the host's own apt source (its keyring too), for the host's architecture.
 * Tests use it to find the pipeline's own base (and its BusyBox) in the cache.
 */
export async function hostBaseSpec(options: { mirror?: string | undefined; suite?: string | undefined; etcApt?: string } = {}): Promise<BaseSpec> {
  const architecture = (await run('dpkg', ['--print-architecture'])).stdout.trim();
  let { mirror, suite } = options;
  let keyring: string | undefined;
  if (!mirror || !suite) {
    const source = pickBaseSource(await readAptSources(options.etcApt));
    mirror ??= source.uri;
    suite ??= source.suite;
    keyring = source.keyring;
  }
  return { suite, mirror, architecture, include: BASE_INCLUDE, keyring: keyring ?? DEBIAN_ARCHIVE_KEYRING };
}

export function baseKey(spec: BaseSpec): string {
  // The keyring decides nothing about the content, so it is not part of the key.
  return cacheKey('base', { suite: spec.suite, mirror: spec.mirror, architecture: spec.architecture, include: [...spec.include].sort(), variant: 'minbase' });
}

/**
 * `debootstrap --variant=minbase` into the cache, once per key. It runs in a
 * temporary directory that is renamed into place when complete, so a base that
 * was interrupted half-way is never used; the temporary tree (and what
 * debootstrap mounted in it) is removed on every path.
 */
export async function createBase(
  cache: Cache,
  spec: BaseSpec,
  options: { signal?: AbortSignal | undefined; onLine?: (line: string) => void },
): Promise<BaseRoot> {
  const key = baseKey(spec);
  const hit = await cache.lookup('bases', key);
  if (hit) return { key, root: join(hit, 'root'), cached: true };

  const temp = await cache.makeTemp('base');
  try {
    const args = ['--variant=minbase', `--arch=${spec.architecture}`, `--include=${spec.include.join(',')}`];
    if (spec.keyring) args.push(`--keyring=${spec.keyring}`);
    args.push(spec.suite, join(temp, 'root'), spec.mirror);
    const onLine = options.onLine;
    await failingForSpace('base', { label: 'the cache', path: cache.dir }, () =>
      run('debootstrap', args, {
        signal: options.signal,
        ...(onLine ? { onLine } : {}),
        hint: `check that ${spec.mirror} serves ${spec.suite} for ${spec.architecture} (override with --mirror and --suite)`,
      }),
    );
    // debootstrap's second stage mounts /proc and /sys in the target; an entry must hold no mounts.
    await unmountBelow(temp);
    const version = (await run('dpkg-query', ['-W', '-f=${Version}', 'debootstrap'], { allowFailure: true })).stdout;
    const dir = await cache.publish('bases', key, temp, { ...spec, key, debootstrap: version || 'unknown', created: new Date().toISOString() });
    return { key, root: join(dir, 'root'), cached: false };
  } finally {
    await removeTree(temp);
  }
}
