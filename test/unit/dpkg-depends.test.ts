import test from 'ava';
import { fileURLToPath } from 'node:url';
import { parseDepends, parseProvides, formatDependencyGroup, readControlFile } from '@tinyx/builder/internals';

const STATUS_FIXTURE = fileURLToPath(new URL('../../fixtures/dpkg/status', import.meta.url));

test('parses versions, alternatives and architecture qualifiers', (t) => {
  const text =
    'libc6 (>= 2.34), nginx-common (<< 1.22.1-9+deb12u11.1~), debconf (>= 0.5) | debconf-2.0, perl:any, python3:any (>= 3.9~)';
  t.deepEqual(parseDepends(text), [
    [{ name: 'libc6', relation: { op: '>=', version: '2.34' } }],
    [{ name: 'nginx-common', relation: { op: '<<', version: '1.22.1-9+deb12u11.1~' } }],
    [{ name: 'debconf', relation: { op: '>=', version: '0.5' } }, { name: 'debconf-2.0' }],
    [{ name: 'perl', arch: 'any' }],
    [{ name: 'python3', arch: 'any', relation: { op: '>=', version: '3.9~' } }],
  ]);
});

test('the real Depends and Pre-Depends of the status fixture', async (t) => {
  const paragraphs = await readControlFile(STATUS_FIXTURE);
  const field = (pkg: string, name: string): string => paragraphs.find((p) => p.get('Package') === pkg)?.get(name) ?? '';

  t.deepEqual(parseDepends(field('ca-certificates', 'Depends')), [
    [{ name: 'openssl', relation: { op: '>=', version: '1.1.1' } }],
    [{ name: 'debconf', relation: { op: '>=', version: '0.5' } }, { name: 'debconf-2.0' }],
  ]);
  t.deepEqual(parseDepends(field('libgcc-s1', 'Depends')), [
    [{ name: 'gcc-12-base', relation: { op: '=', version: '12.2.0-14+deb12u1' } }],
    [{ name: 'libc6', relation: { op: '>=', version: '2.35' } }],
  ]);
  const dpkgPreDepends = parseDepends(field('dpkg', 'Pre-Depends'));
  t.deepEqual(
    dpkgPreDepends.map((group) => group.map((dep) => dep.name)),
    [['libbz2-1.0'], ['libc6'], ['liblzma5'], ['libmd0'], ['libselinux1'], ['libzstd1'], ['zlib1g']],
  );
  t.deepEqual(dpkgPreDepends[6], [{ name: 'zlib1g', relation: { op: '>=', version: '1:1.1.4' } }]);
  t.deepEqual(parseDepends(field('base-files', 'Pre-Depends')), [[{ name: 'awk' }]]);

  // Every relationship field of the fixture parses.
  for (const paragraph of paragraphs) {
    for (const name of ['Depends', 'Pre-Depends', 'Recommends', 'Suggests', 'Breaks', 'Replaces']) {
      const value = paragraph.get(name);
      if (value !== undefined) t.notThrows(() => parseDepends(value), `${paragraph.get('Package')}: ${name}`);
    }
  }
});

test('white space and newlines around every item, and operators without spaces', (t) => {
  const text = '\n libc6 (>=2.34),\n  libfoo ( << 1:2~ ) |\n\tbar:amd64 ,baz';
  t.deepEqual(parseDepends(text), [
    [{ name: 'libc6', relation: { op: '>=', version: '2.34' } }],
    [{ name: 'libfoo', relation: { op: '<<', version: '1:2~' } }, { name: 'bar', arch: 'amd64' }],
    [{ name: 'baz' }],
  ]);
});

test('the obsolete < and > operators mean <= and >=, as for dpkg', (t) => {
  t.deepEqual(parseDepends('a (< 1), b (> 2), c (<= 3), d (>> 4), e (= 5)').map(([dep]) => dep?.relation?.op), [
    '<=',
    '>=',
    '<=',
    '>>',
    '=',
  ]);
});

test('an empty field has no groups', (t) => {
  t.deepEqual(parseDepends(''), []);
  t.deepEqual(parseDepends(' \n '), []);
});

test('malformed fields are rejected with the field text and the item at fault', (t) => {
  const cases: [string, RegExp][] = [
    ['libc6,', /empty item/],
    ['libc6, , zlib1g', /empty item/],
    ['a || b', /empty item/],
    ['libc6 (>= 2.34', /"libc6 \(>= 2\.34": expected/],
    ['libc6 (=> 2.34)', /expected "name\[:arch\] \[\(op version\)\]"/],
    ['libc6 (>= )', /expected/],
    ['libc6 (> =1)', /expected/],
    ['libc6 (>>> 1)', /expected/],
    ['libc6 (>= 2 .34)', /expected/],
    ['LibC6', /"LibC6": expected/],
    ['libc6 :any', /expected/],
    ['libc6 (>= 1:)', /invalid Debian version "1:"/],
    ['libc6 (>= 2.34) [amd64]', /only in Build-Depends/],
    ['debhelper <!nocheck>', /only in Build-Depends/],
  ];
  for (const [text, problem] of cases) {
    const error = t.throws(() => parseDepends(text), { code: 'E_DEPENDS' }, text);
    t.regex(error?.message ?? '', problem, text);
    t.true(error?.message.includes(JSON.stringify(text)), `message names the field: ${error?.message}`);
  }
  t.regex(t.throws(() => parseDepends('libc6,', 'jq: Depends'))?.message ?? '', /^jq: Depends: /);
});

test('parseProvides: versioned and plain names, nothing else', async (t) => {
  const paragraphs = await readControlFile(STATUS_FIXTURE);
  const provides = (pkg: string): string => paragraphs.find((p) => p.get('Package') === pkg)?.get('Provides') ?? '';
  t.deepEqual(parseProvides(provides('libgcc-s1')), [{ name: 'libgcc1', version: '1:12.2.0-14+deb12u1' }]);
  t.deepEqual(parseProvides(provides('debconf')), [{ name: 'debconf-2.0' }]);
  t.deepEqual(parseProvides(provides('perl-base')).slice(0, 2), [
    { name: 'libfile-path-perl', version: '2.18' },
    { name: 'libfile-temp-perl', version: '0.2311' },
  ]);
  t.deepEqual(parseProvides(''), []);
  t.throws(() => parseProvides('a | b'), { code: 'E_DEPENDS', message: /alternatives/ });
  t.throws(() => parseProvides('a (>= 1)'), { code: 'E_DEPENDS', message: /only "=" relations/ });
  t.throws(() => parseProvides('a:any'), { code: 'E_DEPENDS', message: /no architecture qualifier/ });
});

test('formatDependencyGroup writes a group back in control-file syntax', (t) => {
  const text = 'debconf (>= 0.5) | debconf-2.0 | python3:any (>= 3.9~)';
  const [group] = parseDepends(text);
  t.is(formatDependencyGroup(group ?? []), text);
});
