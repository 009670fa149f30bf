import { TinyxError } from '../errors.js';

/** One line of dpkg-statoverride's database: the owner and mode dpkg gives a path whatever its package says. */
export interface StatOverride {
  /** An account name, or `#UID` for a numeric one. */
  user: string;
  /** A group name, or `#GID`. */
  group: string;
  /** Permission bits, as dpkg applies them. */
  mode: number;
  path: string;
}

/**
 * Parses `/var/lib/dpkg/statoverride` (`USER GROUP MODE PATH` per line, the
 * mode in octal), keyed by path. Maintainer scripts register overrides with
 * `dpkg-statoverride --update --add` to make a directory or a config file
 * belong to the daemon's account; dpkg applies them on every unpack. Throws
 * a TinyxError (`E_DPKG_STATOVERRIDE`) naming `source` and the line for a
 * malformed one.
 */
export function parseStatOverrides(text: string, source = 'dpkg statoverride'): Map<string, StatOverride> {
  const overrides = new Map<string, StatOverride>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    // The path is the rest of the line: dpkg allows spaces in it.
    const match = line.match(/^(\S+) (\S+) ([0-7]{1,5}) (\/.*)$/);
    if (!match) throw new TinyxError('E_DPKG_STATOVERRIDE', `${source}: line ${i + 1}: "${line}" is not "USER GROUP MODE PATH"`);
    const [, user, group, mode, path] = match;
    overrides.set(path!, { user: user!, group: group!, mode: parseInt(mode!, 8) & 0o7777, path: path! });
  });
  return overrides;
}
