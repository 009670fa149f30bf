import { parseGroup, parsePasswd } from '../account-files.js';
import { TinyxError } from '../errors.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
  /** Its home directory, as passwd has it: the app's $HOME when it runs as this account. */
  home?: string;
}

/** An account asked for by name, and why. */
export interface AccountWish {
  name: string;
  reason: string;
}

export interface AccountsRequest {
  /** Users asked for by name (the recipe's, the install's): each must exist in the install root. */
  users: readonly AccountWish[];
  /** Groups asked for by name (the install's). */
  groups?: readonly AccountWish[];
  /**
   * Owners of the image's entries: an owner the install root has an account
   * for keeps it, so that the ownership holds in the image (lighttpd's
   * /var/log/lighttpd is www-data's, redis's log directory is group adm's).
   */
  owners?: readonly { path: string; uid: number; gid: number }[];
}

export interface ImageAccounts {
  passwd: string;
  group: string;
  /** The users kept, by name, for ownership and for /init. */
  users: Map<string, Account>;
  /** Every user and group kept, with why: for the manifest. */
  kept: { users: (Account & { reason: string })[]; groups: { name: string; gid: number; reason: string }[] };
}

/**
 * The /etc/passwd and /etc/group of the image: root, nobody (the account a
 * daemon drops to when told nothing else: `memcached -u nobody`), the
 * accounts asked for by name (the application's, those the install added for
 * it), the owners of the image's files and directories, and the primary
 * groups of them all, copied from the install root (where the packages'
 * postinst created them). Nothing else: the base's other accounts stay out.
 * Shells become /sbin/nologin: nobody logs in to a single-application VM.
 * /etc/shadow stays out too: system accounts have no password, and nothing in
 * the image authenticates a user. A kept group keeps those of its members
 * that are kept.
 */
export function selectAccounts(passwdText: string, groupText: string, request: AccountsRequest, source: string): ImageAccounts {
  const passwd = parsePasswd(passwdText);
  const groups = parseGroup(groupText);
  const users = new Map<string, Account>();
  const userReasons = new Map<string, string>();
  const groupReasons = new Map<number, string>([[0, 'root']]);
  const keepUser = (entry: (typeof passwd)[number], reason: string): void => {
    if (users.has(entry.name)) return;
    users.set(entry.name, { name: entry.name, uid: entry.uid, gid: entry.gid, home: entry.home });
    userReasons.set(entry.name, reason);
    if (!groupReasons.has(entry.gid)) groupReasons.set(entry.gid, `the group of ${entry.name}`);
  };

  const always: AccountWish[] = [{ name: 'root', reason: 'root' }];
  if (passwd.some((p) => p.name === 'nobody')) always.push({ name: 'nobody', reason: 'the account daemons drop to when told nothing else' });
  for (const { name, reason } of [...always, ...request.users]) {
    const entry = passwd.find((p) => p.name === name);
    if (!entry) {
      throw new TinyxError('E_NO_ACCOUNT', `${source}: the account "${name}" does not exist in the install root's /etc/passwd`, {
        kind: 'user',
        hint: `accounts there: ${passwd.map((p) => p.name).join(', ')}; a package's postinst usually creates the account its daemon runs as`,
      });
    }
    keepUser(entry, reason);
  }
  for (const { name, reason } of request.groups ?? []) {
    const entry = groups.find((g) => g.name === name);
    if (entry && !groupReasons.has(entry.gid)) groupReasons.set(entry.gid, reason);
  }
  const owners = [...(request.owners ?? [])].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const owner of owners) {
    const user = passwd.find((p) => p.uid === owner.uid);
    if (user) keepUser(user, `owner of ${owner.path}`);
    if (!groupReasons.has(owner.gid) && groups.some((g) => g.gid === owner.gid)) groupReasons.set(owner.gid, `group of ${owner.path}`);
  }

  const passwdLines = [...users.values()].map((u) => {
    const entry = passwd.find((p) => p.name === u.name)!;
    return [entry.name, 'x', entry.uid, entry.gid, entry.gecos, entry.home, '/sbin/nologin'].join(':');
  });
  // In the group file's order, with the members that are kept accounts (postgres is in ssl-cert, whose
  // snakeoil key it reads); the others do not exist in the image.
  const keptGroups = groups.filter((g, i) => groupReasons.has(g.gid) && groups.findIndex((o) => o.gid === g.gid) === i);
  const groupLines = keptGroups.map((g) => [g.name, 'x', g.gid, g.members.filter((m) => users.has(m)).join(',')].join(':'));
  return {
    passwd: `${passwdLines.join('\n')}\n`,
    group: `${groupLines.join('\n')}\n`,
    users,
    kept: {
      users: [...users.values()].map((u) => ({ ...u, reason: userReasons.get(u.name)! })),
      groups: keptGroups.map((g) => ({ name: g.name, gid: g.gid, reason: groupReasons.get(g.gid)! })),
    },
  };
}
