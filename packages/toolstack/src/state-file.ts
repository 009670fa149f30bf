import { randomBytes } from 'node:crypto';
import { access, chmod, lstat, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { TinyxError } from '@tinyx/image';
import type { XenNic } from './store.js';
import type { Hotplug } from './xen/hotplug.js';

/**
 * A saved VM is two files: FILE (the state, written by QEMU or xl) and
 * FILE.json (what restore needs). `save` replaces them only when they are
 * absent or a state tinyx saved before (FILE.json parses as one); anything
 * else at either path is refused before the VM is touched. Both are written
 * under temporary names beside them and renamed into place, so an
 * interrupted save never leaves half a state under the user's name.
 */
export async function checkStateFile(file: string): Promise<void> {
  const path = resolve(file);
  const [state, meta] = await Promise.all([lstatOrUndefined(path), lstatOrUndefined(`${path}.json`)]);
  if (!state && !meta) return;
  const refuse = (what: string): never => {
    throw new TinyxError('E_STATE_FILE_NOT_OURS', `${file}: ${what}; tinyx save replaces only a state it saved`, {
      kind: 'user',
      hint: 'choose a new file name (or move what is there away yourself)',
    });
  };
  if (state && !state.isFile()) refuse(state.isDirectory() ? 'is a directory' : 'is not a regular file');
  if (!meta || !meta.isFile()) refuse(`exists, and ${file}.json is not a tinyx state description beside it`);
  if (!isSavedState(await readFile(`${path}.json`, 'utf8').catch(() => ''))) refuse(`${file}.json is not a state description tinyx wrote`);
}

/** FILE.json as a backend's save writes it: the image it came from and the machine's memory. */
export function isSavedState(text: string): boolean {
  try {
    const json = JSON.parse(text) as Record<string, unknown> | null;
    return !!json && typeof json === 'object' && typeof json.imageDir === 'string' && typeof json.memoryMiB === 'number';
  } catch {
    return false;
  }
}

/**
 * Writes FILE with `write(tempPath)` and FILE.json with `saved`, each under a
 * temporary name first, then renamed over whatever tinyx saved there before
 * (checkStateFile is called first, and the caller calls it before it pauses
 * the VM, so that a refusal leaves the VM as it was).
 */
export async function writeStateFile(file: string, write: (tempPath: string) => Promise<void>, saved: object): Promise<void> {
  await checkStateFile(file);
  const path = resolve(file);
  const temp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
  try {
    await write(temp);
    // It holds the guest's whole memory: for this user only.
    await chmod(temp, 0o600);
    await writeFile(`${temp}.json`, `${JSON.stringify(saved, null, 2)}\n`, { mode: 0o600 });
    await rename(temp, path);
    await rename(`${temp}.json`, `${path}.json`);
  } finally {
    await rm(temp, { force: true });
    await rm(`${temp}.json`, { force: true });
  }
}

async function lstatOrUndefined(path: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  return lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
}

/** What a QEMU VM's save writes to FILE.json. */
export interface SavedQemu {
  backend: 'qemu';
  imageDir: string;
  memoryMiB: number;
  vcpus: number;
  machine: 'microvm' | 'q35';
  /** A bridged VM's address and MAC: in its saved memory, so it comes back with them. */
  network?: { address: string; mac: string };
}

/** What a Xen domain's save writes to FILE.json. */
export interface SavedXen {
  backend: 'xen';
  id: string;
  imageDir: string;
  type: 'pvh' | 'pv';
  memoryMiB: number;
  vcpus: number;
  network: XenNic;
  hotplug?: Hotplug;
}

export type SavedState = SavedQemu | SavedXen;

/** FILE.json of a saved state, and which backend saved it (a file without `backend` is QEMU's, from an older tinyx). */
export async function readSavedState(file: string): Promise<SavedState> {
  try {
    await access(file);
    const text = await readFile(`${file}.json`, 'utf8');
    if (!isSavedState(text)) throw new Error('not a saved state');
    const saved = JSON.parse(text) as Partial<SavedState>;
    return { ...saved, backend: saved.backend ?? 'qemu' } as SavedState;
  } catch {
    throw new TinyxError('E_NO_SAVED_STATE', `${file} (and ${file}.json) is not a state saved by tinyx`, { kind: 'user', hint: 'save one with: tinyx save ID FILE' });
  }
}
