import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { posix } from 'node:path';
import type { ImageEntry, ImageFile } from '../image-tree.js';

/** What every archive writer (cpio, tar) takes besides the entries and the output stream. */
export interface ArchiveOptions {
  /** The one modification time of every entry, in seconds since the epoch: SOURCE_DATE_EPOCH. */
  mtime: number;
  /** Checked between entries; when it fires the writer throws InterruptedError. */
  signal?: AbortSignal;
}

/** What an archive writer reports once the archive is complete. */
export interface ArchiveSummary {
  /** Entries written, counting the implicit parent directories and not the end-of-archive marker. */
  entries: number;
  /** Length of the archive as written, before any compression. */
  bytes: number;
}

/** Permission bits of the directories an archive writer adds for parents that nobody listed. */
const IMPLICIT_DIR_MODE = 0o755;

/** Large enough to keep syscalls few, small enough that a multi-MB file never sits in memory whole. */
const READ_CHUNK = 256 * 1024;

/**
 * Collects, checks and orders the entries of an image for an archive writer.
 *
 * The result is sorted by the UTF-8 bytes of the path, so every parent comes
 * before its children and the same set of entries always gives the same
 * archive whatever order it arrived in. Every missing parent directory is
 * added (root:root, 0755), so the archive is complete on its own. The root
 * "/" is never part of the result: the kernel and tar both already have one.
 *
 * The whole input is read before anything is written because sorting needs
 * it; that holds only metadata, since file bytes are read later, one file at
 * a time.
 *
 * @throws Error when a path is not absolute and normal, appears twice, lies
 *   under a non-directory, or an entry has an out-of-range number.
 */
export async function orderImageEntries(
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
): Promise<ImageEntry[]> {
  const byPath = new Map<string, ImageEntry>();
  for await (const entry of entries) {
    checkEntry(entry);
    if (entry.path === '/') {
      if (entry.type !== 'dir') throw new Error(`image entry "/" must be a directory, not a ${entry.type}`);
      continue;
    }
    if (byPath.has(entry.path)) throw new Error(`duplicate image entry: ${entry.path}`);
    byPath.set(entry.path, entry);
  }

  for (const path of [...byPath.keys()]) {
    for (let parent = posix.dirname(path); parent !== '/'; parent = posix.dirname(parent)) {
      const existing = byPath.get(parent);
      if (existing) {
        if (existing.type !== 'dir') {
          throw new Error(`image entry ${path} lies under ${parent}, which is a ${existing.type}, not a directory`);
        }
        // Its own ancestors are checked (or were added) when the loop reaches it.
        break;
      }
      byPath.set(parent, { type: 'dir', path: parent, mode: IMPLICIT_DIR_MODE });
    }
  }

  return [...byPath.values()]
    .map((entry) => ({ entry, key: Buffer.from(entry.path, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map(({ entry }) => entry);
}

/** The entry's name inside an archive: its path without the leading slash, as `find . | cpio` and tar write it. */
export function archiveName(entry: ImageEntry): string {
  return entry.path.slice(1);
}

/**
 * The bytes of a regular file entry, with their length known before the first
 * byte is read: archive headers carry the size ahead of the data.
 */
export interface FileData {
  size: number;
  /** Yields exactly `size` bytes, or throws if the file on disk no longer has that size. */
  chunks(): AsyncGenerator<Uint8Array>;
}

/**
 * Prepares to read a file entry's bytes. For a host file this takes its size
 * from lstat now and reads it when `chunks()` is iterated, checking that the
 * size did not change in between: a header already written with the old size
 * would otherwise make a corrupt archive.
 *
 * @throws Error when the host path is not a regular file (a symlink, a FIFO
 *   that would block, a directory).
 */
export async function openFileData(entry: ImageFile): Promise<FileData> {
  const source = entry.source;
  if ('content' in source) {
    const content = source.content;
    return {
      size: content.byteLength,
      async *chunks() {
        if (content.byteLength > 0) yield content;
      },
    };
  }

  const hostPath = source.path;
  const stats = await lstat(hostPath);
  if (!stats.isFile()) throw new Error(`${entry.path}: source ${hostPath} is not a regular file`);
  const size = stats.size;
  return { size, chunks: () => readExactly(entry.path, hostPath, size) };
}

async function* readExactly(imagePath: string, hostPath: string, size: number): AsyncGenerator<Uint8Array> {
  // O_NOFOLLOW: if the path became a symlink since lstat, fail rather than pack whatever it points to.
  const handle = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let position = 0;
    while (position < size) {
      // A fresh buffer each time: the consumer may still hold the previous one in a stream's queue.
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - position));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) {
        throw new Error(`${imagePath}: source ${hostPath} shrank while being packed (${size} bytes expected, ${position} read)`);
      }
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
    const { bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, size);
    if (bytesRead !== 0) throw new Error(`${imagePath}: source ${hostPath} grew while being packed (${size} bytes expected)`);
  } finally {
    await handle.close();
  }
}

function checkEntry(entry: ImageEntry): void {
  const path = entry.path;
  const normal =
    path === '/' ||
    (path.startsWith('/') &&
      !path.includes('\0') &&
      path
        .slice(1)
        .split('/')
        .every((part) => part !== '' && part !== '.' && part !== '..'));
  if (!normal) throw new Error(`image entry path must be absolute and normal (no "//", ".", ".." or trailing "/"): ${JSON.stringify(path)}`);

  checkUint(path, 'uid', entry.uid ?? 0);
  checkUint(path, 'gid', entry.gid ?? 0);
  if (entry.type !== 'symlink') {
    if (!Number.isInteger(entry.mode) || entry.mode < 0 || entry.mode > 0o7777) {
      throw new Error(`${path}: mode must be permission bits 0-0o7777, got ${entry.mode}`);
    }
  }
  if (entry.type === 'char') {
    checkUint(path, 'major', entry.major);
    checkUint(path, 'minor', entry.minor);
  }
  if (entry.type === 'symlink' && (entry.target === '' || entry.target.includes('\0'))) {
    throw new Error(`${path}: symlink target must be non-empty and contain no NUL`);
  }
}

function checkUint(path: string, field: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new Error(`${path}: ${field} must be an integer 0-4294967295, got ${value}`);
  }
}
