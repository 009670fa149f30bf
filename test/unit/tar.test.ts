import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { writeTar, packImage, OUTPUT_FORMATS } from '@tinyx/builder/internals';
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
  'bin/',
  'bin/busybox',
  'bin/sh',
  'bin/su',
  'etc/',
  'etc/empty',
  'etc/shadow',
  'home/',
  'home/www/',
  'usr/',
  'usr/sbin/',
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

async function tarBytes(entries: Iterable<ImageEntry>, mtime = MTIME): Promise<Buffer> {
  const output = memoryOutput();
  await writeTar(entries, output.out, { mtime });
  return output.written();
}

/** GNU tar, the independent reader, in a fixed locale and time zone so its listing is stable. */
function gnuTar(args: string[], input: Buffer, cwd?: string): string {
  return execFileSync('tar', args, { input, cwd, env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } }).toString('utf8');
}

interface Listed {
  perms: string;
  uid: number;
  gid: number;
  /** Size, or "major,minor" for a device. */
  size: string;
  date: string;
  target?: string;
}

/** `tar -tvf - --numeric-owner`, by name. */
function listVerbose(archive: Buffer): Map<string, Listed> {
  const listed = new Map<string, Listed>();
  for (const line of gnuTar(['-tvf', '-', '--numeric-owner'], archive).trimEnd().split('\n')) {
    const match = /^(\S{10}) (\d+)\/(\d+)\s+(\d+,\d+|\d+) (\S+ \S+) (.+?)(?: -> (.*))?$/.exec(line);
    if (!match) throw new Error(`unexpected tar listing line: ${line}`);
    const [, perms = '', uid = '', gid = '', size = '', date = '', name = '', target] = match;
    listed.set(name, { perms, uid: Number(uid), gid: Number(gid), size, date, ...(target === undefined ? {} : { target }) });
  }
  return listed;
}

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-tar-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('writes entries sorted by path, with the missing parent directories added', async (t) => {
  const archive = await tarBytes(sampleEntries());
  t.deepEqual(gnuTar(['-tf', '-'], archive).trimEnd().split('\n'), SAMPLE_NAMES);

  const listed = listVerbose(archive);
  for (const implicit of ['bin/', 'home/', 'usr/', 'usr/sbin/']) {
    t.like(listed.get(implicit), { perms: 'drwxr-xr-x', uid: 0, gid: 0 }, implicit);
  }
});

test('keeps numeric owners (0 by default), permission bits and the mtime of the option', async (t) => {
  const listed = listVerbose(await tarBytes(sampleEntries()));
  t.like(listed.get('bin/su'), { perms: '-rwsr-xr-x', uid: 0, gid: 0, size: '2' });
  t.like(listed.get('etc/shadow'), { perms: '-rw-------', uid: 0, gid: 42, size: '15' });
  t.like(listed.get('home/www/'), { perms: 'drwxr-x---', uid: 33, gid: 33 });
  t.is(listed.size, SAMPLE_NAMES.length);
  for (const [name, entry] of listed) t.is(entry.date, '2023-11-14 22:13', name);

  // No user or group names: an extracting tar must not map them to the build host's ids.
  const named = gnuTar(['-tvf', '-'], await tarBytes(sampleEntries()));
  t.regex(named, /^-rw------- 0\/42 /m);
});

test('keeps a mode of 0000, which tar-stream would otherwise replace by its default', async (t) => {
  const listed = listVerbose(await tarBytes([{ type: 'file', path: '/locked', mode: 0, source: { content: Buffer.from('x') } }]));
  t.like(listed.get('locked'), { perms: '----------' });
});

test('writes a symlink with its target and a char device with its major and minor', async (t) => {
  const listed = listVerbose(
    await tarBytes([
      { type: 'symlink', path: '/bin/sh', target: 'busybox' },
      { type: 'char', path: '/dev/console', mode: 0o600, major: 5, minor: 1 },
      { type: 'char', path: '/dev/null', mode: 0o666, major: 1, minor: 3, gid: 5 },
    ]),
  );
  t.like(listed.get('bin/sh'), { perms: 'lrwxrwxrwx', target: 'busybox' });
  t.like(listed.get('dev/console'), { perms: 'crw-------', size: '5,1', uid: 0, gid: 0 });
  t.like(listed.get('dev/null'), { perms: 'crw-rw-rw-', size: '1,3', gid: 5 });
});

test('extracts byte-exact, with modes, symlink targets and the fixed mtime', async (t) => {
  const root = await tempDir(t);
  const entries = sampleEntries();
  gnuTar(['-xpf', '-'], await tarBytes(entries), root);

  for (const entry of entries) {
    const onDisk = join(root, entry.path);
    const stats = await lstat(onDisk);
    t.is(stats.mtimeMs, MTIME * 1000, entry.path);
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

test('round-trips names and targets too long or too foreign for a plain ustar header', async (t) => {
  const root = await tempDir(t);
  const deep = `/usr/share/${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(80)}.conf`;
  const entries: ImageEntry[] = [
    { type: 'file', path: deep, mode: 0o644, source: { content: Buffer.from('deep') } },
    { type: 'file', path: '/etc/motd-é', mode: 0o644, source: { content: Buffer.from('bonjour') } },
    { type: 'symlink', path: '/etc/far', target: `/${'t'.repeat(150)}` },
  ];
  gnuTar(['-xf', '-'], await tarBytes(entries), root);
  t.is(await readFile(join(root, deep), 'utf8'), 'deep');
  t.is(await readFile(join(root, '/etc/motd-é'), 'utf8'), 'bonjour');
  t.is(await readlink(join(root, '/etc/far')), `/${'t'.repeat(150)}`);
});

test('gives identical bytes for the same entries in any input order', async (t) => {
  const entries = sampleEntries();
  const forward = await tarBytes(entries);
  t.true(forward.equals(await tarBytes([...entries].reverse())));
  // Guard against a vacuous pass: a different mtime must change the bytes.
  t.false(forward.equals(await tarBytes(entries, MTIME + 60)));
  // tar-stream ends the archive with two zero blocks.
  t.is(forward.length % 512, 0);
  t.true(forward.subarray(-1024).every((byte) => byte === 0));
});

test('streams a 3 MB host file byte-exact while waiting for a slow output to drain', async (t) => {
  const dir = await tempDir(t);
  const big = randomBytes(3 * 1024 * 1024 + 5);
  await writeFile(join(dir, 'big.bin'), big);

  const output = memoryOutput({ slow: true });
  const entries: ImageEntry[] = [
    { type: 'file', path: '/opt/big.bin', mode: 0o644, source: { path: join(dir, 'big.bin') } },
    { type: 'file', path: '/opt/after', mode: 0o644, source: { content: Buffer.from('after') } },
  ];
  const summary = await writeTar(entries, output.out, { mtime: MTIME });
  t.true(output.mostBuffered() < 1024 * 1024, `output buffered up to ${output.mostBuffered()} bytes`);

  const archive = await output.written();
  t.deepEqual(summary, { entries: 3, bytes: archive.length });
  const root = join(dir, 'root');
  await mkdir(root);
  gnuTar(['-xf', '-'], archive, root);
  t.true((await readFile(join(root, 'opt/big.bin'))).equals(big));
  t.is(await readFile(join(root, 'opt/after'), 'utf8'), 'after');
});

test('refuses a host file that grows between lstat and read', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'changing');
  await writeFile(file, 'twelve bytes');
  let changed = false;
  // The header (with the lstat size) reaches the output before the data is read: change the file then.
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (!changed && chunk.includes('var/changing')) {
        changed = true;
        appendFileSync(file, 'and more');
      }
      callback();
    },
  });
  const error = await t.throwsAsync(writeTar([{ type: 'file', path: '/var/changing', mode: 0o644, source: { path: file } }], out, { mtime: MTIME }));
  t.true(changed);
  t.regex(error?.message ?? '', /\/var\/changing.*grew/);
});

test('refuses a duplicate path, naming it', async (t) => {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const entries: ImageEntry[] = [...sampleEntries(), { type: 'dir', path: '/etc', mode: 0o700 }];
  await t.throwsAsync(writeTar(entries, sink, { mtime: MTIME }), { message: 'duplicate image entry: /etc' });
});

test('refuses a uid that the tar header cannot hold instead of writing a wrong one', async (t) => {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  await t.throwsAsync(writeTar([{ type: 'dir', path: '/nobody', mode: 0o755, uid: 0o1000000 }], sink, { mtime: MTIME }), {
    message: /\/nobody: uid 262144 is too large/,
  });
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
  await t.throwsAsync(writeTar(sampleEntries(), out, { mtime: MTIME }), { message: 'disk full' });
});

test('stops with InterruptedError when the signal has fired', async (t) => {
  const controller = new AbortController();
  controller.abort();
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const error = await t.throwsAsync(writeTar(sampleEntries(), sink, { mtime: MTIME, signal: controller.signal }));
  t.is(error?.name, 'InterruptedError');
});

test('packImage writes the tar as is, reproducibly, with its sha256', async (t) => {
  const dir = await tempDir(t);
  t.is(OUTPUT_FORMATS.tar.fileName, 'rootfs.tar');
  await mkdir(join(dir, 'one'));
  await mkdir(join(dir, 'two'));
  const first = await packImage(sampleEntries(), 'tar', join(dir, 'one'), { mtime: MTIME });
  const second = await packImage([...sampleEntries()].reverse(), 'tar', join(dir, 'two'), { mtime: MTIME });
  t.is(first.file, join(dir, 'one', 'rootfs.tar'));
  t.is(first.compression, null);

  const bytes = await readFile(first.file);
  t.true(bytes.equals(await tarBytes(sampleEntries())));
  t.true(bytes.equals(await readFile(second.file)));
  t.is(first.sha256, createHash('sha256').update(bytes).digest('hex'));
  t.is(first.sha256, second.sha256);
  t.is(first.bytes, bytes.length);
  t.is(first.uncompressedBytes, bytes.length);
  t.is(first.entries, SAMPLE_NAMES.length);
  t.deepEqual(await readdir(join(dir, 'one')), ['rootfs.tar']);
  await t.throwsAsync(packImage(sampleEntries(), 'tar', join(dir, 'one'), { mtime: MTIME, compression: 'xz' }), { message: /not compressed/ });
});
