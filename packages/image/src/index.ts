/**
 * @tinyx/image: the contract between the builder and the toolstack. An image
 * directory (manifest.json, the kernel, the root filesystem, `<name>.xl.cfg`)
 * and what both sides share to make and read it: the manifest's types and
 * its one reader, readiness, the PLATFORMS table, the kernel command line,
 * the xl.cfg renderer, the error family and the one subprocess wrapper.
 * Dependencies: builder -> image <- toolstack.
 */
export { TinyxError, MissingToolError, CommandFailedError, InterruptedError, throwIfAborted, abortReason, quoteLines } from './errors.js';
export type { ErrorCode, ErrorKind } from './errors.js';
export { logCommand, run, setCommandLog, SUBPROCESS_PATH } from './run.js';
export type { RunOptions, RunResult } from './run.js';
export {
  HOST_TOOLS,
  HOST_FILES,
  DEBIAN_ARCHIVE_KEYRING,
  findOnPath,
  requireTools,
  isRoot,
  missingHostFiles,
  hostFilePattern,
  hostScope,
  hostPackages,
  packagesToInstall,
  isOptional,
  testTierTools,
  testTierFiles,
  debianPackageFor,
} from './host-tools.js';
export type { HostTool, HostFile, HostUse, HostScope, TestTier } from './host-tools.js';
export { READY_LINE, probePort, probeSeesApp } from './readiness.js';
export type { Readiness, TcpProbe } from './readiness.js';
export { PLATFORMS, PLATFORM_NAMES, DEFAULT_PLATFORM, DEFAULT_MEMORY_MIB, IMAGE_CMDLINE, isPlatform, platformFacts, guestsOf } from './platforms.js';
export type { Platform, PlatformFacts, GuestFacts, KernelArtifact } from './platforms.js';
export { ROOT_FORMATS, isRootFormat, rootFormatFacts, bootCmdline } from './root-formats.js';
export type { RootFormat, RootFormatFacts } from './root-formats.js';
export { MANIFEST_VERSION, SYSTEM_MAP, readManifest, openImage, chooseGuest, kernelFor } from './manifest.js';
export type { ImageManifest, ManifestRecipe, BootableImage } from './manifest.js';
export { kernelCmdline } from './cmdline.js';
export type { GuestNetwork } from './cmdline.js';
export { renderXlConfig, imageXlConfig, XEN_DEFAULT_NETWORK } from './xl-config.js';
export type { XlConfig } from './xl-config.js';
