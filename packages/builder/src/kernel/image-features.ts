import { join } from 'node:path';
import type { KernelFeature } from '../kernel-features.js';
import type { ImagePlan } from '../resolve/plan-image.js';
import { run } from '@tinyx/image';
import { inferFeatures } from './infer-features.js';

/** Where each feature of a kernel came from: "recipe", or the imported symbols that showed the need. */
export type FeatureOrigins = Map<KernelFeature, string[]>;

/**
 * The features an image's kernel needs: those the recipe declares, and those
 * inferred from the dynamic symbols its ELF files import (objdump -T), and
 * those the trace saw it use.
 */
export async function imageKernelFeatures(
  root: string,
  plan: ImagePlan,
  declared: readonly KernelFeature[],
  traced: ReadonlyMap<KernelFeature, string[]> = new Map(),
  signal?: AbortSignal,
): Promise<FeatureOrigins> {
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
  // What the trace saw the app call (syscall(2), static code, socket families), where nothing else showed it.
  for (const [feature, evidence] of traced) {
    if (origins.has(feature)) continue;
    origins.set(feature, evidence.length > 3 ? [...evidence.slice(0, 3), `${evidence.length - 3} more`] : evidence);
  }
  return new Map([...origins].sort(([a], [b]) => (a < b ? -1 : 1)));
}
