import { statfs } from 'node:fs/promises';
import { CommandFailedError, TinyxError } from './errors.js';

/** A place a build writes to, for the message when a disk fills up. */
export interface WritePlace {
  /** What it is: "the cache", "the output's directory". */
  label: string;
  path: string;
}

/**
 * A full disk as a named error (E_NO_SPACE, a host error: exit 3) instead of
 * Node's bare "ENOSPC: no space left on device, write", which names no path:
 * the message says which step and which of the build's places is fullest
 * (free bytes from statfs), the hint how to give it room. A tool that ran
 * out of space (debootstrap, apt-get, make) is recognised by its words.
 * Anything else is returned as it was.
 */
export async function asNoSpaceError(error: unknown, step: string, places: readonly WritePlace[], options: { lowSpaceBytes?: number } = {}): Promise<unknown> {
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const toolSaidSo = error instanceof CommandFailedError && /No space left on device|ENOSPC|Disk quota exceeded/i.test(error.outputTail);
  const free = await Promise.all(
    places.map(async (place) => {
      const fs = await statfs(place.path).catch(() => undefined);
      return { ...place, free: fs ? fs.bavail * fs.bsize : Number.POSITIVE_INFINITY };
    }),
  );
  const fullest = [...free].sort((a, b) => a.free - b.free)[0];
  // Some tools hide a full disk behind their own words (debootstrap: "Couldn't download ...Packages"):
  // a tool that failed while its work still filled the disk (lowSpaceBytes free or less) ran out of room.
  const nearlyFull = options.lowSpaceBytes !== undefined && error instanceof CommandFailedError && !!fullest && fullest.free <= options.lowSpaceBytes;
  if (errno !== 'ENOSPC' && errno !== 'EDQUOT' && !toolSaidSo && !nearlyFull) return error;
  const where = fullest && Number.isFinite(fullest.free) ? `: ${fullest.label} (${fullest.path}) has ${formatFree(fullest.free)} free` : '';
  const said = error instanceof CommandFailedError ? error.outputTail.trim().split('\n').pop()?.trim() : undefined;
  const tool = error instanceof CommandFailedError ? ` (${error.command.split(' ')[0]} failed${said ? `: ${said}` : ''})` : '';
  return new TinyxError('E_NO_SPACE', `no space left on the device during the ${step} step${where}${tool}`, {
    kind: 'host',
    hint: `free space there, or move it to a larger filesystem (TINYX_CACHE for the cache, --out for the image); what was being written has been removed`,
    cause: error,
  });
}

function formatFree(bytes: number): string {
  return bytes < 1024 * 1024 ? `${Math.round(bytes / 1024)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** How little room a disk has left, at a tool's failure, for the failure to be taken as a full disk. */
export const NEARLY_FULL_BYTES = 16 * 1024 * 1024;

/** Runs `work`; a failure while `dir` (where it writes) is full becomes E_NO_SPACE, measured before anything is removed. */
export async function failingForSpace<T>(step: string, place: WritePlace, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw await asNoSpaceError(error, step, [place], { lowSpaceBytes: NEARLY_FULL_BYTES });
  }
}
