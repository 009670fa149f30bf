import { run } from '@tinyx/image';
import type { ImageEntry } from '../image-tree.js';
import { removeTree } from '../mounts.js';
import type { ArchiveOptions } from './archive-entries.js';
import { writeEntries } from './tree.js';

/**
 * The filesystem UUID of every tinyx erofs image: fixed, so that the same
 * entries give the same bytes (mkfs.erofs draws a random one otherwise). The
 * guest finds its root by device (root=/dev/vda), never by UUID.
 */
export const EROFS_UUID = '7e5d4c3b-2a19-4f08-9e7d-6c5b4a392817';

/**
 * Writes the entries as an uncompressed erofs image into `file` (which must
 * not exist): the entries are written out as a tree beside it (owners, modes,
 * /dev/console), then mkfs.erofs makes the image with one timestamp for every
 * inode and the fixed UUID, without extended attributes (-x-1: nothing of the
 * host's labels gets in). SOURCE_DATE_EPOCH is taken out of its environment:
 * mkfs.erofs reads it too, and with it set (to any value, even with -T) gives
 * every inode the 64-byte layout, so the same entries made other bytes in a
 * shell that exported it (the build's own time comes from it already, as -T).
 * The tree is removed on every path.
 *
 * Uncompressed on purpose: every VM of the image then shares the file's pages
 * in the host's page cache as they are, and the guest decompresses nothing.
 */
export async function writeErofs(entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>, file: string, options: ArchiveOptions): Promise<{ entries: number }> {
  const tree = `${file}.tree`;
  try {
    const count = await writeEntries(entries, tree, { devices: true, signal: options.signal });
    await run('mkfs.erofs', ['--quiet', '-x-1', `-T${options.mtime}`, `-U${EROFS_UUID}`, file, tree], { signal: options.signal, env: { SOURCE_DATE_EPOCH: undefined } });
    return { entries: count };
  } finally {
    await removeTree(tree);
  }
}
