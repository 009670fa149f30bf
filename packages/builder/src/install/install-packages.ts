import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cache } from '../cache.js';
import { cacheKey } from '../cache.js';
import { CommandFailedError, RecipeError } from '../errors.js';
import { mount, removeTree, unmountBelow } from '../mounts.js';
import { failingForSpace } from '../no-space.js';
import { run } from '@tinyx/image';

export interface AppLayer {
  key: string;
  /** The OverlayFS upper directory holding what apt installed on top of the base. */
  upper: string;
  cached: boolean;
}

export function layerKey(baseKey: string, packages: readonly string[]): string {
  return cacheKey('layer', { base: baseKey, packages: [...new Set(packages)].sort() });
}

/** Keeps every maintainer script from starting a daemon on the build host (invoke-rc.d asks this). */
const POLICY_RC_D = '#!/bin/sh\n# tinyx: no service starts while an image is being built\nexit 101\n';

/**
 * Installs the recipe's packages on top of the base in an OverlayFS, so the
 * base stays untouched and the upper directory is exactly the app layer. The
 * layer is cached by base + package list. Every mount is undone in `finally`,
 * on failure and on cancellation alike.
 */
export async function installPackages(
  cache: Cache,
  base: { key: string; root: string },
  packages: readonly string[],
  options: { recipeFile: string; signal?: AbortSignal | undefined; onLine?: (line: string) => void },
): Promise<AppLayer> {
  const key = layerKey(base.key, packages);
  const hit = await cache.lookup('layers', key);
  if (hit) return { key, upper: join(hit, 'upper'), cached: true };

  const temp = await cache.makeTemp('install');
  const upper = join(temp, 'upper');
  const work = join(temp, 'work');
  const merged = join(temp, 'merged');
  const { signal } = options;
  try {
    await Promise.all([mkdir(upper), mkdir(work), mkdir(merged)]);
    await mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${base.root},upperdir=${upper},workdir=${work}`, merged], signal);
    await mount(['-t', 'proc', 'proc', join(merged, 'proc')], signal);
    await mount(['-t', 'sysfs', 'sysfs', join(merged, 'sys')], signal);
    await mount(['--bind', '/dev', join(merged, 'dev')], signal);

    await writeFile(join(merged, 'usr/sbin/policy-rc.d'), POLICY_RC_D, { mode: 0o755 });
    // apt inside the chroot resolves the mirror with the host's resolver settings.
    await rm(join(merged, 'etc/resolv.conf'), { force: true });
    await copyFile('/etc/resolv.conf', join(merged, 'etc/resolv.conf')).catch(() => undefined);

    const chrootEnv = { DEBIAN_FRONTEND: 'noninteractive', DEBCONF_NONINTERACTIVE_SEEN: 'true', HOME: '/root' };
    const apt = (args: string[]) =>
      failingForSpace('install', { label: 'the cache', path: cache.dir }, () =>
        run('chroot', [merged, 'apt-get', ...args], { signal, env: chrootEnv, ...(options.onLine ? { onLine: options.onLine } : {}) }),
      );
    await apt(['-q', 'update']);
    await checkPackagesExist(merged, packages, options.recipeFile, signal);
    try {
      await apt(['-q', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', 'install', ...packages]);
    } catch (error) {
      if (error instanceof CommandFailedError) {
        const missing = error.outputTail.match(/Unable to locate package (\S+)/);
        if (missing) throw new RecipeError(options.recipeFile, 'packages', `Debian has no package "${missing[1]}"`, 'check the name with: apt-cache search NAME');
      }
      throw error;
    }
    await apt(['clean']);
    // What only the build needed: it would otherwise be cached in every layer.
    await rm(join(merged, 'var/lib/apt/lists'), { recursive: true, force: true });
    await mkdir(join(merged, 'var/lib/apt/lists/partial'), { recursive: true });
    await rm(join(merged, 'usr/sbin/policy-rc.d'), { force: true });

    await unmountBelow(merged);
    await rm(work, { recursive: true, force: true });
    await rm(merged, { recursive: true, force: true });
    const dir = await cache.publish('layers', key, temp, { key, base: base.key, packages: [...packages], created: new Date().toISOString() });
    return { key, upper: join(dir, 'upper'), cached: false };
  } finally {
    await removeTree(temp);
  }
}

/**
 * Names every package Debian does not have, before apt-get install would stop at the first.
 * `apt-cache show` fails for an unknown name and for a purely virtual one with no provider.
 */
async function checkPackagesExist(root: string, packages: readonly string[], recipeFile: string, signal: AbortSignal | undefined): Promise<void> {
  const unknown: string[] = [];
  for (const pkg of packages) {
    const result = await run('chroot', [root, 'apt-cache', 'policy', pkg], { signal, allowFailure: true });
    const candidate = result.stdout.match(/Candidate:\s*(\S+)/)?.[1];
    if (!candidate || candidate === '(none)') unknown.push(pkg);
  }
  if (unknown.length > 0) {
    throw new RecipeError(
      recipeFile,
      'packages',
      `Debian has no package ${unknown.map((p) => `"${p}"`).join(', ')} in this suite`,
      'check the name with: apt-cache search NAME (on a Debian host of the same suite)',
    );
  }
}
