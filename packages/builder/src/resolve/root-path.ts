import { posix } from 'node:path';
import type { RootNode, RootView } from './root-view.js';

/** A path resolved inside the root: where it really is, and each symlink passed on the way. */
export interface ResolvedPath {
  /** The path with every symlink resolved; the node itself need not exist (see `node`). */
  path: string;
  node: RootNode | undefined;
  /** Symlinks traversed, in order, as they are in the root: the image needs them too. */
  links: { path: string; target: string }[];
}

const MAX_LINKS = 40;

/**
 * Resolves `path` the way the kernel would inside a chroot at the root:
 * absolute symlink targets start again at the root, ".." stops at it. The
 * result lists the symlinks crossed (/lib64 -> usr/lib64, and
 * /usr/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...) because a
 * program asks for the path it knows, not the real one.
 */
export async function resolveInRoot(view: RootView, path: string, cache?: Map<string, string>): Promise<ResolvedPath> {
  const links: { path: string; target: string }[] = [];
  let pending = splitPath(path);
  let current: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      current.pop();
      continue;
    }
    const candidate = `/${[...current, part].join('/')}`;
    // Directory prefixes repeat across thousands of paths: reuse their resolution.
    const known = pending.length > 0 ? cache?.get(candidate) : undefined;
    if (known !== undefined) {
      current = splitPath(known);
      continue;
    }
    const node = await view.lstat(candidate);
    if (node?.kind === 'symlink') {
      if (++hops > MAX_LINKS) return { path: candidate, node: undefined, links };
      links.push({ path: candidate, target: node.target });
      // A relative target's ".." climbs from the link's directory (normalizing it as an absolute path would drop them).
      const targetParts = node.target.startsWith('/') ? splitPath(node.target) : node.target.split('/').filter((p) => p !== '' && p !== '.');
      pending = [...targetParts, ...pending];
      if (node.target.startsWith('/')) current = [];
      continue;
    }
    current.push(part);
    if (node === undefined) {
      // Nothing below a missing component exists either.
      const rest = pending.filter((p) => p !== '..');
      return { path: `/${[...current, ...rest].join('/')}`, node: undefined, links };
    }
    if (pending.length > 0) cache?.set(candidate, `/${current.join('/')}`);
    if (pending.length === 0) return { path: `/${current.join('/')}`, node, links };
  }
  const real = `/${current.join('/')}`;
  return { path: real, node: await view.lstat(real), links };
}

function splitPath(path: string): string[] {
  return posix
    .normalize(`/${path}`)
    .split('/')
    .filter((p) => p !== '' && p !== '.');
}
