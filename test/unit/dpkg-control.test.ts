import test from 'ava';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ControlParagraph, parseControlText, readControlFile } from '@tinyx/builder/internals';

const STATUS_FIXTURE = fileURLToPath(new URL('../../fixtures/dpkg/status', import.meta.url));

test('reads every paragraph of a real status file, UTF-8 intact', async (t) => {
  const paragraphs = await readControlFile(STATUS_FIXTURE);
  t.is(paragraphs.length, 33);
  t.deepEqual(
    paragraphs.slice(0, 3).map((p) => p.get('Package')),
    ['adduser', 'base-files', 'bash'],
  );
  const jq = paragraphs.find((p) => p.get('Package') === 'jq');
  t.is(jq?.get('Maintainer'), 'ChangZhuo Chen (陳昌倬) <czchen@debian.org>');
  t.is(jq?.get('Version'), '1.6-2.1+deb12u1');
  t.is(jq?.get('Depends'), 'libjq1 (= 1.6-2.1+deb12u1), libc6 (>= 2.34)');
});

test('multi-line values: lines joined with newlines, without their leading space', async (t) => {
  const paragraphs = await readControlFile(STATUS_FIXTURE);
  const jq = paragraphs.find((p) => p.get('Package') === 'jq');
  const description = jq?.get('Description')?.split('\n') ?? [];
  t.is(description[0], 'lightweight and flexible command-line JSON processor');
  t.is(description[1], 'jq is like sed for JSON data – you can use it to slice');
  t.true(description.includes('.'), 'the paragraph separator of a Description is kept');
  t.true(description.every((line) => !line.startsWith(' ')));
  t.true(description.some((line) => line.includes('you’d expect.')));

  // Conffiles starts on the line after its name: no empty first line.
  const adduser = paragraphs[0];
  t.is(
    adduser?.get('Conffiles'),
    '/etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18\n/etc/deluser.conf 11a06baf8245fd8d690b99024d228c1f',
  );
});

test('field names are case-insensitive and come out in lower case', async (t) => {
  const [paragraph] = await parseControlText('Package: zlib1g\nMulti-Arch: same\nX-Custom-FIELD: yes\n');
  t.is(paragraph?.get('multi-arch'), 'same');
  t.is(paragraph?.get('MULTI-ARCH'), 'same');
  t.is(paragraph?.get('x-custom-field'), 'yes');
  t.true(paragraph?.has('PACKAGE'));
  t.false(paragraph?.has('Version'));
  t.is(paragraph?.get('Version'), undefined);
  t.is(paragraph?.size, 3);
  t.deepEqual([...(paragraph ?? [])], [
    ['package', 'zlib1g'],
    ['multi-arch', 'same'],
    ['x-custom-field', 'yes'],
  ]);
  t.deepEqual([...new ControlParagraph([['Version', '1.0']]).keys()], ['version']);
});

test('paragraphs are split on blank lines, however many, with or without a final newline', async (t) => {
  const paragraphs = await parseControlText('\n\nPackage: a\nVersion: 1\n\n\n\nPackage: b\nDescription: x\n y\n\nPackage: c');
  t.deepEqual(
    paragraphs.map((p) => [p.get('package'), p.get('version') ?? p.get('description') ?? '']),
    [
      ['a', '1'],
      ['b', 'x\ny'],
      ['c', ''],
    ],
  );
  t.deepEqual(await parseControlText(''), []);
});

test('values lose surrounding white space; an empty value stays empty', async (t) => {
  const [paragraph] = await parseControlText('Package:   spaced   \nEmpty:\nDescription:\n  text\n');
  t.is(paragraph?.get('package'), 'spaced');
  t.is(paragraph?.get('empty'), '');
  t.is(paragraph?.get('description'), 'text');
});

test('comment lines, as in apt .sources files, are ignored', async (t) => {
  const text = '# header\n\nTypes: deb\n# http://snapshot.debian.org/archive/debian/\n#Fake: field\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n';
  const paragraphs = await parseControlText(text);
  t.is(paragraphs.length, 1);
  t.deepEqual([...(paragraphs[0]?.keys() ?? [])], ['types', 'uris', 'suites']);
});

test('malformed text is rejected with the source, the paragraph and the line', async (t) => {
  const crlf = await t.throwsAsync(parseControlText('Package: a\r\nVersion: 1\r\n', 'x.txt'), { code: 'E_CONTROL_SYNTAX' });
  t.regex(crlf?.message ?? '', /^x\.txt: paragraph 1: malformed line/);
  t.regex((crlf as { hint?: string } | undefined)?.hint ?? '', /CRLF/);

  await t.throwsAsync(parseControlText('Package: a\n\nnot a field\n', 'x.txt'), {
    code: 'E_CONTROL_SYNTAX',
    message: 'x.txt: paragraph 2: malformed line "not a field"',
  });
  await t.throwsAsync(parseControlText(' continuation first\nPackage: a\n'), { code: 'E_CONTROL_SYNTAX' });
  await t.throwsAsync(parseControlText('Package: a\npackage: b\n'), { code: 'E_CONTROL_SYNTAX', message: /field package appears twice/ });
  const signed = await t.throwsAsync(parseControlText('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n'));
  t.regex((signed as { hint?: string } | undefined)?.hint ?? '', /PGP-signed/);
});

test('a missing file is an error that names it', async (t) => {
  const missing = join(tmpdir(), 'tinyx-no-such-dir', 'status');
  await t.throwsAsync(readControlFile(missing), { code: 'E_CONTROL_READ', message: new RegExp(`^${missing}: cannot read`) });
});

test('a UTF-8 character split across 64 KiB read chunks survives the file path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-control-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'status');

  // Fill the first paragraph with ASCII so that "陳" (3 bytes) starts at byte
  // 65535 and "😀" (4 bytes) at byte 131070: both cross a 64 KiB boundary.
  const parts: string[] = [];
  let bytes = 0;
  const add = (part: string): void => {
    parts.push(part);
    bytes += Buffer.byteLength(part);
  };
  /** Continuation lines of ASCII up to `offset`, where the next line starts. */
  const padTo = (offset: number): void => {
    const line = ` ${'x'.repeat(99)}\n`;
    while (bytes + line.length < offset - 2) add(line);
    add(` ${'y'.repeat(offset - bytes - 2)}\n`);
  };
  add('Package: big\nDescription: filler\n');
  padTo(65534);
  add(' 陳昌倬\n');
  padTo(131069);
  add(' 😀 end\n\nPackage: after\nMaintainer: Ondřej Surý <ondrej@debian.org>\n');
  const text = parts.join('');
  await writeFile(file, text);
  const written = await readFile(file);
  t.is(written.indexOf(Buffer.from('陳')), 65535);
  t.is(written.indexOf(Buffer.from('😀')), 131070);

  // The test is only worth something if the reader's chunks really split the characters.
  const firstChunk = await new Promise<Buffer>((resolve, reject) => {
    createReadStream(file).once('data', (chunk) => resolve(chunk as Buffer)).once('error', reject);
  });
  t.is(firstChunk.length, 65536);
  t.true(firstChunk.toString('utf8').endsWith('\uFFFD'));

  const paragraphs = await readControlFile(file);
  t.is(paragraphs.length, 2);
  const description = paragraphs[0]?.get('description') ?? '';
  t.false(description.includes('\uFFFD'));
  t.true(description.split('\n').includes('陳昌倬'));
  t.true(description.endsWith('\n😀 end'));
  t.is(paragraphs[1]?.get('maintainer'), 'Ondřej Surý <ondrej@debian.org>');
  // The in-memory path goes through the same splitter and agrees.
  t.deepEqual(
    (await parseControlText(text)).map((p) => [...p]),
    paragraphs.map((p) => [...p]),
  );
});
