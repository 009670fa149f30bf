import test from 'ava';
import { execFileSync } from 'node:child_process';
import { compareVersions, parseVersion, satisfies } from '@tinyx/builder/internals';


/** Pairs where a naive comparison goes wrong; dpkg decides the expected order. */
const PAIRS: [string, string][] = [
  // Equal in dpkg's eyes though the strings differ.
  ['1.0', '1.0'],
  ['1.0', '1.0-0'],
  ['0:1.0', '1.0'],
  ['1.01', '1.1'],
  ['1.001', '1.1'],
  ['001', '1'],
  ['1.0-01', '1.0-1'],
  // Revisions.
  ['1.0-1', '1.0'],
  ['1.0-1', '1.0-2'],
  ['1.0-10', '1.0-9'],
  ['1.0-0.1', '1.0-0'],
  ['1.0-1.1', '1.0-1+b1'],
  ['1.0-a', '1.0-1'],
  ['1.0-1-1', '1.0-1'],
  ['1:2-3-4', '1:2-3'],
  ['1.0-1ubuntu1', '1.0-1'],
  ['1.0-1+deb12u1', '1.0-1'],
  ['1.0-1~deb12u1', '1.0-1'],
  ['1.0-1~bpo12+1', '1.0-1~deb12u1'],
  // Tilde sorts before everything, even the end of the string.
  ['1.0~rc1', '1.0'],
  ['1.0~rc1', '1.0~rc2'],
  ['1.0~beta', '1.0~alpha'],
  ['1.0~~', '1.0~'],
  ['1.0~~a', '1.0~'],
  ['1.0~', '1.0'],
  ['1.0~', '1.0-1'],
  ['1.0~rc1-1', '1.0-1'],
  ['3.1~', '3.1-0'],
  ['0~', '0'],
  ['1.0+~', '1.0+'],
  ['1.0a~', '1.0a'],
  ['1.0.0~', '1.0'],
  ['1.2.3~rc1+git20230101', '1.2.3~rc1'],
  ['1.22.1-9+deb12u11.1~', '1.22.1-9+deb12u11'],
  ['1.22.1-9+deb12u11.1~', '1.22.1-9+deb12u11.1'],
  // Letters sort before non-letters; the end sorts before both.
  ['1.0', '1.0+b1'],
  ['1.0+dfsg', '1.0'],
  ['1.0+dfsg-1', '1.0-1'],
  ['1.0.1', '1.0+1'],
  ['1.0.1', '1.0a'],
  ['1.0a', '1.0'],
  ['1.0a', '1.0+'],
  ['1.0a', '1.0.'],
  ['1.0A', '1.0a'],
  ['1.0Z', '1.0a'],
  ['1.0+', '1.0.'],
  ['1.2.13.dfsg-1', '1.2.13-1'],
  ['1.2.3', '1.2.3.0'],
  ['1.2', '1.2.0'],
  ['1:2:3', '1:2.3'],
  // Digit runs are numbers: no matter how long, leading zeros ignored.
  ['9', '10'],
  ['1.10', '1.9'],
  ['1.010', '1.1'],
  ['0', '0.0'],
  ['99999999999999999999', '100000000000000000000'],
  ['18446744073709551616', '18446744073709551615'],
  // Epochs win over everything else.
  ['1:1.0', '2.0'],
  ['2:1.0', '10.0'],
  ['10:1.0', '9:1.0'],
  ['1:1.0', '1:1.0'],
  ['2147483647:1', '1:2'],
  ['4:12.2.0-3', '12.2.0-14'],
  ['1:12.2.0-14+deb12u1', '12.2.0-14+deb12u1'],
  // Real versions from bookworm's status file and the relations against them.
  ['2.36-9+deb12u14', '2.36-9+deb12u4'],
  ['2.36-9+deb12u14', '2.36-10'],
  ['1:4.4.33-2', '1:4.1.0'],
  ['2:6.2.1+dfsg1-1.1', '2:6.2.1+dfsg1'],
  ['3.9~', '3.11.2-1'],
  ['0.5', '1.5.82'],
  ['1.17.17', '1.21.22'],
  ['5.36.0-7+deb12u2', '5.36.0-7+deb12u1'],
  ['7.88.1-10+deb12u14', '7.88.1-10+deb12u5'],
  ['3.0.19-1~deb12u2', '3.0.9'],
  // Outside Policy: dpkg warns and compares anyway, and so do we.
  ['a1', 'b1'],
  ['1.0_1', '1.0.1'],
  ['1-a_b', '1-a.b'],
];

/** dpkg's verdict for every pair, from one shell so that the table runs in well under a second. */
function dpkgSigns(pairs: [string, string][]): number[] {
  const script = [
    'while read -r a b; do',
    '  if dpkg --compare-versions "$a" lt "$b"; then echo -1;',
    '  elif dpkg --compare-versions "$a" eq "$b"; then echo 0;',
    '  else echo 1; fi',
    'done',
  ].join('\n');
  const input = pairs.map(([a, b]) => `${a} ${b}\n`).join('');
  const output = execFileSync('sh', ['-c', script], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
  return output.trim().split('\n').map(Number);
}

test('compareVersions orders like dpkg --compare-versions on tricky pairs', (t) => {
  t.true(PAIRS.length >= 60);
  const expected = dpkgSigns(PAIRS);
  t.is(expected.length, PAIRS.length);
  const wrong = PAIRS.flatMap(([a, b], index) => {
    const ours = Math.sign(compareVersions(a, b));
    return ours === expected[index] ? [] : [`${a} vs ${b}: dpkg ${expected[index]}, ours ${ours}`];
  });
  t.deepEqual(wrong, []);
  // The table is not degenerate: it holds all three outcomes.
  t.deepEqual([...new Set(expected)].sort(), [-1, 0, 1]);
});

test('compareVersions is antisymmetric', (t) => {
  for (const [a, b] of PAIRS) t.is(Math.sign(compareVersions(b, a)), -Math.sign(compareVersions(a, b)) || 0, `${a} vs ${b}`);
});

test('parseVersion splits epoch, upstream version and revision', (t) => {
  t.deepEqual(parseVersion('1:2.36-9+deb12u4'), { epoch: 1, upstream: '2.36', revision: '9+deb12u4' });
  t.deepEqual(parseVersion('2.36'), { epoch: 0, upstream: '2.36', revision: '' });
  // The last hyphen starts the revision; colons after the epoch belong to the upstream part.
  t.deepEqual(parseVersion('1:2-3-4'), { epoch: 1, upstream: '2-3', revision: '4' });
  t.deepEqual(parseVersion('1:1:1'), { epoch: 1, upstream: '1:1', revision: '' });
  t.deepEqual(parseVersion('  1.0-1 '), { epoch: 0, upstream: '1.0', revision: '1' });
});

test('parseVersion rejects invalid versions with a message naming the version', (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['1 0', /white space/],
    [':1.0', /epoch is empty/],
    ['a:1.0', /epoch is not a number/],
    ['-1:1.0', /epoch is not a number/],
    ['2147483648:1', /epoch is too big/],
    ['1.0-1:2', /epoch is not a number/],
    ['1:', /nothing after the colon/],
    ['1.0-', /revision is empty/],
    ['-1', /upstream version is empty/],
    ['abc', /does not start with a digit/],
    ['1.0_1', /upstream version contains/],
    ['1.0-a_b', /revision contains/],
    ['1é', /not printable ASCII/],
  ];
  for (const [version, problem] of cases) {
    const error = t.throws(() => parseVersion(version), { code: 'E_VERSION' }, JSON.stringify(version));
    t.regex(error?.message ?? '', problem);
    t.true(error?.message.includes(`"${version}"`));
  }
});

test('compareVersions refuses what dpkg refuses and accepts what dpkg only warns about', (t) => {
  for (const bad of ['1 0', '1:', '1.0-', ':1', '']) t.throws(() => compareVersions(bad, '1.0'), { code: 'E_VERSION' }, bad);
  t.true(compareVersions('a1', '1.0') > 0);
  t.throws(() => parseVersion('a1'), { code: 'E_VERSION' });
  t.deepEqual(parseVersion('a1', { strict: false }), { epoch: 0, upstream: 'a1', revision: '' });
});

test('satisfies applies each relation operator, the obsolete < and > as <= and >=', (t) => {
  const table: [string, Parameters<typeof satisfies>[1], string, boolean][] = [
    ['2.36-9', '>=', '2.34', true],
    ['2.34', '>=', '2.34', true],
    ['2.33', '>=', '2.34', false],
    ['2.34', '>>', '2.34', false],
    ['2.35', '>>', '2.34', true],
    ['2.34', '<<', '2.34', false],
    ['2.34~rc1', '<<', '2.34', true],
    ['2.34', '<=', '2.34', true],
    ['2.35', '<=', '2.34', false],
    ['1:12.2.0-14+deb12u1', '=', '1:12.2.0-14+deb12u1', true],
    ['1.0', '=', '1.0-0', true],
    ['1.0-1', '=', '1.0', false],
    ['2.34', '<', '2.34', true],
    ['2.35', '<', '2.34', false],
    ['2.34', '>', '2.34', true],
    ['2.33', '>', '2.34', false],
  ];
  for (const [installed, op, wanted, expected] of table) t.is(satisfies(installed, op, wanted), expected, `${installed} ${op} ${wanted}`);
});
