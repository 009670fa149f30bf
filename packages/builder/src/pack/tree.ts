import { chmod, copyFile, lchown, mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '@tinyx/image';
import { throwIfAborted } from '../errors.js';
import type { ImageEntry } from '../image-tree.js';
import { orderImageEntries } from './archive-entries.js';

export interface TreeOptions {
  /** Make the character devices too (mknod): a filesystem image needs /dev/console; verify's root does not (it mounts a devtmpfs). */
  devices?: boolean;
  signal?: AbortSignal | undefined;
}

/**
 * Writes the image's entries into a directory, as the packers would: owners,
 * modes and links as listed, every missing parent as root's 0755. Entries
 * are checked and ordered as for an archive (orderImageEntries).
 */
export async function writeEntries(entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>, root: string, options: TreeOptions = {}): Promise<number> {
  const ordered = await orderImageEntries(entries);
  await mkdir(root, { recursive: true, mode: 0o755 });
  await chmod(root, 0o755);
  for (const entry of ordered) {
    throwIfAborted(options.signal);
    const host = join(root, entry.path);
    await mkdir(dirname(host), { recursive: true, mode: 0o755 });
    if (entry.type === 'symlink') {
      await symlink(entry.target, host);
      await lchown(host, entry.uid ?? 0, entry.gid ?? 0);
      continue;
    }
    if (entry.type === 'dir') await mkdir(host, { recursive: true });
    else if (entry.type === 'file') {
      if ('content' in entry.source) await writeFile(host, entry.source.content);
      else await copyFile(entry.source.path, host);
    } else if (options.devices) await run('mknod', ['-m', entry.mode.toString(8), host, 'c', String(entry.major), String(entry.minor)], { signal: options.signal });
    else continue;
    // chown first: it clears the set-id bits a chmod sets.
    await lchown(host, entry.uid ?? 0, entry.gid ?? 0);
    await chmod(host, entry.mode);
  }
  return ordered.length;
}
