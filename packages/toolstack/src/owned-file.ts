import { randomBytes } from 'node:crypto';
import { lstat, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { TinyxError } from '@tinyx/image';

/**
 * A file tinyx writes at a path the user names (a timeline picture, an
 * exported domain or manifest), known by how it begins: tinyx replaces what
 * is there only when it begins so, and refuses a file it did not write, a
 * directory, or anything else.
 */
export interface OwnedFile {
  /** The option that names the file, for the error: `--profile-svg`, `--out`. */
  option: string;
  /** What every file of this kind begins with, and no file of the user's. */
  start: string;
  /** What tinyx writes there, for the error: "a timeline it drew". */
  what: string;
}

export async function checkOwnedFile(file: string, kind: OwnedFile): Promise<void> {
  const path = resolve(file);
  const found = await lstat(path).catch(() => undefined);
  if (!found) return;
  const refuse = (problem: string): never => {
    throw new TinyxError('E_OUTPUT_NOT_OURS', `${kind.option} ${file}: ${problem}; tinyx replaces only ${kind.what}`, {
      kind: 'user',
      hint: 'choose a new file name (or move what is there away yourself)',
    });
  };
  if (!found.isFile()) refuse(found.isDirectory() ? 'is a directory' : 'is not a regular file');
  const head = await readFile(path, 'utf8').then((t) => t.slice(0, kind.start.length), () => '');
  if (head !== kind.start) refuse('is a file tinyx did not write');
}

/** Writes the file under a temporary name beside it, then renames it over the file (checked again first). */
export async function writeOwnedFile(file: string, kind: OwnedFile, content: string): Promise<void> {
  if (!content.startsWith(kind.start)) throw new TinyxError('E_INTERNAL', `${kind.what} must begin with ${JSON.stringify(kind.start)}`);
  await checkOwnedFile(file, kind);
  const path = resolve(file);
  const temp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
  try {
    await writeFile(temp, content, { flag: 'wx' });
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
}
