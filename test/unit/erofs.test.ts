import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EROFS_UUID, packImage } from '@tinyx/builder/internals';
import type { ImageEntry } from '@tinyx/builder/internals';

// The erofs root through the real mkfs.erofs, read back by an independent
// reader (erofs-utils' fsck.erofs --extract, which checks every inode too).

const MTIME = 1_700_000_000;

function entries(): ImageEntry[] {
  return [
    { type: 'file', path: '/usr/sbin/nginx', mode: 0o755, source: { content: Buffer.from('#!nginx\n') } },
    { type: 'symlink', path: '/bin/sh', target: 'busybox' },
    { type: 'file', path: '/bin/su', mode: 0o4755, source: { content: Buffer.from('su') } },
    { type: 'file', path: '/etc/shadow', mode: 0o600, gid: 42, source: { content: Buffer.from('root:*:1::::::\n') } },
    { type: 'dir', path: '/var/lib/nginx', mode: 0o750, uid: 33, gid: 33 },
    { type: 'char', path: '/dev/console', mode: 0o600, major: 5, minor: 1 },
    { type: 'file', path: '/bin/busybox', mode: 0o755, source: { content: Buffer.alloc(70_000, 7) } },
  ];
}

test('erofs: the same entries in any order give the same bytes; owners, modes, links, devices and one mtime survive', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-erofs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const a = await packImage(entries(), 'erofs', await mkdtempIn(dir, 'a'), { mtime: MTIME });
  const b = await packImage(entries().reverse(), 'erofs', await mkdtempIn(dir, 'b'), { mtime: MTIME });
  t.is(a.fileName, 'rootfs.erofs');
  t.is(a.compression, null);
  t.is(a.sha256, b.sha256, 'reproducible whatever the order');
  t.is(a.sha256, createHash('sha256').update(await readFile(a.file)).digest('hex'));
  t.deepEqual(await readdir(join(dir, 'a')), ['rootfs.erofs'], 'the tree it was made from is gone');
  const later = await packImage(entries(), 'erofs', await mkdtempIn(dir, 'c'), { mtime: MTIME + 1 });
  t.not(later.sha256, a.sha256, 'the mtime is in the image');

  t.regex(execFileSync('dump.erofs', ['-s', a.file], { encoding: 'utf8' }), new RegExp(`UUID:\\s+${EROFS_UUID}`));
  const out = join(dir, 'extracted');
  execFileSync('fsck.erofs', [`--extract=${out}`, '--preserve', a.file]);
  // fsck.erofs extracts without the set-id bits (it chowns after its chmod); the integration test mounts an image to see those.
  t.is((await lstat(join(out, 'bin/su'))).mode & 0o777, 0o755);
  t.is((await lstat(join(out, 'etc/shadow'))).mode & 0o777, 0o600);
  t.is((await lstat(join(out, 'etc/shadow'))).gid, 42);
  const lib = await lstat(join(out, 'var/lib/nginx'));
  t.deepEqual([lib.uid, lib.gid, lib.mode & 0o7777], [33, 33, 0o750]);
  t.is(await readlink(join(out, 'bin/sh')), 'busybox');
  t.deepEqual(await readFile(join(out, 'bin/busybox')), Buffer.alloc(70_000, 7));
  const stat = execFileSync('dump.erofs', ['--path=/dev/console', a.file], { encoding: 'utf8' });
  t.regex(stat, /char dev/, stat);
  t.regex(execFileSync('dump.erofs', ['--path=/usr/sbin/nginx', a.file], { encoding: 'utf8' }), new RegExp(`Timestamp:.*${new Date(MTIME * 1000).getUTCFullYear()}`));
  // Every inode the 32-byte kind, also when the caller's environment has SOURCE_DATE_EPOCH (mkfs.erofs reads it, and
  // then writes every inode in the 64-byte layout): the same entries, the same bytes, whatever the shell exported.
  for (const path of ['/', '/usr/sbin', '/var/lib/nginx', '/usr/sbin/nginx', '/bin/sh']) {
    t.regex(execFileSync('dump.erofs', [`--path=${path}`, a.file], { encoding: 'utf8' }), /Inode size: 32\b/, path);
  }
  const exported = process.env.SOURCE_DATE_EPOCH;
  process.env.SOURCE_DATE_EPOCH = String(MTIME);
  try {
    t.is((await packImage(entries(), 'erofs', await mkdtempIn(dir, 'd'), { mtime: MTIME })).sha256, a.sha256, 'SOURCE_DATE_EPOCH exported');
  } finally {
    if (exported === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = exported;
  }
});

test('erofs: the files are compressed with LZ4HC inside the image; one that does not compress is stored as it is', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-erofs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const noise = randomBytes(20_000);
  const packed = await packImage([...entries(), { type: 'file', path: '/noise', mode: 0o644, source: { content: noise } }], 'erofs', dir, { mtime: MTIME });
  const onDisk = (path: string): number => Number(execFileSync('dump.erofs', [`--path=${path}`, packed.file], { encoding: 'utf8' }).match(/On-disk size: (\d+)/)?.[1]);
  // 70,000 bytes of one value: one compressed cluster per 4 KiB block of output at most.
  t.true(onDisk('/bin/busybox') <= 8192, `busybox on disk: ${onDisk('/bin/busybox')}`);
  t.true(onDisk('/noise') >= noise.length, `noise on disk: ${onDisk('/noise')}`);
  const out = join(dir, 'x');
  execFileSync('fsck.erofs', [`--extract=${out}`, packed.file]);
  t.deepEqual(await readFile(join(out, 'noise')), noise);
  t.deepEqual(await readFile(join(out, 'bin/busybox')), Buffer.alloc(70_000, 7));
});

test('erofs: no compression to ask for, and a failed mkfs leaves nothing behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-erofs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await t.throwsAsync(packImage(entries(), 'erofs', dir, { mtime: MTIME, compression: 'gzip' }), { message: /the erofs format compresses its files itself \(LZ4HC, by mkfs\.erofs/ });
  const bad: ImageEntry[] = [{ type: 'file', path: '/x', mode: 0o644, source: { path: join(dir, 'no-such-file') } }];
  await t.throwsAsync(packImage(bad, 'erofs', dir, { mtime: MTIME }));
  t.deepEqual(await readdir(dir), []);
});

async function mkdtempIn(parent: string, name: string): Promise<string> {
  const path = join(parent, name);
  await mkdir(path);
  return path;
}
