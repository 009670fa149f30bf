import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, truncateSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { writeCpio, packImage, OUTPUT_FORMATS } from '@tinyx/builder/internals';
import type { ImageEntry } from '@tinyx/builder/internals';

const MTIME = 1_700_000_000; // 2023-11-14T22:13:20Z

/** A small image: given out of order, with parents missing, owners and modes that must survive. */
function sampleEntries(): ImageEntry[] {
  return [
    { type: 'file', path: '/usr/sbin/nginx', mode: 0o755, source: { content: Buffer.from('#!nginx\n') } },
    { type: 'symlink', path: '/bin/sh', target: 'busybox' },
    { type: 'file', path: '/bin/su', mode: 0o4755, source: { content: Buffer.from('su') } },
    { type: 'file', path: '/etc/shadow', mode: 0o600, gid: 42, source: { content: Buffer.from('root:*:1::::::\n') } },
    { type: 'dir', path: '/home/www', mode: 0o750, uid: 33, gid: 33 },
    { type: 'file', path: '/bin/busybox', mode: 0o755, source: { content: Buffer.from('busybox!') } },
    { type: 'dir', path: '/etc', mode: 0o755 },
    { type: 'file', path: '/etc/empty', mode: 0o644, source: { content: new Uint8Array() } },
  ];
}

const SAMPLE_NAMES = [
  'bin',
  'bin/busybox',
  'bin/sh',
  'bin/su',
  'etc',
  'etc/empty',
  'etc/shadow',
  'home',
  'home/www',
  'usr',
  'usr/sbin',
  'usr/sbin/nginx',
];

/** An output stream that keeps what it is given; `written()` ends it and waits for the last byte. */
function memoryOutput(options: { slow?: boolean } = {}): { out: Writable; written(): Promise<Buffer>; mostBuffered(): number } {
  const chunks: Buffer[] = [];
  let mostBuffered = 0;
  const out = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      mostBuffered = Math.max(mostBuffered, this.writableLength);
      chunks.push(chunk);
      // For a while slower than reading the file, so a writer that ignores backpressure piles data up here.
      if (options.slow && chunks.length <= 6) setTimeout(callback, 10);
      else callback();
    },
  });
  return {
    out,
    written: async () => {
      await new Promise<void>((resolve, reject) => {
        out.once('error', reject);
        out.end(resolve);
      });
      return Buffer.concat(chunks);
    },
    mostBuffered: () => mostBuffered,
  };
}

async function cpioBytes(entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>, mtime = MTIME): Promise<Buffer> {
  const output = memoryOutput();
  await writeCpio(entries, output.out, { mtime });
  return output.written();
}

/** GNU cpio, the independent reader, in a fixed locale and time zone so its listing is stable. */
function cpio(args: string[], input: Buffer, cwd?: string): string {
  return execFileSync('cpio', args, { input, cwd, env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } }).toString('utf8');
}

interface Listed {
  perms: string;
  nlink: number;
  uid: number;
  gid: number;
  /** Size, or "major,minor" for a device. */
  size: string;
  /** As `ls -l` shows an old date: "Nov 14 2023". */
  date: string;
  target?: string;
}

/** `cpio -itv --numeric-uid-gid`, by name. */
function listVerbose(archive: Buffer): Map<string, Listed> {
  const listed = new Map<string, Listed>();
  for (const line of cpio(['-itv', '--quiet', '--numeric-uid-gid'], archive).trimEnd().split('\n')) {
    const match = /^(\S{10})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+,\s*\d+|\d+)\s+(\w{3}\s+\d+\s+\d{4})\s+(.+?)(?: -> (.*))?$/.exec(line);
    if (!match) throw new Error(`unexpected cpio listing line: ${line}`);
    const [, perms = '', nlink = '', uid = '', gid = '', size = '', date = '', name = '', target] = match;
    listed.set(name, {
      perms,
      nlink: Number(nlink),
      uid: Number(uid),
      gid: Number(gid),
      size: size.replace(/\s+/g, ''),
      date: date.replace(/\s+/g, ' '),
      ...(target === undefined ? {} : { target }) });
  }
  return listed;
}

interface NewcRecord {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  filesize: number;
  devmajor: number;
  devminor: number;
  check: number;
  name: string;
}

/** Reads newc headers straight from the spec, to check what GNU cpio does not show (inodes, the trailer). */
function parseNewc(archive: Buffer): { records: NewcRecord[]; end: number } {
  const records: NewcRecord[] = [];
  let offset = 0;
  for (;;) {
    if (archive.toString('latin1', offset, offset + 6) !== '070701') throw new Error(`no newc magic at ${offset}`);
    const field = (index: number): number => parseInt(archive.toString('latin1', offset + 6 + index * 8, offset + 14 + index * 8), 16);
    const namesize = field(11);
    const name = archive.toString('utf8', offset + 110, offset + 110 + namesize - 1);
    const record = { ino: field(0), mode: field(1), nlink: field(4), mtime: field(5), filesize: field(6), devmajor: field(7), devminor: field(8), check: field(12), name };
    records.push(record);
    offset = align4(align4(offset + 110 + namesize) + record.filesize);
    if (name === 'TRAILER!!!') return { records, end: offset };
  }
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-cpio-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('writes entries sorted by path, with the missing parent directories added', async (t) => {
  const archive = await cpioBytes(sampleEntries());
  t.deepEqual(cpio(['-it', '--quiet'], archive).trimEnd().split('\n'), SAMPLE_NAMES);

  const listed = listVerbose(archive);
  for (const implicit of ['bin', 'home', 'usr', 'usr/sbin']) {
    t.like(listed.get(implicit), { perms: 'drwxr-xr-x', uid: 0, gid: 0, nlink: 2 }, implicit);
  }
});

test('keeps owners (0 by default), permission bits including setuid, and nlink', async (t) => {
  const listed = listVerbose(await cpioBytes(sampleEntries()));
  t.like(listed.get('bin/su'), { perms: '-rwsr-xr-x', uid: 0, gid: 0, nlink: 1, size: '2' });
  t.like(listed.get('etc/shadow'), { perms: '-rw-------', uid: 0, gid: 42, size: '15' });
  t.like(listed.get('home/www'), { perms: 'drwxr-x---', uid: 33, gid: 33, nlink: 2 });
  t.like(listed.get('usr/sbin/nginx'), { perms: '-rwxr-xr-x', uid: 0, gid: 0, size: '8' });
});

test('gives every entry the mtime of the option', async (t) => {
  const listed = listVerbose(await cpioBytes(sampleEntries(), 1_000_000_000)); // 2001-09-09T01:46:40Z
  t.is(listed.size, SAMPLE_NAMES.length);
  for (const [name, entry] of listed) t.is(entry.date, 'Sep 9 2001', name);
});

test('writes a symlink with its target and a char device with its major and minor', async (t) => {
  const listed = listVerbose(
    await cpioBytes([
      { type: 'symlink', path: '/bin/sh', target: 'busybox' },
      { type: 'char', path: '/dev/console', mode: 0o600, major: 5, minor: 1 },
      { type: 'char', path: '/dev/null', mode: 0o666, major: 1, minor: 3, gid: 5 },
    ]),
  );
  t.like(listed.get('bin/sh'), { perms: 'lrwxrwxrwx', size: '7', target: 'busybox' });
  t.like(listed.get('dev/console'), { perms: 'crw-------', size: '5,1', uid: 0, gid: 0 });
  t.like(listed.get('dev/null'), { perms: 'crw-rw-rw-', size: '1,3', gid: 5 });
});

test('extracts byte-exact, with modes, the symlink target and the fixed mtime', async (t) => {
  const root = await tempDir(t);
  const entries = sampleEntries();
  cpio(['-idm', '--quiet'], await cpioBytes(entries), root);

  for (const entry of entries) {
    const onDisk = join(root, entry.path);
    const stats = await lstat(onDisk);
    // GNU cpio sets no time on a symlink, and a directory's changes as its children are extracted.
    if (entry.type === 'file') t.is(stats.mtimeMs, MTIME * 1000, entry.path);
    if (entry.type === 'file') {
      t.deepEqual(await readFile(onDisk), Buffer.from('content' in entry.source ? entry.source.content : []), entry.path);
      t.is(stats.mode & 0o7777, entry.mode, entry.path);
    } else if (entry.type === 'symlink') {
      t.is(await readlink(onDisk), entry.target);
    } else if (entry.type === 'dir') {
      t.is(stats.mode & 0o7777, entry.mode, entry.path);
    }
  }
});

test('numbers inodes from 1 in write order and ends with a TRAILER!!! padded to 512 bytes', async (t) => {
  const archive = await cpioBytes(sampleEntries());
  const { records, end } = parseNewc(archive);
  const trailer = records.at(-1);
  t.like(trailer, { name: 'TRAILER!!!', ino: 0, mode: 0, nlink: 1, filesize: 0 });
  const written = records.slice(0, -1);
  t.deepEqual(
    written.map((r) => r.name),
    SAMPLE_NAMES,
  );
  t.deepEqual(
    written.map((r) => r.ino),
    SAMPLE_NAMES.map((_, i) => i + 1),
  );
  t.true(written.every((r) => r.mtime === MTIME && r.devmajor === 0 && r.devminor === 0 && r.check === 0));
  t.is(archive.length % 512, 0);
  t.true(archive.subarray(end).every((byte) => byte === 0));
});

test('reports the entries written and the archive length', async (t) => {
  const output = memoryOutput();
  const summary = await writeCpio(sampleEntries(), output.out, { mtime: MTIME });
  t.deepEqual(summary, { entries: SAMPLE_NAMES.length, bytes: (await output.written()).length });
});

test('gives identical bytes for the same entries in any input order', async (t) => {
  const entries = sampleEntries();
  const forward = await cpioBytes(entries);
  const backward = await cpioBytes([...entries].reverse());
  async function* trickle(): AsyncGenerator<ImageEntry> {
    for (const entry of [3, 0, 6, 1, 7, 5, 2, 4].map((i) => entries[i])) {
      if (entry) yield entry;
    }
  }
  t.true(forward.equals(backward));
  t.true(forward.equals(await cpioBytes(trickle())));
  // Guard against a vacuous pass: a different mtime must change the bytes.
  t.false(forward.equals(await cpioBytes(entries, MTIME + 1)));
});

test('streams a 3 MB host file byte-exact while waiting for a slow output to drain', async (t) => {
  const dir = await tempDir(t);
  const big = randomBytes(3 * 1024 * 1024 + 3); // not a multiple of 4, to exercise the data padding
  await writeFile(join(dir, 'big.bin'), big);

  const output = memoryOutput({ slow: true });
  const entries: ImageEntry[] = [
    { type: 'file', path: '/opt/big.bin', mode: 0o644, source: { path: join(dir, 'big.bin') } },
    { type: 'file', path: '/opt/after', mode: 0o644, source: { content: Buffer.from('after') } },
  ];
  await writeCpio(entries, output.out, { mtime: MTIME });
  // Without waiting for 'drain' the whole file would sit in the output's buffer.
  t.true(output.mostBuffered() < 1024 * 1024, `output buffered up to ${output.mostBuffered()} bytes`);

  const root = join(dir, 'root');
  execFileSync('mkdir', [root]);
  cpio(['-id', '--quiet'], await output.written(), root);
  t.true((await readFile(join(root, 'opt/big.bin'))).equals(big));
  t.is(await readFile(join(root, 'opt/after'), 'utf8'), 'after');
});

for (const change of ['grows', 'shrinks'] as const) {
  test(`refuses a host file that ${change} between lstat and read`, async (t) => {
    const dir = await tempDir(t);
    const file = join(dir, 'changing');
    await writeFile(file, 'twelve bytes');
    let changed = false;
    // The header (with the lstat size) reaches the output before the data is read: change the file then.
    const out = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (!changed && chunk.includes('var/changing')) {
          changed = true;
          if (change === 'grows') appendFileSync(file, 'and more');
          else truncateSync(file, 5);
        }
        callback();
      },
    });
    const error = await t.throwsAsync(
      writeCpio([{ type: 'file', path: '/var/changing', mode: 0o644, source: { path: file } }], out, { mtime: MTIME }),
    );
    t.true(changed);
    t.regex(error?.message ?? '', new RegExp(`/var/changing.*${change === 'grows' ? 'grew' : 'shrank'}`));
  });
}

test('refuses a host source that is not a regular file', async (t) => {
  const dir = await tempDir(t);
  await symlink('/etc/hostname', join(dir, 'link'));
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  await t.throwsAsync(writeCpio([{ type: 'file', path: '/etc/hostname', mode: 0o644, source: { path: join(dir, 'link') } }], sink, { mtime: MTIME }), {
    message: /\/etc\/hostname: source .*link is not a regular file/,
  });
});

test('refuses a duplicate path, naming it', async (t) => {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const entries: ImageEntry[] = [...sampleEntries(), { type: 'symlink', path: '/bin/su', target: 'busybox' }];
  await t.throwsAsync(writeCpio(entries, sink, { mtime: MTIME }), { message: 'duplicate image entry: /bin/su' });
});

test('refuses paths that are not absolute and normal, and entries under a non-directory', async (t) => {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  for (const path of ['etc/passwd', '/etc/', '/etc//passwd', '/etc/../passwd', '/./etc']) {
    await t.throwsAsync(writeCpio([{ type: 'dir', path, mode: 0o755 }], sink, { mtime: MTIME }), { message: /absolute and normal/ }, path);
  }
  await t.throwsAsync(
    writeCpio(
      [
        { type: 'symlink', path: '/lib', target: 'usr/lib' },
        { type: 'dir', path: '/lib/modules', mode: 0o755 },
      ],
      sink,
      { mtime: MTIME },
    ),
    { message: /\/lib\/modules lies under \/lib, which is a symlink/ },
  );
});

test('stops with InterruptedError when the signal has fired', async (t) => {
  const controller = new AbortController();
  controller.abort();
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const error = await t.throwsAsync(writeCpio(sampleEntries(), sink, { mtime: MTIME, signal: controller.signal }));
  t.is(error?.name, 'InterruptedError');
});

test('rejects with the output stream’s error instead of hanging', async (t) => {
  let calls = 0;
  const out = new Writable({
    highWaterMark: 1,
    write(_chunk, _encoding, callback) {
      calls += 1;
      callback(calls === 3 ? new Error('disk full') : null);
    },
  });
  await t.throwsAsync(writeCpio(sampleEntries(), out, { mtime: MTIME }), { message: 'disk full' });
});

test('packImage writes a reproducible gzip that decompresses to the raw cpio', async (t) => {
  const dir = await tempDir(t);
  t.is(OUTPUT_FORMATS.initramfs.fileName, 'initrd.cpio.gz');
  await mkdir(join(dir, 'one'));
  await mkdir(join(dir, 'two'));
  const first = await packImage(sampleEntries(), 'initramfs', join(dir, 'one'), { mtime: MTIME });
  const second = await packImage([...sampleEntries()].reverse(), 'initramfs', join(dir, 'two'), { mtime: MTIME });
  t.is(first.file, join(dir, 'one', 'initrd.cpio.gz'));
  t.is(first.compression, 'gzip');

  const firstBytes = await readFile(first.file);
  t.true(firstBytes.equals(await readFile(second.file)));
  t.is(first.sha256, second.sha256);
  t.is(first.sha256, createHash('sha256').update(firstBytes).digest('hex'));
  t.is(first.bytes, firstBytes.length);

  const raw = await cpioBytes(sampleEntries());
  t.true(gunzipSync(firstBytes).equals(raw));
  t.is(first.uncompressedBytes, raw.length);
  t.is(first.entries, SAMPLE_NAMES.length);
  // Only the finished file: the raw archive and the temporary file are gone.
  t.deepEqual(await readdir(join(dir, 'one')), ['initrd.cpio.gz']);
});

test('packImage leaves neither the file nor its temporary behind when packing fails', async (t) => {
  const dir = await tempDir(t);
  const entries: ImageEntry[] = [
    { type: 'file', path: '/a', mode: 0o644, source: { content: Buffer.from('a') } },
    { type: 'file', path: '/b', mode: 0o644, source: { path: join(dir, 'missing') } },
  ];
  const out = join(dir, 'out');
  await mkdir(out);
  await t.throwsAsync(packImage(entries, 'initramfs', out, { mtime: MTIME }), { code: 'ENOENT' });
  t.deepEqual(await readdir(out), []);
});
