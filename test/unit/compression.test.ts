import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMPRESSIONS, packImage, writeCpio, xzDictionary, type CompressedStore, type ImageEntry } from '@tinyx/builder/internals';
import { PassThrough } from 'node:stream';

const MTIME = 1_700_000_000;
const entries = (): ImageEntry[] => [
  { type: 'dir', path: '/etc', mode: 0o755 },
  { type: 'file', path: '/etc/motd', mode: 0o644, source: { content: Buffer.from('tinyx\n'.repeat(2000)) } },
  { type: 'symlink', path: '/bin', target: 'usr/bin' },
];

async function rawCpio(): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await writeCpio(entries(), out, { mtime: MTIME });
  out.end();
  return Buffer.concat(chunks);
}

/** Each compressor's own tool (an independent reader) must give back the raw archive. */
const DECOMPRESS: Record<string, string[]> = { gzip: ['gzip', '-dc'], xz: ['xz', '-dc'], zstd: ['zstd', '-dcq'] };

for (const compression of ['gzip', 'xz', 'zstd', 'none'] as const) {
  test(`${compression}: the packed file unpacks to the raw cpio, and packing twice gives the same bytes`, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'tinyx-compress-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'b'));
    const first = await packImage(entries(), 'initramfs', join(dir, 'a'), { mtime: MTIME, compression });
    const second = await packImage(entries(), 'initramfs', join(dir, 'b'), { mtime: MTIME, compression });
    t.is(first.fileName, `initrd.cpio${COMPRESSIONS[compression].suffix}`);
    const bytes = await readFile(first.file);
    t.true(bytes.equals(await readFile(second.file)), 'reproducible');
    const raw = await rawCpio();
    const unpacked = compression === 'none' ? bytes : execFileSync(DECOMPRESS[compression]![0]!, [...DECOMPRESS[compression]!.slice(1), first.file]);
    t.true(unpacked.equals(raw));
    t.is(first.uncompressedBytes, raw.length);
    if (compression !== 'none') t.true(first.bytes < raw.length / 4, `${first.bytes} of ${raw.length}`);
    t.deepEqual(await readdir(join(dir, 'a')), [first.fileName], 'no temporary file left');
  });
}

test('the kernel can unpack an xz initramfs only with CRC32 checks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-compress-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const packed = await packImage(entries(), 'initramfs', dir, { mtime: MTIME, compression: 'xz' });
  t.regex(execFileSync('xz', ['--robot', '--list', packed.file], { encoding: 'utf8' }), /\tCRC32\t/);
});

test("xz's dictionary holds the whole archive and no more (the kernel allocates all of it to unpack an initramfs)", async (t) => {
  t.is(xzDictionary(1), 4096);
  t.is(xzDictionary(4097), 6144);
  t.is(xzDictionary(8192), 8192);
  // nginx's xen-pv root, 10,153,984 bytes: 12 MiB, where -9e states 64 MiB.
  t.is(xzDictionary(10_153_984), 12 * 2 ** 20);
  t.is(xzDictionary(2 ** 30), 64 * 2 ** 20);
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-compress-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const packed = await packImage(entries(), 'initramfs', dir, { mtime: MTIME, compression: 'xz' });
  // xz's own account of the stream: its filter chain, and the memory its decompressor needs.
  const listing = execFileSync('xz', ['--robot', '-lvv', packed.file], { encoding: 'utf8' });
  t.regex(listing, new RegExp(`--lzma2=dict=${xzDictionary((await rawCpio()).length) / 1024}KiB$`, 'm'));
  const memory = Number(/^summary\t(\d+)\t/m.exec(listing)?.[1]);
  t.true(memory < 2 * 2 ** 20, `${memory} bytes to unpack ${packed.uncompressedBytes}`);
});

test('a store of compressed archives: the second pack of the same content is a hit with the same bytes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-compress-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kept = new Map<string, Buffer>();
  const store: CompressedStore = {
    get: async (key) => {
      if (!kept.has(key)) return undefined;
      const file = join(dir, `stored-${kept.size}`);
      execFileSync('sh', ['-c', 'cat > "$1"', 'sh', file], { input: kept.get(key) });
      return file;
    },
    put: async (key, file) => void kept.set(key, await readFile(file)),
  };
  await mkdir(join(dir, 'one'));
  await mkdir(join(dir, 'two'));
  const first = await packImage(entries(), 'initramfs', join(dir, 'one'), { mtime: MTIME, compression: 'zstd', store });
  const second = await packImage(entries(), 'initramfs', join(dir, 'two'), { mtime: MTIME, compression: 'zstd', store });
  t.false(first.cached);
  t.true(second.cached);
  t.is(second.sha256, first.sha256);
  t.is(kept.size, 1);
  // Other content or another compression is another key.
  await mkdir(join(dir, 'three'));
  const other = await packImage(entries(), 'initramfs', join(dir, 'three'), { mtime: MTIME + 1, compression: 'zstd', store });
  t.false(other.cached);
  t.is(kept.size, 2);
});
