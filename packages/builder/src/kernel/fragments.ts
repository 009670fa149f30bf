import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PLATFORMS, ROOT_FORMATS, type Platform, type RootFormat, type RootFormatFacts } from '@tinyx/image';
import { bundledDataDir } from '../bundled-data.js';
import { KERNEL_FEATURES, type KernelFeature } from '../kernel-features.js';
import type { Fragment } from './kconfig.js';

/** The fragments that ship with tinyx: kernel/ (base.config, trim.config, platforms/) of the checkout, or of the installed package. */
export const BUNDLED_KERNEL_DIR = bundledDataDir('kernel');


export interface KernelRequest {
  platform: Platform;
  /** The features the kernel must have, each with where the need came from (the recipe, or the symbols that showed it). */
  features: ReadonlyMap<KernelFeature, readonly string[]>;
  /** The root filesystem's format: an initramfs, or a disk (erofs) the kernel needs a block driver and the filesystem for. */
  format: RootFormat;
  /** The Kconfig symbol of the initramfs decompressor the image needs (RD_GZIP...), or null. */
  decompressor: string | null;
  /** Options the recipe leaves out (its kernel.disable), applied last. */
  disable?: readonly string[] | undefined;
  /** Options the build leaves out on top (BuildOptions.kernelDisable: the minimizer's trials), applied last. */
  alsoDisable?: readonly string[] | undefined;
}

/**
 * The fragments of one kernel, in order of precedence (a later one wins):
 * base, what every kernel shares (shared.config: the options that change
 * widely included headers, so that kernels share compiled objects), the
 * platform, its network card (with the `net` feature), its disk
 * (for a root on one), the trim list, the features, the root format's
 * fragment, the initramfs decompressor, and what the recipe leaves out.
 */
export async function kernelFragments(request: KernelRequest, dir = BUNDLED_KERNEL_DIR): Promise<Fragment[]> {
  const file = async (name: string): Promise<Fragment> => ({ name, text: await readFile(join(dir, name), 'utf8') });
  const platform = PLATFORMS[request.platform].kernelFragments;
  const fragments = [await file('base.config'), await file('shared.config'), await file(platform.base)];
  if (request.features.has('net')) fragments.push(await file(platform.net));
  const format: RootFormatFacts = ROOT_FORMATS[request.format];
  if (format.boots === 'disk') fragments.push(await file(platform.block));
  fragments.push(await file('trim.config'));
  for (const [feature, from] of request.features) {
    const symbols = KERNEL_FEATURES[feature].symbols;
    fragments.push({ name: `feature ${feature} (${from.join(', ')})`, text: symbols.map((s) => `CONFIG_${s}=y`).join('\n') });
  }
  // A tar is not booted as it is; its kernel is an initramfs one, as whoever unpacks it is likely to boot it so.
  fragments.push(await file(format.kernelFragment ?? ROOT_FORMATS.initramfs.kernelFragment));
  if (request.decompressor) fragments.push({ name: 'the initramfs compression', text: `CONFIG_${request.decompressor}=y` });
  const off = (symbols: readonly string[]): string => symbols.map((s) => `# CONFIG_${s} is not set`).join('\n');
  if (request.disable?.length) fragments.push({ name: "the recipe's kernel.disable", text: off(request.disable) });
  if (request.alsoDisable?.length) fragments.push({ name: "the build's kernelDisable", text: off(request.alsoDisable) });
  return fragments;
}
