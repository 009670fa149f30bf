import { TinyxError } from '../errors.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

export interface ImageAccounts {
  passwd: string;
  group: string;
  /** The accounts kept, by name, for ownership and for /init. */
  users: Map<string, Account>;
}

/**
 * The /etc/passwd and /etc/group of the image: root, nobody (the account a
 * daemon drops to when told nothing else: `memcached -u nobody`), plus only the
 * accounts the application runs as or switches to, with their primary groups,
 * copied from the install root (where the packages' postinst created them).
 * Shells become /sbin/nologin: nobody logs in to a single-application VM.
 */
export function selectAccounts(passwdText: string, groupText: string, wanted: readonly string[], source: string): ImageAccounts {
  const passwd = parseColonFile(passwdText);
  const groups = parseColonFile(groupText);
  const users = new Map<string, Account>();
  const passwdLines: string[] = [];
  const gids = new Set<number>([0]);
  const always = ['root', ...(passwd.some((f) => f[0] === 'nobody') ? ['nobody'] : [])];
  for (const name of [...always, ...wanted.filter((n) => !always.includes(n))]) {
    if (users.has(name)) continue;
    const fields = passwd.find((f) => f[0] === name);
    if (!fields) {
      throw new TinyxError('E_NO_ACCOUNT', `${source}: the account "${name}" does not exist in the install root's /etc/passwd`, {
        kind: 'user',
        hint: `accounts there: ${passwd.map((f) => f[0]).join(', ')}; a package's postinst usually creates the account its daemon runs as`,
      });
    }
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    users.set(name, { name, uid, gid });
    gids.add(gid);
    passwdLines.push([fields[0], 'x', uid, gid, fields[4] ?? '', fields[5] ?? '/', '/sbin/nologin'].join(':'));
  }
  const groupLines = groups
    .filter((f) => gids.has(Number(f[2])))
    // Supplementary members are dropped: only the kept accounts exist.
    .map((f) => [f[0], 'x', f[2], ''].join(':'));
  return { passwd: `${passwdLines.join('\n')}\n`, group: `${groupLines.join('\n')}\n`, users };
}

function parseColonFile(text: string): string[][] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => line.split(':'));
}
