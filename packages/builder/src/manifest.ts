import type { KernelFeature } from './kernel-features.js';
import type { OutputFormat } from './pack/formats.js';
import type { Compression } from './pack/compressions.js';
import type { Readiness, Recipe } from './recipe/recipe.js';
import type { DerivedFrom } from './recipe/recipe-from-unit.js';

/** The manifest format version; bumped when a field changes meaning. */
export const MANIFEST_VERSION = 1;

/**
 * manifest.json: what an image directory holds and how it was made. It is the
 * contract with the toolstack (which reads only this and the files next to
 * it), the SBOM, and what `tinyx inspect` shows.
 */
export interface Manifest {
  manifestVersion: typeof MANIFEST_VERSION;
  name: string;
  /** The normalized recipe (defaults filled in). */
  recipe: Omit<Recipe, 'source'> & { source: string };
  platform: string;
  format: OutputFormat;
  /** How the root filesystem file is compressed (null: not at all). */
  compression: Compression | null;
  entrypoint: { cmd: string[]; user: string; uid: number; gid: number };
  readiness: Readiness | null;
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
    features: { name: KernelFeature; from: string[] }[];
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
