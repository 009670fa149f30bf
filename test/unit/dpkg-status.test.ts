import test from 'ava';
import { fileURLToPath } from 'node:url';
import { dependencyClosure, installedFromParagraphs, readDpkgStatus, readPackageFileList, parseControlText, parseDepends } from '@tinyx/builder/internals';
import type { InstalledPackage } from '@tinyx/builder/internals';

const fixture = (path: string): string => fileURLToPath(new URL(`../../fixtures/dpkg/${path}`, import.meta.url));
const installed = await readDpkgStatus(fixture('status'));
const nothing = { exclude: () => false };
const names = (packages: InstalledPackage[]): string[] => packages.map((pkg) => pkg.name);

/** A small in-memory package: `depends` in control-file syntax. */
function pkg(name: string, version: string, depends = '', provides: InstalledPackage['provides'] = []): InstalledPackage {
  return {
    name,
    version,
    architecture: 'amd64',
    depends: parseDepends(depends),
    provides,
    essential: false,
    status: 'install ok installed',
  };
}

test('reads the installed packages of the fixture, not the config-files one', (t) => {
  t.is(installed.length, 32);
  t.false(names(installed).includes('adduser'));
  t.true(installed.every((p) => p.status === 'install ok installed'));
});

test('each package carries its fields; depends holds Pre-Depends then Depends', (t) => {
  const find = (name: string): InstalledPackage | undefined => installed.find((p) => p.name === name);
  t.deepEqual(find('libgcc-s1'), {
    name: 'libgcc-s1',
    version: '12.2.0-14+deb12u1',
    architecture: 'amd64',
    multiArch: 'same',
    depends: [
      [{ name: 'gcc-12-base', relation: { op: '=', version: '12.2.0-14+deb12u1' } }],
      [{ name: 'libc6', relation: { op: '>=', version: '2.35' } }],
    ],
    provides: [{ name: 'libgcc1', version: '1:12.2.0-14+deb12u1' }],
    essential: false,
    priority: 'optional',
    status: 'install ok installed',
  });
  const bash = find('bash');
  t.true(bash?.essential);
  t.is(bash?.multiArch, 'foreign');
  t.is(bash?.priority, 'required');
  // Pre-Depends: libc6, libtinfo6; Depends: base-files, debianutils. Recommends and Suggests are not there.
  t.deepEqual(bash?.depends.map((group) => group.map((dep) => dep.name).join('|')), [
    'libc6',
    'libtinfo6',
    'base-files',
    'debianutils',
  ]);
  t.deepEqual(find('debconf')?.provides, [{ name: 'debconf-2.0' }]);
  t.is(find('debconf')?.architecture, 'all');
  t.deepEqual(find('gcc-12-base')?.depends, []);
});

test('Status decides what is installed: the state must be installed with no error flag', async (t) => {
  const paragraph = (status: string, name: string): string =>
    `Package: ${name}\nStatus: ${status}\nArchitecture: amd64\nVersion: 1.0\n\n`;
  const text = [
    paragraph('install ok installed', 'a'),
    paragraph('hold ok installed', 'b'),
    paragraph('deinstall ok installed', 'c'),
    paragraph('deinstall ok config-files', 'd'),
    paragraph('purge ok not-installed', 'e'),
    paragraph('install ok unpacked', 'f'),
    paragraph('install reinstreq half-installed', 'g'),
    paragraph('install ok half-configured', 'h'),
  ].join('');
  t.deepEqual(names(installedFromParagraphs(await parseControlText(text))), ['a', 'b', 'c']);
});

test('a paragraph without a required field or with a bad Status is an error naming the package', async (t) => {
  const noVersion = await parseControlText('Package: a\nStatus: install ok installed\nArchitecture: amd64\n');
  t.throws(() => installedFromParagraphs(noVersion, 'st'), { code: 'E_DPKG_STATUS', message: 'st: package a: no Version field' });
  const badStatus = await parseControlText('Package: a\nStatus: installed\nArchitecture: amd64\nVersion: 1\n');
  t.throws(() => installedFromParagraphs(badStatus, 'st'), { code: 'E_DPKG_STATUS', message: /st: package a: Status "installed"/ });
  const badDepends = await parseControlText('Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\nDepends: b,\n');
  t.throws(() => installedFromParagraphs(badDepends, 'st'), { code: 'E_DEPENDS', message: /^st: package a: Depends: / });
});

test('closure of jq: its libraries and theirs, sorted; Recommends not followed', (t) => {
  const closure = dependencyClosure(['jq'], installed, nothing);
  t.deepEqual(names(closure.kept), ['gcc-12-base', 'jq', 'libc6', 'libgcc-s1', 'libjq1', 'libonig5']);
  // libc6 Recommends libidn2-0, which is not in the fixture: following it would report it missing.
  t.deepEqual(closure.missing, []);
  t.deepEqual(closure.excluded, []);
});

test('closure follows Pre-Depends and virtual packages through Provides', (t) => {
  // base-files Pre-Depends on awk, which mawk provides.
  const closure = dependencyClosure(['bash'], installed, nothing);
  t.deepEqual(names(closure.kept), ['base-files', 'bash', 'debianutils', 'gcc-12-base', 'libc6', 'libgcc-s1', 'libtinfo6', 'mawk']);
  t.deepEqual(closure.missing, []);
  // A virtual name as a root means its provider.
  t.deepEqual(names(dependencyClosure(['awk'], installed, nothing).kept), ['gcc-12-base', 'libc6', 'libgcc-s1', 'mawk']);
});

test('the whole fixture is closed', (t) => {
  const closure = dependencyClosure(names(installed), installed, nothing);
  t.is(closure.kept.length, installed.length);
  t.deepEqual(closure.missing, []);
});

test('excluded packages are listed, not kept and not descended into', (t) => {
  const exclude = (name: string): boolean => name === 'dpkg' || name === 'debconf';
  const closure = dependencyClosure(['perl-base', 'ca-certificates'], installed, { exclude });
  t.deepEqual(closure.excluded, ['debconf', 'dpkg']);
  // dpkg alone pulls in tar, libbz2-1.0, liblzma5, libmd0, libzstd1, zlib1g, libacl1 and libselinux1.
  t.deepEqual(names(closure.kept), ['ca-certificates', 'gcc-12-base', 'libc6', 'libcrypt1', 'libgcc-s1', 'libssl3', 'openssl', 'perl-base']);
  t.deepEqual(closure.missing, []);
});

test('roots are kept even when the blacklist names them', (t) => {
  const closure = dependencyClosure(['debconf', 'ucf'], installed, { exclude: (name) => name === 'debconf' || name === 'sensible-utils' });
  t.deepEqual(names(closure.kept), ['debconf', 'ucf']);
  t.deepEqual(closure.excluded, ['sensible-utils']);
});

test('an excluded package still meets its group: no other alternative is pulled in', (t) => {
  const packages = [pkg('app', '1', 'debconf (>= 0.5) | debconf-2.0'), pkg('debconf', '1.5'), pkg('cdebconf', '0.2', '', [{ name: 'debconf-2.0' }])];
  const closure = dependencyClosure(['app'], packages, { exclude: (name) => name === 'debconf' });
  t.deepEqual(names(closure.kept), ['app']);
  t.deepEqual(closure.excluded, ['debconf']);
  t.deepEqual(closure.missing, []);
});

test('an alternative installed at too old a version gives way to the next one', (t) => {
  const packages = [pkg('app', '1', 'libfoo (>= 2.0) | libbar'), pkg('libfoo', '1.9'), pkg('libbar', '1.0')];
  t.deepEqual(names(dependencyClosure(['app'], packages, nothing).kept), ['app', 'libbar']);
  // At a new enough version the first alternative wins.
  packages[1] = pkg('libfoo', '2.0~rc1+really2.1');
  t.deepEqual(names(dependencyClosure(['app'], packages, nothing).kept), ['app', 'libbar'], '2.0~rc1... is older than 2.0');
  packages[1] = pkg('libfoo', '2.0-1');
  t.deepEqual(names(dependencyClosure(['app'], packages, nothing).kept), ['app', 'libfoo']);
});

test('a versioned relation is met by a versioned Provides only', (t) => {
  const provider = pkg('libgcc-s1', '12.2.0-14', '', [{ name: 'libgcc1', version: '1:12.2.0-14' }, { name: 'libgcc-plain' }]);
  const met = dependencyClosure(['app'], [pkg('app', '1', 'libgcc1 (>= 1:4.2)'), provider], nothing);
  t.deepEqual(names(met.kept), ['app', 'libgcc-s1']);
  const tooNew = dependencyClosure(['app'], [pkg('app', '1', 'libgcc1 (>= 1:13)'), provider], nothing);
  t.deepEqual(tooNew.missing, ['app: libgcc1 (>= 1:13)']);
  const unversioned = dependencyClosure(['app'], [pkg('app', '1', 'libgcc-plain (>= 1)'), provider], nothing);
  t.deepEqual(unversioned.missing, ['app: libgcc-plain (>= 1)']);
  const plain = dependencyClosure(['app'], [pkg('app', '1', 'libgcc-plain'), provider], nothing);
  t.deepEqual(names(plain.kept), ['app', 'libgcc-s1']);
});

test('architecture qualifiers are ignored when matching names', (t) => {
  const packages = [pkg('app', '1', 'perl:any, python3:any (>= 3.9~)'), pkg('perl', '5.36.0-7'), pkg('python3', '3.11.2-1')];
  t.deepEqual(names(dependencyClosure(['app:amd64'], packages, nothing).kept), ['app', 'perl', 'python3']);
});

test('unmet groups and roots that are not installed are reported, not thrown', (t) => {
  const packages = [pkg('app', '1', 'libnope (>= 1) | libnada, libc6 (>= 9), libok'), pkg('libc6', '2.36-9'), pkg('libok', '1')];
  const closure = dependencyClosure(['app', 'ghost'], packages, nothing);
  t.deepEqual(names(closure.kept), ['app', 'libok']);
  t.deepEqual(closure.missing, ['app: libc6 (>= 9)', 'app: libnope (>= 1) | libnada', 'ghost']);
});

test('a package of the name wins over one that provides it; among providers a chosen one wins', (t) => {
  const packages = [
    pkg('apt', '2.6.1', '', [{ name: 'apt-transport-https', version: '2.6.1' }]),
    pkg('apt-transport-https', '2.6.1'),
    pkg('gawk', '1', '', [{ name: 'awk' }]),
    pkg('mawk', '1', '', [{ name: 'awk' }]),
    pkg('app', '1', 'awk'),
  ];
  t.deepEqual(names(dependencyClosure(['apt', 'apt-transport-https'], packages, nothing).kept), ['apt', 'apt-transport-https']);
  t.deepEqual(names(dependencyClosure(['app'], packages, nothing).kept), ['app', 'gawk'], 'the first provider by name');
  t.deepEqual(names(dependencyClosure(['mawk', 'app'], packages, nothing).kept), ['app', 'mawk'], 'the provider already chosen');
});

test('the closure does not depend on the order of its input', (t) => {
  const exclude = (name: string): boolean => name === 'debconf';
  const expected = dependencyClosure(['jq', 'ucf', 'bash'], installed, { exclude });
  const reversed = dependencyClosure(['jq', 'ucf', 'bash'], [...installed].reverse(), { exclude });
  t.deepEqual(reversed, expected);
  t.deepEqual(names(expected.kept), [...names(expected.kept)].sort());
});

test('readPackageFileList reads name.list or name:arch.list, without the "/." line', async (t) => {
  const info = fixture('info');
  const jq = installed.find((p) => p.name === 'jq');
  const libjq1 = installed.find((p) => p.name === 'libjq1');
  if (!jq || !libjq1) return t.fail('jq and libjq1 are in the fixture');
  const jqFiles = await readPackageFileList(info, jq);
  t.is(jqFiles[0], '/usr');
  t.true(jqFiles.includes('/usr/bin/jq'));
  t.false(jqFiles.includes('/.'));
  t.true(jqFiles.every((path) => path.startsWith('/')));
  // Multi-Arch: same, so the list is libjq1:amd64.list.
  const libFiles = await readPackageFileList(info, libjq1);
  t.is(libFiles.length, 11);
  t.true(libFiles.includes('/usr/lib/x86_64-linux-gnu/libjq.so.1'));
  // The other name is tried too.
  t.deepEqual(await readPackageFileList(info, { ...libjq1, multiArch: 'no' }), libFiles);
  await t.throwsAsync(readPackageFileList(info, { ...jq, name: 'ghost' }), {
    code: 'E_DPKG_INFO',
    message: /ghost: no file list in .* \(looked for ghost\.list and ghost:amd64\.list\)/,
  });
});
