// Integration tests: real debootstrap, OverlayFS, chroot. Serial: they share
// the build cache, the two CPU cores, and the mount table.
export default {
  files: ['test/dist/integration/**/*.test.js'],
  timeout: '30m',
  serial: true,
  concurrency: 1,
  workerThreads: false,
  verbose: true,
};
