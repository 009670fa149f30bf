import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RootFormat } from '@tinyx/image';
import { TinyxError } from '../errors.js';
import type { ImageEntry } from '../image-tree.js';
import type { ArchiveOptions, ArchiveSummary } from './archive-entries.js';
import { writeCpio } from './cpio.js';
import { writeTar } from './tar.js';
import { writeErofs } from './erofs.js';
import { COMPRESSIONS, compressFile, type Compression } from './compressions.js';

/** Writes entries as one archive into a stream it does not end: {@link writeCpio}, {@link writeTar}. */
export type ArchiveWriter = (
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  out: Writable,
  options: ArchiveOptions,
) => Promise<ArchiveSummary>;

/** Writes entries as a filesystem image into a file that does not exist yet: {@link writeErofs}. */
export type ImageWriter = (entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>, file: string, options: ArchiveOptions) => Promise<{ entries: number }>;

/** One way to ship an image's root filesystem. */
export interface OutputFormatSpec {
  /** The archive's name before a compression suffix: initrd.cpio, rootfs.tar. */
  baseName: string;
  /** The file name with the default compression, for help texts. */
  fileName: string;
  /** One line for `--help` and error messages. */
  describe: string;
  /** An archive streamed out (cpio, tar), or a filesystem image made in a file (erofs). */
  write: { archive: ArchiveWriter } | { image: ImageWriter };
  /** The compression used when none is asked for; null when the format is never compressed. */
  defaultCompression: Compression | null;
  /** How a format compresses its own files, inside the image (erofs), for the error that refuses --compression. */
  compressesItself?: string;
}

/**
 * The output formats, by the name a recipe or `--format` uses. A registry, so
 * the CLI can validate the name and list the choices before any work starts.
 */
export const OUTPUT_FORMATS = {
  initramfs: {
    baseName: 'initrd.cpio',
    fileName: 'initrd.cpio.gz',
    describe: "a compressed newc cpio, unpacked into the guest's RAM at boot (the kernel's initramfs)",
    write: { archive: writeCpio },
    defaultCompression: 'gzip',
  },
  erofs: {
    baseName: 'rootfs.erofs',
    fileName: 'rootfs.erofs',
    describe: "an erofs image compressed with LZ4HC, a read-only disk the guest reads page by page and every VM of the image shares in the host's page cache",
    write: { image: writeErofs },
    defaultCompression: null,
    compressesItself: 'LZ4HC, by mkfs.erofs, file by file, so that the guest reads it page by page',
  },
  tar: {
    baseName: 'rootfs.tar',
    fileName: 'rootfs.tar',
    describe: 'an uncompressed POSIX tar of the root filesystem, for other tools (not bootable)',
    write: { archive: writeTar },
    defaultCompression: null,
  },
} as const satisfies Record<RootFormat, OutputFormatSpec>;

export type OutputFormat = keyof typeof OUTPUT_FORMATS;

/** Compressed archives kept by the hash of the raw archive, so that a rebuild with the same content skips compressing. */
export interface CompressedStore {
  /** The path of a stored file for the key, or undefined. */
  get(key: string): Promise<string | undefined>;
  /** Takes a copy of `file` under the key. */
  put(key: string, file: string): Promise<void>;
}

export interface PackOptions extends ArchiveOptions {
  /** Default: the format's own (gzip for initramfs). */
  compression?: Compression | undefined;
  store?: CompressedStore | undefined;
}

/** What {@link packImage} made. */
export interface PackedImage {
  /** The path written. */
  file: string;
  /** Its name in the image directory: initrd.cpio.gz, initrd.cpio.xz, rootfs.tar. */
  fileName: string;
  compression: Compression | null;
  /** Size of the file, after compression. */
  bytes: number;
  /** Size of the archive before compression. */
  uncompressedBytes: number;
  /** Hex SHA-256 of the file's bytes. */
  sha256: string;
  /** Hex SHA-256 of the archive before compression: the content's identity. */
  archiveSha256: string;
  /** Archive entries, counting implicit parent directories. */
  entries: number;
  /** The compressed file came from the store. */
  cached: boolean;
}

/** The file name a format and compression give: initrd.cpio.xz. */
export function packedFileName(format: OutputFormat, compression: Compression | null): string {
  const spec: OutputFormatSpec = OUTPUT_FORMATS[format];
  return `${spec.baseName}${compression ? COMPRESSIONS[compression].suffix : ''}`;
}

/**
 * Packs the entries into `outDir` in the given format and compression.
 *
 * The archive is first written whole to a temporary file (hashing it on the
 * way), then compressed, or taken from the store when the same archive was
 * compressed before. The result appears whole or not at all; the temporary
 * files are removed on every path. The bytes are reproducible for the same
 * entries and mtime: every compressor runs single-threaded with fixed settings.
 */
export async function packImage(
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  format: OutputFormat,
  outDir: string,
  options: PackOptions,
): Promise<PackedImage> {
  const spec: OutputFormatSpec = OUTPUT_FORMATS[format];
  const compression = options.compression === undefined ? spec.defaultCompression : options.compression === 'none' ? null : options.compression;
  if (compression && !spec.defaultCompression) {
    const why = 'compressesItself' in spec ? `compresses its files itself (${spec.compressesItself})` : 'is not compressed';
    throw new TinyxError('E_FORMAT', `the ${format} format ${why}; leave out --compression`, { kind: 'user' });
  }
  const fileName = packedFileName(format, compression);
  const outFile = join(outDir, fileName);
  const rawFile = join(outDir, `.${spec.baseName}.raw-${process.pid}`);
  const tempFile = `${outFile}.tmp-${process.pid}`;
  try {
    const raw = 'image' in spec.write ? await writeImage(entries, spec.write.image, rawFile, options) : await writeArchive(entries, spec.write.archive, rawFile, options);
    // The description names the compressor's settings: when they change (xz's dictionary did), old entries are not served.
    const settings = compression ? createHash('sha256').update(COMPRESSIONS[compression].describe).digest('hex').slice(0, 8) : '';
    const key = `${raw.sha256}-${compression ?? 'none'}${settings ? `-${settings}` : ''}`;
    const stored = compression ? await options.store?.get(key) : undefined;
    if (stored) await copyFile(stored, tempFile);
    else if (compression) {
      await compressFile(compression, rawFile, tempFile, options.signal);
      await options.store?.put(key, tempFile);
    } else await rename(rawFile, tempFile);
    const { size, sha256 } = await hashFile(tempFile);
    await rename(tempFile, outFile);
    return { file: outFile, fileName, compression, bytes: size, uncompressedBytes: raw.bytes, sha256, archiveSha256: raw.sha256, entries: raw.entries, cached: !!stored };
  } finally {
    await rm(rawFile, { force: true });
    await rm(tempFile, { force: true });
  }
}

async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    size += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
  }
  return { size, sha256: hash.digest('hex') };
}

/** Writes a filesystem image to `file`, then hashes it. */
async function writeImage(entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>, write: ImageWriter, file: string, options: ArchiveOptions): Promise<{ bytes: number; sha256: string; entries: number }> {
  const made = await write(entries, file, options);
  const { size, sha256 } = await hashFile(file);
  return { bytes: size, sha256, entries: made.entries };
}

/** Writes the uncompressed archive to `file`, hashing it on the way. */
async function writeArchive(
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  write: ArchiveWriter,
  file: string,
  options: ArchiveOptions,
): Promise<{ bytes: number; sha256: string; entries: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  // Opened here rather than by createWriteStream, whose open may finish after a
  // failure's cleanup and leave the temporary file behind.
  const handle = await open(file, 'w');
  const head = new PassThrough();

  // The writer feeds `head` while the pipeline carries it to the file; both
  // run at once so that backpressure, not memory, bounds what is in flight.
  const flowing = pipeline(
    head,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        bytes += chunk.length;
        yield chunk;
      }
    },
    handle.createWriteStream(),
  );
  // Observed below; this keeps an early failure from being reported as unhandled meanwhile.
  flowing.catch(() => {});

  let summary: ArchiveSummary;
  try {
    summary = await write(entries, head, options);
    head.end();
  } catch (error) {
    head.destroy(error instanceof Error ? error : new Error(String(error)));
    // If the file side failed first, its error is the cause and the writer's is a consequence.
    await flowing;
    throw error;
  }
  await flowing;
  return { bytes, sha256: hash.digest('hex'), entries: summary.entries };
}
