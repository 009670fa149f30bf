// Unit tests: fast, no root, no network. They run on the compiled test/dist.
export default {
  files: ['test/dist/unit/**/*.test.js'],
  timeout: '60s',
  workerThreads: false,
};
