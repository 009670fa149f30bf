import { access, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { TinyxError } from './errors.js';
import { IMAGE_CMDLINE, platformFacts, type GuestFacts, type KernelArtifact, type PlatformFacts } from './platforms.js';
import type { Readiness } from './readiness.js';
import { rootFormatFacts } from './root-formats.js';

/** The manifest format version; bumped when a field changes meaning. */
export const MANIFEST_VERSION = 1;

/** The manifest's recipe as any reader sees it; the builder's Manifest types it fully. */
export interface ManifestRecipe {
  name: string;
  description: string;
  source: string;
}

/**
 * manifest.json: what an image directory holds and how it was made. It is the
 * contract with the toolstack (which reads only this and the files next to
 * it), the SBOM, and what `tinyx inspect` shows.
 */
export interface ImageManifest<Recipe extends ManifestRecipe = ManifestRecipe, Format extends string = string, Compression extends string = string, Feature extends string = string, DerivedFrom = unknown> {
  manifestVersion: typeof MANIFEST_VERSION;
  name: string;
  /** The normalized recipe (defaults filled in). */
  recipe: Recipe;
  platform: string;
  format: Format;
  /** How the root filesystem file is compressed (null: not at all). */
  compression: Compression | null;
  entrypoint: { cmd: string[]; user: string; uid: number; gid: number };
  readiness: Readiness | null;
  /**
   * How the image boots: the kernel command line it needs (backends add the
   * console device and the network). Absent in images built before tinyx
   * recorded it: IMAGE_CMDLINE then.
   */
  boot?: { cmdline: string };
  /** File names inside the image directory. */
  artifacts: {
    rootfs: string;
    /** The bzImage ("vmlinuz"), or null for an image built with --no-kernel. */
    kernel: string | null;
    /** The uncompressed ELF kernel with its PVH entry note, for direct boot (kvm, xen-pvh). */
    vmlinux: string | null;
    kernelConfig: string | null;
    /** `<name>.xl.cfg`, for the xen platforms (with a kernel); null otherwise. */
    xlConfig: string | null;
  };
  sizes: {
    /** The bzImage in bytes; null without a kernel. */
    kernel: number | null;
    vmlinux: number | null;
    /** The root filesystem artifact (compressed, as written). */
    initrd: number;
    /** The root filesystem archive before compression. */
    initrdUncompressed: number;
    /** The sum of the regular files' sizes in the root. */
    rootFiles: number;
    total: number;
  };
  /** The packages the files came from, with versions: the SBOM. */
  packages: { name: string; version: string; files: number }[];
  /** Packages the blacklist cut from the Depends closure. */
  excludedPackages: string[];
  /** Every regular file of the root, sorted by path. */
  files: { path: string; size: number; sha256: string; mode: string; package: string | null; reason: string }[];
  symlinks: { path: string; target: string; reason: string }[];
  /** The directories the image lists (not the parents the packer adds as root's 0755), with owner, mode and why. */
  directories: { path: string; mode: string; uid: number; gid: number; reason: string }[];
  /** The accounts in the image's /etc/passwd and /etc/group, and why each is there. */
  accounts: { users: { name: string; uid: number; gid: number; reason: string }[]; groups: { name: string; gid: number; reason: string }[] };
  /**
   * For a recipe derived from the package's systemd unit (`tinyx build --package P`
   * without --cmd): the unit, each setting used and what it became, and what was not carried over.
   * Null for a recipe file or --cmd. Absent in images built before tinyx read units.
   */
  derivedFrom?: DerivedFrom | null;
  /** What the install made for the kept packages that the image does not get, and why (secrets, logs, caches). */
  leftOut: { path: string; why: string }[];
  /** The trace pass (null with --no-trace): how the run in the full install ended, its ports, and what it added to the image. */
  trace?: { outcome: string; seconds: number; listening: number[]; added: { path: string; reason: string }[] } | null;
  /**
   * The ports the app listens on only at a loopback address (its configuration)
   * that /init relays the VM's own address to (tinyx-relay), each with that
   * address; empty when it listens beyond loopback, or with --no-relay-loopback.
   * Absent in images built before tinyx relayed.
   */
  relay?: { port: number; address: string }[];
  /** Verify before emitting (null with --no-verify): how the image's own /init fared in its root. */
  verify?: { outcome: string; check: string | null; seconds: number } | null;
  kernel: {
    version: string;
    /** What the tree came from: Debian's linux-source package and version, a tarball's sha256, a directory. */
    source: string;
    platform: string;
    configSha256: string;
    enabledOptions: number;
    /** Each feature with where the need came from: "recipe", or "inferred: epoll_create (/usr/sbin/nginx)". */
    features: { name: Feature; from: string[] }[];
    /** The initramfs decompressor built in (RD_GZIP...). */
    decompressor: string | null;
    /** Options the trim list asked to switch off that something else selects. */
    couldNotDisable: string[];
    buildSeconds: number;
  } | null;
  build: {
    tinyx: string;
    sourceDateEpoch: number;
    suite: string;
    mirror: string;
    architecture: string;
    /** Seconds per pipeline step. */
    seconds: Record<string, number>;
    /** Steps answered from the cache. */
    cached: string[];
    tools: Record<string, string>;
    /** When the build ran (not part of the image bytes). */
    finishedAt: string;
  };
}

/**
 * Reads an image directory's manifest.json: the one reader of the contract,
 * for the toolstack and `tinyx inspect`. Refuses a directory without one, a
 * file that is not JSON, and a manifest version this tinyx does not read.
 */
export async function readManifest(imageDir: string): Promise<ImageManifest> {
  const file = join(imageDir, 'manifest.json');
  let text: string;
  try {
    await stat(imageDir);
    text = await readFile(file, 'utf8');
  } catch {
    throw new TinyxError('E_NO_IMAGE', `${imageDir} is not an image directory (no manifest.json)`, { kind: 'user', hint: 'build one with: tinyx build nginx   (it writes out/nginx)' });
  }
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse(text) as ImageManifest;
  } catch (error) {
    throw new TinyxError('E_BAD_MANIFEST', `${file} is not valid JSON: ${(error as Error).message}`, { kind: 'user', hint: 'build the image again' });
  }
  if (manifest?.manifestVersion !== MANIFEST_VERSION) {
    throw new TinyxError('E_BAD_MANIFEST', `${file} has manifestVersion ${String(manifest?.manifestVersion)}, this tinyx reads ${MANIFEST_VERSION}`, { kind: 'user', hint: 'build the image again with this tinyx' });
  }
  if (!manifest.name || !manifest.artifacts?.rootfs) throw new TinyxError('E_BAD_MANIFEST', `${file} lacks name or artifacts.rootfs`, { kind: 'user', hint: 'build the image again' });
  return manifest;
}

/**
 * The kernel's symbol table in an image directory, beside the kernel it
 * describes: the boot profiler names the initcalls a kernel without KALLSYMS
 * prints as addresses. Optional (images built before tinyx kept it have none).
 */
export const SYSTEM_MAP = 'System.map';

/** What a backend boots: an image directory's files, resolved and checked, and the facts of its platform. */
export interface BootableImage {
  dir: string;
  name: string;
  platform: string;
  facts: PlatformFacts;
  readiness: Readiness | null;
  /** The kernel command line the image needs (the manifest's boot.cmdline). */
  cmdline: string;
  /** The kernel files present, by artifact name. */
  kernels: Partial<Record<KernelArtifact, string>>;
  /** The root filesystem file. */
  rootfs: string;
  /** How the backend hands it to the kernel: as the initramfs, or as a read-only disk (ROOT_FORMATS). */
  rootAs: 'initrd' | 'disk';
}

/**
 * An image directory ready to boot: its manifest read, its platform known, and
 * every file it names present. An image without a kernel (--no-kernel) is refused.
 */
export async function openImage(imageDir: string): Promise<BootableImage> {
  const dir = resolve(imageDir);
  const manifest = await readManifest(imageDir);
  const facts = platformFacts(manifest.platform, join(imageDir, 'manifest.json'));
  const { artifacts } = manifest;
  if (!artifacts.kernel && !artifacts.vmlinux) {
    throw new TinyxError('E_NO_KERNEL', `${imageDir} has no kernel (it was built with --no-kernel)`, { kind: 'user', hint: `build it with its kernel: tinyx build ${manifest.name}` });
  }
  const file = async (name: string | null | undefined, what: string): Promise<string | undefined> => {
    if (!name) return undefined;
    const path = join(dir, name);
    await access(path).catch(() => {
      throw new TinyxError('E_IMAGE_FILE', `${path} is missing (the manifest names it as the ${what})`, { kind: 'user', hint: 'build the image again' });
    });
    return path;
  };
  const format = rootFormatFacts(manifest.format ?? 'initramfs', join(imageDir, 'manifest.json'));
  if (!format.boots) {
    throw new TinyxError('E_FORMAT', `${imageDir} holds its root as ${manifest.format}, which no backend boots`, { kind: 'user', hint: `build it as a bootable format: tinyx build ${manifest.name} --format erofs (or initramfs)` });
  }
  const vmlinuz = await file(artifacts.kernel, 'kernel');
  const vmlinux = await file(artifacts.vmlinux, 'ELF kernel');
  return {
    dir,
    name: manifest.name,
    platform: manifest.platform,
    facts,
    readiness: manifest.readiness ?? null,
    cmdline: manifest.boot?.cmdline ?? IMAGE_CMDLINE,
    kernels: { ...(vmlinuz ? { vmlinuz } : {}), ...(vmlinux ? { vmlinux } : {}) },
    rootfs: (await file(artifacts.rootfs, 'root filesystem'))!,
    rootAs: format.boots,
  };
}

/**
 * The guest kind a backend boots the image as (a QEMU machine, a Xen type):
 * the one asked for, or the platform's default; refused when the platform
 * has no such guest.
 */
export function chooseGuest(image: Pick<BootableImage, 'name' | 'platform' | 'facts'>, asked: string | undefined): string {
  const guests = Object.keys(image.facts.guests);
  const guest = asked ?? guests[0]!;
  if (!guests.includes(guest)) {
    throw new TinyxError('E_PLATFORM', `${image.name} is a ${image.platform} image, which boots as ${guests.join(' or ')}, not ${guest}`, {
      kind: 'user',
      hint: `build it for a platform that boots as ${guest}, or drop the option that asked for it`,
    });
  }
  return guest;
}

/** The kernel file a guest kind loads: the first of its preferences the image has. */
export function kernelFor(image: Pick<BootableImage, 'name' | 'dir' | 'platform' | 'facts' | 'kernels'>, guest: string): string {
  const facts: GuestFacts | undefined = image.facts.guests[guest];
  const kernel = facts?.kernel.map((artifact) => image.kernels[artifact]).find((path) => path !== undefined);
  if (!kernel) {
    throw new TinyxError('E_NO_KERNEL', `${image.dir} has no ${facts?.kernel.join(' or ') ?? 'kernel'} for a ${guest} guest`, { kind: 'user', hint: `build it again: tinyx build ${image.name} --platform ${image.platform}` });
  }
  return kernel;
}
