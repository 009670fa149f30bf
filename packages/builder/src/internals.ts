/**
 * The builder's building blocks, for tests and for tools that want one piece
 * of the pipeline (the planner, the cpio writer) without the rest. Not part of
 * the stable API: `@tinyx/builder` is.
 */
export * from './pack/cpio.js';
export * from './pack/tar.js';
export * from './pack/formats.js';
export * from './pack/erofs.js';
export { writeEntries } from './pack/tree.js';
export { writableLines } from './assemble/init-script.js';
export { writableDirs } from './assemble/assemble-root.js';
export * from './pack/compressions.js';
export * from './pack/archive-entries.js';
export * from './dpkg/control.js';
export * from './dpkg/depends.js';
export * from './dpkg/status.js';
export * from './dpkg/version.js';
export * from './dpkg/statoverride.js';
export * from './account-files.js';
export * from './resolve/plan-image.js';
export * from './resolve/plan-install-made.js';
export * from './resolve/root-view.js';
export * from './resolve/root-path.js';
export * from './resolve/objdump.js';
export * from './resolve/elf.js';
export * from './resolve/ld-so-conf.js';
export * from './recipe/validate-recipe.js';
export * from './blacklist.js';
export * from './bundled-data.js';
export * from './base/apt-sources.js';
export * from './base/create-base.js';
export { BUSYBOX_PATH } from './assemble/assemble-root.js';
export * from './assemble/accounts.js';
export * from './assemble/init-script.js';
export * from './cache.js';
export * from './mounts.js';
export { run } from '@tinyx/image';
export * from './kernel/kconfig.js';
export * from './kernel/fragments.js';
export * from './kernel/infer-features.js';
export * from './kernel/kernel-source.js';
export * from './kernel/build-kernel.js';
export type { ImageEntry } from './image-tree.js';
export { checkOutputDir, replaceOutputDir, parseMarker, tinyxFileNames } from './emit/output-dir.js';
export { Cache, compareContents } from './cache.js';
export * from './trace/strace-log.js';
export { listeningPorts, listeningSockets } from './trace/sandbox.js';
export { readOnlyInMessages } from './trace/verify-root.js';
export { expandSpecifiers } from './recipe/systemd-unit.js';
export { looksSecret } from './trace/secrets.js';
export { BUNDLED_HELPERS_DIR, RELAY_CFLAGS, RELAY_PATH, compileRelay, relayArguments } from './assemble/relay.js';
export { secretFiles } from './trace/secrets.js';
export { appletSymbols, buildBusybox, trimConfig, type BuiltBusybox } from './assemble/busybox.js';
export * from './oci/shared-cache.js';
export * from './oci/reference.js';
export { isLoopback } from './oci/registry-client.js';
