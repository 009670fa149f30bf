import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '@tinyx/image';

/** What the planner needs to know about one path of the install root. */
export type RootNode =
  | { kind: 'file'; mode: number; size: number; uid: number; gid: number }
  | { kind: 'dir'; mode: number; uid: number; gid: number }
  | { kind: 'symlink'; target: string }
  | { kind: 'other' };

/**
 * The planner's only window on the install root. The real one reads a mounted
 * directory and runs objdump; unit tests give one made of fixture texts.
 * Paths are absolute inside the root and are never followed outside it.
 */
export interface RootView {
  lstat(path: string): Promise<RootNode | undefined>;
  readDir(path: string): Promise<string[]>;
  /** `length` bytes at `offset` (fewer at the end of the file). */
  read(path: string, offset: number, length: number): Promise<Uint8Array>;
  /** The text `objdump -p` prints for the file. */
  objdump(path: string): Promise<string>;
}

/** A RootView over a directory on the host (the mounted OverlayFS of base + app layer). */
export class DirectoryRootView implements RootView {
  constructor(
    readonly root: string,
    private readonly signal?: AbortSignal,
  ) {}

  private host(path: string): string {
    return join(this.root, path);
  }

  async lstat(path: string): Promise<RootNode | undefined> {
    try {
      const st = await lstat(this.host(path));
      if (st.isSymbolicLink()) return { kind: 'symlink', target: await readlink(this.host(path)) };
      if (st.isFile()) return { kind: 'file', mode: st.mode & 0o7777, size: st.size, uid: st.uid, gid: st.gid };
      if (st.isDirectory()) return { kind: 'dir', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      return { kind: 'other' };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw error;
    }
  }

  async readDir(path: string): Promise<string[]> {
    return (await readdir(this.host(path))).sort();
  }

  async read(path: string, offset: number, length: number): Promise<Uint8Array> {
    const handle = await open(this.host(path), 'r');
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async objdump(path: string): Promise<string> {
    return (await run('objdump', ['-p', this.host(path)], { signal: this.signal })).stdout;
  }
}
