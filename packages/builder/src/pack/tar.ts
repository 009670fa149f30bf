import type { Writable } from 'node:stream';
import tar from 'tar-stream';
import { throwIfAborted } from '../errors.js';
import type { ImageEntry } from '../image-tree.js';
import { archiveName, openFileData, orderImageEntries, type ArchiveOptions, type ArchiveSummary } from './archive-entries.js';
import { OutputSink } from './output-sink.js';

// tar-stream writes uid, gid and device numbers as 6 octal digits and silently
// saturates anything larger, so refuse such values instead of writing wrong ones.
const OCTAL6_MAX = 0o777777;
// tar-stream truncates the mtime with `| 0`, i.e. to a signed 32-bit number.
const MTIME_MAX = 0x7fffffff;

// File-type bits. tar-stream keeps only mode & 0o7777 in the header, but it
// replaces a mode of 0 with its default 0644/0755; with the type bits set the
// mode is never 0, so a 0000 file stays 0000.
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** What `pack.entry()` takes; tar-stream's typings do not export it. */
type TarHeader = Partial<tar.Header> & Pick<tar.Header, 'name'>;
/** tar-stream's entry stream: a streamx Writable, not a Node one. */
type TarSink = ReturnType<tar.Pack['entry']>;

/**
 * Writes the entries as a POSIX ustar archive (with pax headers for names
 * ustar cannot hold), through tar-stream.
 *
 * Same contract as {@link writeCpio}: sorted entries with implicit parents,
 * numeric owners only (uname and gname empty, so an extracting tar never maps
 * names to the build host's ids), every mtime `options.mtime`, directories
 * named with a trailing "/" as GNU tar writes them. `out` is not ended.
 *
 * @throws Error for a duplicate or malformed entry, a host file that is not a
 *   regular file or changes size while being read, a uid, gid or device
 *   number above 0o777777, or an output stream that fails or closes early.
 * @throws InterruptedError when `options.signal` fires; checked between entries.
 */
export async function writeTar(
  entries: Iterable<ImageEntry> | AsyncIterable<ImageEntry>,
  out: Writable,
  options: ArchiveOptions,
): Promise<ArchiveSummary> {
  if (!Number.isInteger(options.mtime) || options.mtime < 0 || options.mtime > MTIME_MAX) {
    throw new Error(`tar mtime must be an integer 0-${MTIME_MAX}, got ${options.mtime}`);
  }
  const mtime = new Date(options.mtime * 1000);
  const ordered = await orderImageEntries(entries);
  // Before the first byte, so that a bad entry does not leave half an archive behind.
  for (const entry of ordered) checkHeaderLimits(entry);

  const pack = tar.pack();
  // Heard through the iteration below; without a listener streamx's 'error' would crash the process.
  pack.on('error', () => {});
  const sink = new OutputSink(out);
  let outputError: unknown;
  const copying = (async () => {
    // tar-stream only ever pushes Buffers; its typings say unknown.
    for await (const chunk of pack) await sink.write(chunk as Uint8Array);
  })().catch((error: unknown) => {
    outputError = error;
    // Wakes the producer if it is waiting for an entry to drain.
    pack.destroy(error instanceof Error ? error : new Error(String(error)));
  });

  try {
    for (const entry of ordered) {
      throwIfAborted(options.signal);
      await addEntry(pack, entry, mtime);
    }
    pack.finalize();
    await copying;
    if (outputError !== undefined) throw outputError;
    return { entries: ordered.length, bytes: sink.bytes };
  } catch (error) {
    pack.destroy(error instanceof Error ? error : new Error(String(error)));
    await copying;
    // When the output failed first, the producer only saw the pack being torn down.
    throw outputError ?? error;
  } finally {
    sink.release();
  }
}

async function addEntry(pack: tar.Pack, entry: ImageEntry, mtime: Date): Promise<void> {
  const common = { name: archiveName(entry), uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime, uname: '', gname: '' };

  switch (entry.type) {
    case 'dir':
      await addBodiless(pack, { ...common, name: `${common.name}/`, type: 'directory', mode: S_IFDIR | entry.mode });
      return;
    case 'symlink':
      await addBodiless(pack, { ...common, type: 'symlink', mode: S_IFLNK | 0o777, linkname: entry.target });
      return;
    case 'char':
      await addBodiless(pack, {
        ...common,
        type: 'character-device',
        mode: S_IFCHR | entry.mode,
        devmajor: entry.major,
        devminor: entry.minor,
      });
      return;
    case 'file': {
      const data = await openFileData(entry);
      const { sink, done } = startEntry(pack, { ...common, type: 'file', mode: S_IFREG | entry.mode, size: data.size });
      for await (const chunk of data.chunks()) {
        if (!sink.write(chunk)) await drained(sink);
      }
      sink.end(undefined); // streamx's typings insist on an argument
      await done;
      return;
    }
  }
}

async function addBodiless(pack: tar.Pack, header: TarHeader): Promise<void> {
  await startEntry(pack, header).done;
}

/** Opens an entry in the pack; `done` settles when tar-stream has written all of it, or failed. */
function startEntry(pack: tar.Pack, header: TarHeader): { sink: TarSink; done: Promise<void> } {
  let settle: (error?: Error | null) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  // The caller may throw before awaiting `done` (a file changed size); the error it throws is the one that matters.
  done.catch(() => {});
  const sink = pack.entry(header, (error) => settle(error));
  // streamx emits 'error' when the pack is torn down, and an unheard 'error' would
  // crash the process; the same error reaches us through the callback above.
  sink.on('error', () => {});
  return { sink, done };
}

function drained(sink: TarSink): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const settle = (error?: Error): void => {
      sink.off('drain', onDrain);
      sink.off('error', onError);
      sink.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = (): void => settle();
    const onError = (error: Error): void => settle(error);
    const onClose = (): void => settle(new Error('the tar entry closed before its data was written'));
    sink.on('drain', onDrain);
    sink.on('error', onError);
    sink.on('close', onClose);
  });
}

function checkHeaderLimits(entry: ImageEntry): void {
  checkOctal6(entry.path, 'uid', entry.uid ?? 0);
  checkOctal6(entry.path, 'gid', entry.gid ?? 0);
  if (entry.type === 'char') {
    checkOctal6(entry.path, 'major', entry.major);
    checkOctal6(entry.path, 'minor', entry.minor);
  }
}

function checkOctal6(path: string, field: string, value: number): void {
  if (value > OCTAL6_MAX) throw new Error(`${path}: ${field} ${value} is too large for this tar writer (max ${OCTAL6_MAX})`);
}
