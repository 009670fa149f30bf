import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_FILES, HOST_TOOLS, debianPackageFor, hostPackages, hostScope, isOptional, packagesToInstall, testTierFiles, testTierTools, type TestTier } from '@tinyx/image';
import { REPO_ROOT } from '../helpers/cli.js';

/**
 * What `.ci/run` installed by hand with apt-get before issue 17 (commit
 * a7a1374), when CI passed and a new user's `npm test` did not: every one of
 * them must now come from the registry, so that `tinyx doctor --fix --tests`
 * installs it. busybox-static was there only for the kernel test's marker
 * initramfs, which now takes BusyBox from the pipeline's own base.
 */
const OLD_CI_PACKAGES = [
  'debootstrap', 'gpgv', 'debian-archive-keyring', 'binutils', 'mount', 'coreutils', 'util-linux',
  'cpio', 'tar', 'gzip', 'xz-utils', 'zstd', 'gcc', 'libc6-dev', 'procps', 'kmod', 'ca-certificates',
  'linux-source', 'make', 'bc', 'bison', 'flex', 'libelf-dev', 'busybox-static', 'qemu-system-x86', 'iproute2', 'ccache',
];

test('every package the old .ci/run installed by hand is in the registry, but busybox-static: no test reads the host BusyBox', (t) => {
  const all = hostPackages({ tests: true });
  t.deepEqual(OLD_CI_PACKAGES.filter((p) => p !== 'busybox-static' && !all.includes(p)), []);
  t.false(all.includes('busybox-static'));
  t.false(all.includes('busybox'));
});

test('doctor --fix installs the build and run set: the pipeline, the kernel, QEMU, the bridge, ccache, zstd; none of the tests-only packages', (t) => {
  const packages = hostPackages({ tests: false });
  for (const p of ['debootstrap', 'gpgv', 'binutils', 'debian-archive-keyring', 'linux-source', 'make', 'gcc', 'libc6-dev', 'libelf-dev', 'bc', 'bison', 'flex', 'xz-utils', 'zstd', 'ccache', 'qemu-system-x86', 'iproute2', 'kmod', 'ca-certificates']) {
    t.true(packages.includes(p), p);
  }
  for (const p of ['cpio', 'file', 'procps', 'findutils']) t.false(packages.includes(p), p);
  t.deepEqual(packages, [...new Set(packages)], 'each package once');
});

test('doctor --fix --tests adds what the tests run: GNU cpio, kmod (depmod), procps, file, and the rest', (t) => {
  const packages = hostPackages({ tests: true });
  for (const p of ['cpio', 'kmod', 'procps', 'file', 'util-linux', 'dpkg', 'apt', 'findutils', 'gzip', 'tar']) t.true(packages.includes(p), p);
  t.deepEqual(hostPackages({ tests: false }).filter((p) => !packages.includes(p)), [], 'and all of the build and run set');
  const commands = hostScope({ tests: true }).tools.map((tool) => tool.command);
  for (const command of ['depmod', 'cpio', 'dpkg-deb', 'pgrep', 'pkill', 'setpriv', 'unshare', 'file', 'readelf', 'sha256sum']) t.true(commands.includes(command), command);
  t.false(hostScope({ tests: false }).tools.some((tool) => tool.command === 'depmod'), 'depmod is only for the tests');
});

test("doctor's choice: the packages of what is missing, within the flag's scope, each once, in the registry's order", (t) => {
  const missing = new Set(['cpio', 'objdump', 'readelf', 'qemu-system-x86_64', '/usr/src/linux-source-*.tar.xz', 'no-such-tool']);
  t.deepEqual(packagesToInstall({ tests: false }, missing), ['binutils', 'qemu-system-x86', 'linux-source']);
  t.deepEqual(packagesToInstall({ tests: true }, missing), ['binutils', 'qemu-system-x86', 'cpio', 'linux-source']);
  t.deepEqual(packagesToInstall({ tests: true }, new Set()), []);
  t.deepEqual(packagesToInstall({ tests: true }, new Set([...HOST_TOOLS.map((x) => x.command), ...HOST_FILES.map((x) => x.path)])), hostPackages({ tests: true }));
});

test('optional: ccache always; zstd and QEMU for building only, the tests need them; the trace and verify tools never', (t) => {
  const tool = (command: string) => HOST_TOOLS.find((x) => x.command === command)!;
  for (const tests of [false, true]) {
    t.true(isOptional(tool('ccache'), { tests }));
    t.true(isOptional(tool('modprobe'), { tests }));
    t.false(isOptional(tool('debootstrap'), { tests }));
    t.false(isOptional(tool('make'), { tests }));
    // The trace and verify steps are on by default: every build runs the app under strace in namespaces.
    for (const command of ['strace', 'unshare', 'nsenter', 'ip']) t.false(isOptional(tool(command), { tests }), command);
  }
  for (const command of ['zstd', 'qemu-system-x86_64']) {
    t.true(isOptional(tool(command), { tests: false }), command);
    t.false(isOptional(tool(command), { tests: true }), command);
  }
  t.false(isOptional(tool('cpio'), { tests: true }));
});

test('the tiers: integration and xen start with the build tools and GNU cpio; xen also with depmod, dpkg-deb, QEMU and the kernel tools', (t) => {
  const integration = testTierTools('integration');
  for (const command of ['debootstrap', 'objdump', 'chroot', 'mount', 'cpio', 'gzip', 'xz', 'tar', 'strace', 'unshare', 'nsenter', 'ip']) t.true(integration.includes(command), command);
  // Every build compiles the image's BusyBox from Debian's source.
  for (const command of ['make', 'gcc', 'musl-gcc', 'dpkg-source', 'bzip2', 'apt-get', 'apt-cache']) t.true(integration.includes(command), command);
  t.true(testTierFiles('integration').some((f) => f.debianPackage === 'libc6-dev'));
  // Files that boot VMs or build kernels ask for QEMU and the kernel tools themselves, so a host without them runs the rest.
  t.false(integration.includes('qemu-system-x86_64'));
  t.false(integration.includes('bison'));
  const xen = testTierTools('xen');
  for (const command of ['debootstrap', 'objdump', 'cpio', 'depmod', 'dpkg-deb', 'apt-get', 'apt-cache', 'qemu-system-x86_64', 'make', 'gcc', 'bc', 'bison', 'flex', 'objcopy']) t.true(xen.includes(command), command);
  t.deepEqual(testTierFiles('xen').map((f) => f.debianPackage).sort(), ['debian-archive-keyring', 'libc6-dev', 'libelf-dev', 'linux-source']);
  for (const command of ['gcc', 'cpio', 'tar', 'xz', 'zstd', 'dpkg']) t.true(testTierTools('unit').includes(command), command);
});

test('one package per command, and every command names its package for MissingToolError', (t) => {
  const commands = HOST_TOOLS.map((tool) => tool.command);
  t.deepEqual(commands, [...new Set(commands)], 'no command twice');
  for (const tool of HOST_TOOLS) t.is(debianPackageFor(tool.command), tool.debianPackage);
  t.is(debianPackageFor('/usr/sbin/depmod'), 'kmod');
});

// The rest reads the sources: a host program that tinyx or a test starts by
// name must be in the registry, so that doctor installs it. Commands inside
// `sh -c` lines (gzip, cpio, find, ...) are not seen here; they are declared
// by hand.

const CALL = /\b(?:execFileSync|execFile|spawnSync|spawn|execa|run)\(\s*(?:'([^']+)'|([A-Z][A-Z0-9_]*))\s*[,)]/g;
const WRAP = /\bwrap:\s*\[\s*'([^']+)'/g;

/** The commands a TypeScript file starts by name (a string literal, or a constant of one in the same file). */
function commandsIn(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(CALL)) {
    if (match[1]) found.push(match[1]);
    else {
      const value = text.match(new RegExp(`const ${match[2]} = '([^']+)'`))?.[1];
      if (value) found.push(value);
    }
  }
  for (const match of text.matchAll(WRAP)) found.push(match[1]!);
  return found;
}

function sources(dir: string): { name: string; text: string }[] {
  return readdirSync(join(REPO_ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.d.ts'))
    .map((name) => ({ name: `${dir}/${name}`, text: readFileSync(join(REPO_ROOT, dir, name), 'utf8') }));
}

const tierOf = (command: string, tier: TestTier): boolean => !!HOST_TOOLS.find((tool) => tool.command === command)?.tiers?.includes(tier);

test('the scan sees the calls it is meant to see', (t) => {
  t.deepEqual(commandsIn(`execFileSync('file', ['-b']); spawn(QEMU, args); run(process.execPath, []); run('sh', ['-c']); const QEMU = 'qemu-system-x86_64';\nrunCli(['x'], { wrap: ['setpriv', '--reuid=1'] })`), ['file', 'qemu-system-x86_64', 'sh', 'setpriv']);
});

test("every host program tinyx's packages start is in the registry (xl only in dom0, which no package makes)", (t) => {
  const files = ['packages/builder/src', 'packages/toolstack/src', 'packages/cli/src'].flatMap(sources);
  const unknown = files.flatMap((file) => commandsIn(file.text).filter((command) => command !== 'xl' && !debianPackageFor(command)).map((command) => `${file.name}: ${command}`));
  t.deepEqual(unknown, []);
  t.true(files.some((file) => commandsIn(file.text).includes('qemu-system-x86_64')), 'the scan reaches the toolstack');
});

test('every host program a unit test starts is declared for the unit tier', (t) => {
  // This file's own sample text for the scan is not a call.
  const files = sources('test/unit').filter((file) => !file.name.endsWith('/host-tools.test.ts'));
  const calls = files.flatMap((file) => commandsIn(file.text).map((command) => ({ file: file.name, command })));
  t.true(calls.some((c) => c.command === 'gcc'));
  t.deepEqual(calls.filter((c) => !tierOf(c.command, 'unit')).map((c) => `${c.file}: ${c.command}`), []);
});

test('every host program an integration test starts is its tier\'s or asked for by its file (integrationTest)', (t) => {
  const unknown: string[] = [];
  // host-capabilities.ts is the checker itself: its modprobe is optional, and its sh runs `command -v`.
  for (const file of [...sources('test/integration'), ...sources('test/helpers').filter((f) => !f.name.endsWith('host-capabilities.ts'))]) {
    const asked = file.text.match(/integrationTest\(\{([^}]*)\}\)/)?.[1] ?? '';
    const tools = [...(asked.match(/tools:\s*\[([^\]]*)\]/)?.[1] ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1]!);
    const kernel = /kernel:\s*true/.test(asked);
    for (const command of commandsIn(file.text)) {
      const tool = HOST_TOOLS.find((x) => x.command === command);
      const declared = tierOf(command, 'integration') || tools.includes(command) || (kernel && tool?.neededFor === 'kernel');
      if (!declared) unknown.push(`${file.name}: ${command}`);
    }
    for (const command of tools) if (!HOST_TOOLS.some((x) => x.command === command)) unknown.push(`${file.name}: asks for ${command}, not in HOST_TOOLS`);
  }
  t.deepEqual(unknown, []);
});

test("every host program the xen harness starts on the host is declared for the xen tier (npm comes with Node.js)", (t) => {
  // These run inside dom0, on dom0's own packages (test/xen/dom0.ts, DOM0_PACKAGES), not on the host.
  const inDom0 = ['in-dom0.ts', 'backend-tests.ts', 'bench-dom0.ts', 'dom0-init.ts'];
  const files = sources('test/xen').filter((file) => !inDom0.some((name) => file.name.endsWith(`/${name}`)));
  const calls = files.flatMap((file) => commandsIn(file.text).map((command) => ({ file: file.name, command })));
  for (const command of ['depmod', 'dpkg-deb', 'qemu-system-x86_64', 'debootstrap']) t.true(calls.some((c) => c.command === command), command);
  t.deepEqual(calls.filter((c) => c.command !== 'npm' && !tierOf(c.command, 'xen')).map((c) => `${c.file}: ${c.command}`), []);
});
