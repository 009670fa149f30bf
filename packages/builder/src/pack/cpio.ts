import type { Writable } from 'node:stream';
import { throwIfAborted } from '../errors.js';
import type { ImageEntry } from '../image-tree.js';
import { archiveName, openFileData, orderImageEntries, type ArchiveOptions, type ArchiveSummary } from './archive-entries.js';
import { OutputSink } from './output-sink.js';

// File-type bits of st_mode, as newc stores them next to the permission bits.
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const NEWC_MAGIC = '070701';
const HEADER_LENGTH = 110;
const TRAILER_NAME = 'TRAILER!!!';
/** Every newc header field is 8 hex digits. */
const FIELD_MAX = 0xffffffff;
// gen_init_cpio and GNU cpio both end the archive on a 512-byte boundary; doing the
// same keeps our output comparable to theirs and costs at most 511 zero bytes.
const ARCHIVE_BLOCK = 512;

interface NewcHeader {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  filesize: number;
  rdevmajor: number;
  rdevminor: number;
}

/**
 * Writes the entries as a newc ("070701") cpio archive, the format the Linux
 * kernel unpacks into its initramfs.
 *
 * The archive is deterministic: entries sorted by path with missing parent
 * directories added (see {@link orderImageEntries}), inode numbers 1, 2, …
 * in that order, every mtime `options.mtime`, device numbers of the build host
 * left out. Names carry no leading slash ("usr/sbin/nginx"), as gen_init_cpio
 * and `find . | cpio -H newc` write them. Every file has nlink 1: there are
 * no hard links. The archive ends with the TRAILER!!! entry, padded to 512 bytes.
 *
 * Host files are read as the archive is written, one at a time, and writes
 * wait for the stream to drain. `out` is not ended: the caller ends it (it is
 * usually the head of a pipeline into gzip and a file).
 *
 * @throws Error for a duplicate or malformed entry, a host file that is not a
 *   regular file or changes size while being read, a number that does not fit
 *   newc's 32-bit fields, or an output stream that fails or closes early.
 * @throws InterruptedError when `options.signal` fires; checked between entries.
 */
export async function writeCpio(
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  out: Writable,
  options: ArchiveOptions,
): Promise<ArchiveSummary> {
  if (!Number.isInteger(options.mtime) || options.mtime < 0 || options.mtime > FIELD_MAX) {
    throw new Error(`cpio mtime must be an integer 0-${FIELD_MAX}, got ${options.mtime}`);
  }
  const ordered = await orderImageEntries(entries);
  const sink = new OutputSink(out);
  try {
    let ino = 0;
    for (const entry of ordered) {
      throwIfAborted(options.signal);
      ino += 1;
      await writeEntry(sink, entry, ino, options.mtime);
    }
    const trailer = encodeHeader(
      { ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 0, rdevmajor: 0, rdevminor: 0 },
      TRAILER_NAME,
    );
    const end = sink.bytes + trailer.length;
    await sink.write(Buffer.concat([trailer, Buffer.alloc(padding(end, ARCHIVE_BLOCK))]));
    return { entries: ordered.length, bytes: sink.bytes };
  } finally {
    sink.release();
  }
}

async function writeEntry(sink: OutputSink, entry: ImageEntry, ino: number, mtime: number): Promise<void> {
  const owner = { ino, mtime, uid: entry.uid ?? 0, gid: entry.gid ?? 0 };
  const name = archiveName(entry);
  switch (entry.type) {
    case 'dir':
      await sink.write(encodeHeader({ ...owner, mode: S_IFDIR | entry.mode, nlink: 2, filesize: 0, rdevmajor: 0, rdevminor: 0 }, name));
      return;
    case 'char':
      await sink.write(
        encodeHeader({ ...owner, mode: S_IFCHR | entry.mode, nlink: 1, filesize: 0, rdevmajor: entry.major, rdevminor: entry.minor }, name),
      );
      return;
    case 'symlink': {
      // newc keeps a symlink's target as its file data, without a NUL.
      const target = Buffer.from(entry.target, 'utf8');
      const header = encodeHeader({ ...owner, mode: S_IFLNK | 0o777, nlink: 1, filesize: target.length, rdevmajor: 0, rdevminor: 0 }, name);
      await sink.write(Buffer.concat([header, target, Buffer.alloc(padding(target.length, 4))]));
      return;
    }
    case 'file': {
      const data = await openFileData(entry);
      if (data.size > FIELD_MAX) throw new Error(`${entry.path}: ${data.size} bytes is too large for a newc cpio archive (4 GiB max)`);
      await sink.write(encodeHeader({ ...owner, mode: S_IFREG | entry.mode, nlink: 1, filesize: data.size, rdevmajor: 0, rdevminor: 0 }, name));
      for await (const chunk of data.chunks()) await sink.write(chunk);
      const pad = padding(data.size, 4);
      if (pad > 0) await sink.write(Buffer.alloc(pad));
      return;
    }
  }
}

/** The header, the NUL-terminated name, and the zeros that bring both to a 4-byte boundary. */
function encodeHeader(header: NewcHeader, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const namesize = nameBytes.length + 1;
  const fields = [
    header.ino,
    header.mode,
    header.uid,
    header.gid,
    header.nlink,
    header.mtime,
    header.filesize,
    0, // devmajor: the build host's device says nothing about the image
    0, // devminor
    header.rdevmajor,
    header.rdevminor,
    namesize,
    0, // check: only the "070702" variant uses it
  ];
  const text = NEWC_MAGIC + fields.map((value) => value.toString(16).toUpperCase().padStart(8, '0')).join('');
  const length = HEADER_LENGTH + namesize;
  const buffer = Buffer.alloc(length + padding(length, 4));
  buffer.write(text, 0, 'latin1');
  nameBytes.copy(buffer, HEADER_LENGTH);
  return buffer;
}

function padding(length: number, alignment: number): number {
  return (alignment - (length % alignment)) % alignment;
}
