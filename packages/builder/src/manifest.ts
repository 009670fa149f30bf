import { MANIFEST_VERSION, type ImageManifest, type Platform } from '@tinyx/image';
import type { AssembledRoot } from './assemble/assemble-root.js';
import type { LoopbackRelay } from './assemble/relay.js';
import type { KernelResult } from './build.js';
import type { BuiltKernel } from './kernel/build-kernel.js';
import type { KernelFeature } from './kernel-features.js';
import type { OutputFormat, PackedImage } from './pack/formats.js';
import type { Compression } from './pack/compressions.js';
import type { Recipe } from './recipe/recipe.js';
import type { DerivedFrom } from './recipe/recipe-from-unit.js';
import type { ImagePlan } from './resolve/plan-image.js';
import type { InstallMadePlan } from './resolve/plan-install-made.js';
import type { TraceResult } from './trace/trace-app.js';
import type { VerifyResult } from './trace/verify-root.js';

export { MANIFEST_VERSION };

/**
 * manifest.json as the builder writes it: the contract's ImageManifest
 * (@tinyx/image), with the builder's own types for the recipe, the format,
 * the compression, the kernel features and the unit the recipe came from.
 */
export type Manifest = ImageManifest<Omit<Recipe, 'source'> & { source: string }, OutputFormat, Compression, KernelFeature, DerivedFrom>;

/** What the steps made that the manifest records: each step's typed result. */
export interface ManifestParts {
  recipe: Recipe;
  derivedFrom: DerivedFrom | undefined;
  platform: Platform;
  format: OutputFormat;
  /** The kernel command line the image needs (boot.cmdline). */
  cmdline: string;
  plan: ImagePlan;
  made: InstallMadePlan;
  assembled: AssembledRoot;
  packed: PackedImage;
  trace: TraceResult | undefined;
  verify: VerifyResult | undefined;
  relay: LoopbackRelay[];
  /** The built kernel and its files' sizes; undefined for an image without a kernel. */
  kernel: { result: KernelResult; built: BuiltKernel; bytes: number; vmlinuxBytes: number | null } | undefined;
  /** `<name>.xl.cfg`, or null. */
  xlConfig: string | null;
  build: Manifest['build'];
}

/** manifest.json of an image: a pure function of what the steps made. */
export function composeManifest(parts: ManifestParts): Manifest {
  const { recipe, plan, assembled, packed, kernel, trace } = parts;
  const octal = (mode: number): string => mode.toString(8).padStart(4, '0');
  return {
    manifestVersion: MANIFEST_VERSION,
    name: recipe.name,
    recipe,
    derivedFrom: parts.derivedFrom ?? null,
    platform: parts.platform,
    format: parts.format,
    entrypoint: { cmd: [plan.entrypoint, ...recipe.entrypoint.cmd.slice(1)], user: recipe.entrypoint.user, uid: assembled.user.uid, gid: assembled.user.gid },
    readiness: recipe.readiness,
    boot: { cmdline: parts.cmdline },
    artifacts: {
      rootfs: packed.fileName,
      kernel: kernel ? 'vmlinuz' : null,
      vmlinux: kernel && kernel.vmlinuxBytes !== null ? 'vmlinux' : null,
      kernelConfig: kernel ? 'kernel.config' : null,
      xlConfig: parts.xlConfig,
    },
    compression: packed.compression,
    sizes: {
      kernel: kernel?.bytes ?? null,
      vmlinux: kernel?.vmlinuxBytes ?? null,
      initrd: packed.bytes,
      initrdUncompressed: packed.uncompressedBytes,
      rootFiles: assembled.files.reduce((sum, f) => sum + f.size, 0),
      total: (kernel?.bytes ?? 0) + packed.bytes,
    },
    packages: plan.packages,
    excludedPackages: plan.excludedPackages,
    files: assembled.files.map((f) => ({ ...f, mode: octal(f.mode) })),
    symlinks: assembled.symlinks,
    directories: assembled.directories.map((d) => ({ ...d, mode: octal(d.mode) })),
    accounts: assembled.accounts,
    leftOut: parts.made.leftOut,
    trace: trace ? { outcome: trace.outcome, seconds: trace.seconds, listening: trace.listening, added: trace.paths.map((p) => ({ path: p.path, reason: p.reason })) } : null,
    relay: parts.relay,
    verify: parts.verify ?? null,
    kernel: kernel
      ? {
          version: kernel.built.version,
          source: kernel.result.source.id,
          platform: kernel.result.request.platform,
          configSha256: kernel.result.config.sha256,
          enabledOptions: kernel.result.config.enabled,
          features: [...kernel.result.request.features].map(([name, from]) => ({ name, from: [...from] })),
          decompressor: kernel.result.request.decompressor,
          couldNotDisable: kernel.result.config.stuckOn.map((s) => s.symbol),
          buildSeconds: kernel.built.buildSeconds,
        }
      : null,
    build: parts.build,
  };
}
