import { posix } from 'node:path';
import type { RootNode, RootView } from '@tinyx/builder/internals';

/** One path of a tree made in a test: a file's text (or bytes), a directory, a link, or an OverlayFS whiteout. */
export type MemoryEntry =
  | string
  | { file: string | Uint8Array; mode?: number; uid?: number; gid?: number }
  | { dir: true; mode?: number; uid?: number; gid?: number }
  | { link: string }
  | { whiteout: true };

export type MemoryTree = Record<string, MemoryEntry>;

/**
 * A RootView over a tree made in the test: files (0644 root unless said),
 * directories (0755 root; every parent of a listed path exists), links, and
 * whiteouts (character devices, as OverlayFS writes a deletion into its upper
 * directory). `objdump` is not asked for by the planners these trees serve.
 */
export function memoryRoot(tree: MemoryTree): RootView {
  const nodes = new Map<string, { node: RootNode; bytes?: Uint8Array }>();
  const children = new Map<string, Set<string>>();
  const ensureDir = (path: string): void => {
    if (path === '/' || nodes.has(path)) return;
    nodes.set(path, { node: { kind: 'dir', mode: 0o755, uid: 0, gid: 0 } });
    link(path);
  };
  const link = (path: string): void => {
    const parent = posix.dirname(path);
    ensureDir(parent);
    let set = children.get(parent);
    if (!set) children.set(parent, (set = new Set()));
    set.add(posix.basename(path));
  };
  for (const [path, entry] of Object.entries(tree)) {
    if (typeof entry === 'string' || 'file' in entry) {
      const spec = typeof entry === 'string' ? { file: entry } : entry;
      const bytes = typeof spec.file === 'string' ? Buffer.from(spec.file) : spec.file;
      nodes.set(path, { node: { kind: 'file', mode: spec.mode ?? 0o644, size: bytes.length, uid: spec.uid ?? 0, gid: spec.gid ?? 0 }, bytes });
    } else if ('dir' in entry) {
      nodes.set(path, { node: { kind: 'dir', mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0 } });
    } else if ('link' in entry) {
      nodes.set(path, { node: { kind: 'symlink', target: entry.link } });
    } else {
      nodes.set(path, { node: { kind: 'other' } });
    }
    link(path);
  }
  return {
    async lstat(path) {
      if (path === '/') return { kind: 'dir', mode: 0o755, uid: 0, gid: 0 };
      return nodes.get(path)?.node;
    },
    async readDir(path) {
      return [...(children.get(path) ?? [])].sort();
    },
    async read(path, offset, length) {
      const bytes = nodes.get(path)?.bytes;
      if (!bytes) throw new Error(`memory root: ${path} is not a file`);
      return bytes.subarray(offset, offset + length);
    },
    async objdump(path) {
      throw new Error(`memory root: objdump -p ${path} is not part of this tree`);
    },
  };
}

/**
 * The two views planInstallMade reads: the app layer (what the install wrote,
 * whiteouts included) and the install root (base + layer as OverlayFS shows
 * them: the layer's entries win, a whiteout hides the base's).
 */
export function installRoots(base: MemoryTree, layer: MemoryTree): { layer: RootView; view: RootView } {
  const merged: MemoryTree = { ...base };
  for (const [path, entry] of Object.entries(layer)) {
    if (typeof entry === 'object' && 'whiteout' in entry) {
      for (const key of Object.keys(merged)) if (key === path || key.startsWith(`${path}/`)) delete merged[key];
    } else {
      merged[path] = entry;
    }
  }
  return { layer: memoryRoot(layer), view: memoryRoot(merged) };
}
