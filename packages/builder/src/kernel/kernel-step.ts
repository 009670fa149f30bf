import { join } from 'node:path';
import type { Cache } from '../cache.js';
import { KERNEL_FEATURES, type KernelFeature } from '../kernel-features.js';
import { COMPRESSIONS, type Compression } from '../pack/compressions.js';
import type { ImagePlan } from '../resolve/plan-image.js';
import { run } from '../run.js';
import { buildKernel, configureKernel, type BuiltKernel, type KernelProgress } from './build-kernel.js';
import type { KernelPlatform, KernelRequest } from './fragments.js';
import { inferFeatures } from './infer-features.js';
import { prepareKernelSource } from './kernel-source.js';

/** Where each feature of a kernel came from: "recipe", or the imported symbols that showed the need. */
export type FeatureOrigins = Map<KernelFeature, string[]>;

/**
 * The features an image's kernel needs: those the recipe declares, and those
 * inferred from the dynamic symbols its ELF files import (objdump -T).
 */
export async function imageKernelFeatures(root: string, plan: ImagePlan, declared: readonly KernelFeature[], signal?: AbortSignal): Promise<FeatureOrigins> {
  const objects = new Map<string, string>();
  for (const file of plan.files.values()) {
    if (!file.elf) continue;
    objects.set(file.path, (await run('objdump', ['-T', join(root, file.path)], { signal, allowFailure: true })).stdout);
  }
  const origins: FeatureOrigins = new Map();
  for (const feature of declared) origins.set(feature, ['recipe']);
  for (const [feature, evidence] of inferFeatures(objects)) {
    const shown = evidence.length > 3 ? [...evidence.slice(0, 3), `${evidence.length - 3} more`] : evidence;
    origins.set(feature, [...(origins.get(feature) ?? []), ...shown.map((e) => `inferred: ${e}`)]);
  }
  return new Map([...origins].sort(([a], [b]) => (a < b ? -1 : 1)));
}

export interface KernelStepOptions {
  platform: KernelPlatform;
  compression: Compression | null;
  kernelSource?: string | undefined;
  sourceDateEpoch: number;
  signal?: AbortSignal | undefined;
  onProgress?: (progress: KernelProgress) => void;
}

export async function makeKernel(cache: Cache, features: FeatureOrigins, options: KernelStepOptions): Promise<BuiltKernel & { request: KernelRequest }> {
  const source = await prepareKernelSource(cache, options.kernelSource, options.signal);
  const request: KernelRequest = {
    platform: options.platform,
    features,
    decompressor: options.compression ? COMPRESSIONS[options.compression].kernelSymbol : null,
  };
  const config = await configureKernel(cache, source, request, { signal: options.signal });
  const built = await buildKernel(cache, source, config, {
    signal: options.signal,
    sourceDateEpoch: options.sourceDateEpoch,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return { ...built, request };
}

export function describeFeature(feature: KernelFeature): string {
  return KERNEL_FEATURES[feature].describe;
}
