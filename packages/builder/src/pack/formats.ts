import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { PassThrough, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { ImageEntry } from '../image-tree.js';
import type { ArchiveOptions, ArchiveSummary } from './archive-entries.js';
import { writeCpio } from './cpio.js';
import { writeTar } from './tar.js';

/** Writes entries as one archive into a stream it does not end: {@link writeCpio}, {@link writeTar}. */
export type ArchiveWriter = (
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  out: Writable,
  options: ArchiveOptions,
) => Promise<ArchiveSummary>;

/** One way to ship an image's root filesystem. */
export interface OutputFormatSpec {
  /** The output file's name in the build's output directory. */
  fileName: string;
  /** One line for `--help` and error messages. */
  describe: string;
  write: ArchiveWriter;
  /** Whether the archive is gzip-compressed on its way to the file. */
  gzip: boolean;
}

/**
 * The output formats, by the name a recipe or `--format` uses. A registry, so
 * the CLI can validate the name and list the choices before any work starts.
 */
export const OUTPUT_FORMATS = {
  initramfs: {
    fileName: 'initrd.cpio.gz',
    describe: "gzip-compressed newc cpio, for the kernel's initramfs",
    write: writeCpio,
    gzip: true,
  },
  tar: {
    fileName: 'rootfs.tar',
    describe: 'an uncompressed POSIX tar of the root filesystem',
    write: writeTar,
    gzip: false,
  },
} as const satisfies Record<string, OutputFormatSpec>;

export type OutputFormat = keyof typeof OUTPUT_FORMATS;

/** What {@link packImage} made. */
export interface PackedImage {
  /** The path written: `outFile`. */
  file: string;
  /** Size of the file, after compression if the format compresses. */
  bytes: number;
  /** Size of the archive before compression; equal to `bytes` for tar. */
  uncompressedBytes: number;
  /** Hex SHA-256 of the file's bytes, computed while they were written. */
  sha256: string;
  /** Archive entries, counting implicit parent directories. */
  entries: number;
}

/**
 * Packs the entries into `outFile` in the given format.
 *
 * The file appears whole or not at all: the archive is written to
 * `outFile.tmp-<pid>` and renamed over `outFile` once it is complete and
 * flushed; on any error the temporary file is removed. The output is
 * byte-for-byte reproducible for the same entries and mtime — Node's gzip
 * header carries no timestamp or file name.
 *
 * @throws whatever the format's writer throws (see {@link writeCpio}), or the
 *   error of writing the file.
 */
export async function packImage(
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  format: OutputFormat,
  outFile: string,
  options: ArchiveOptions,
): Promise<PackedImage> {
  const spec: OutputFormatSpec = OUTPUT_FORMATS[format];
  const tempFile = `${outFile}.tmp-${process.pid}`;
  const hash = createHash('sha256');
  let bytes = 0;
  // Opened here rather than by createWriteStream, whose open may finish after a
  // failure's cleanup and leave the temporary file behind.
  const handle = await open(tempFile, 'w');
  const head = spec.gzip ? createGzip({ level: 9 }) : new PassThrough();

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
    // flush: fsync before close, so the rename below never publishes a file whose data is not on disk.
    handle.createWriteStream({ flush: true }),
  );
  // Observed below; this keeps an early failure from being reported as unhandled meanwhile.
  flowing.catch(() => {});

  try {
    let summary: ArchiveSummary;
    try {
      summary = await spec.write(entries, head, options);
      head.end();
    } catch (error) {
      head.destroy(error instanceof Error ? error : new Error(String(error)));
      // If the file side failed first, its error is the cause and the writer's is a consequence.
      await flowing;
      throw error;
    }
    await flowing;
    await rename(tempFile, outFile);
    return { file: outFile, bytes, uncompressedBytes: summary.bytes, sha256: hash.digest('hex'), entries: summary.entries };
  } catch (error) {
    await rm(tempFile, { force: true });
    throw error;
  }
}
