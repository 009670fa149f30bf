/**
 * One entry of an image's root filesystem, as the pack step writes it.
 * Paths are absolute inside the image ("/usr/sbin/nginx"). The packers write
 * uid/gid 0 unless an entry says otherwise, and one fixed mtime for all.
 */
export type ImageEntry = ImageDirectory | ImageFile | ImageSymlink | ImageCharDevice;

interface Ownership {
  /** Defaults to 0. */
  uid?: number;
  /** Defaults to 0. */
  gid?: number;
}

export interface ImageDirectory extends Ownership {
  type: 'dir';
  path: string;
  /** Permission bits only (0o755), no file-type bits. */
  mode: number;
}

export interface ImageFile extends Ownership {
  type: 'file';
  path: string;
  mode: number;
  /** Where the bytes come from: a file on the host (the mounted install root), or bytes made by tinyx. */
  source: { path: string } | { content: Uint8Array };
}

export interface ImageSymlink extends Ownership {
  type: 'symlink';
  path: string;
  target: string;
}

export interface ImageCharDevice extends Ownership {
  type: 'char';
  path: string;
  mode: number;
  major: number;
  minor: number;
}
