import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ToolstackError } from './errors.js';

/** How to tell the guest's app is ready (manifest.readiness). */
export type ReadinessProbe = { tcp: { port: number } } | { http: { port: number; path: string } } | { console: { line: string } };

/**
 * What the toolstack reads of an image directory: the files and the few
 * manifest fields it needs. It never imports the builder: the directory and
 * its manifest.json are the whole contract.
 */
export interface ImageDirectory {
  dir: string;
  name: string;
  platform: string;
  readiness: ReadinessProbe | null;
  /** The bzImage, or null. */
  kernel: string | null;
  /** The ELF kernel with the PVH note, or null. */
  vmlinux: string | null;
  initrd: string;
}

interface ManifestSubset {
  manifestVersion?: number;
  name?: string;
  platform?: string;
  readiness?: ReadinessProbe | null;
  artifacts?: { rootfs?: string; kernel?: string | null; vmlinux?: string | null };
}

export async function readImage(imageDir: string): Promise<ImageDirectory> {
  const dir = resolve(imageDir);
  const manifestFile = join(dir, 'manifest.json');
  let manifest: ManifestSubset;
  try {
    manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as ManifestSubset;
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ToolstackError('E_NO_IMAGE', missing ? `${imageDir} is not an image directory (no manifest.json)` : `${manifestFile} is not valid JSON`, {
      kind: 'user',
      hint: 'build one with: tinyx build nginx   (it writes out/nginx)',
    });
  }
  const artifacts = manifest.artifacts ?? {};
  if (!manifest.name || !artifacts.rootfs) throw new ToolstackError('E_BAD_MANIFEST', `${manifestFile} lacks name or artifacts.rootfs`, { kind: 'user', hint: 'build the image again' });
  if (!artifacts.kernel && !artifacts.vmlinux) {
    throw new ToolstackError('E_NO_KERNEL', `${imageDir} has no kernel (it was built with --no-kernel)`, { kind: 'user', hint: `build it with its kernel: tinyx build ${manifest.name}` });
  }
  const file = async (name: string | null | undefined, what: string): Promise<string | null> => {
    if (!name) return null;
    const path = join(dir, name);
    await access(path).catch(() => {
      throw new ToolstackError('E_IMAGE_FILE', `${path} is missing (the manifest names it as the ${what})`, { kind: 'user', hint: 'build the image again' });
    });
    return path;
  };
  return {
    dir,
    name: manifest.name,
    platform: manifest.platform ?? 'kvm',
    readiness: manifest.readiness ?? null,
    kernel: await file(artifacts.kernel, 'kernel'),
    vmlinux: await file(artifacts.vmlinux, 'ELF kernel'),
    initrd: (await file(artifacts.rootfs, 'root filesystem'))!,
  };
}
