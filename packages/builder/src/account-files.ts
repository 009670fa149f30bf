/**
 * /etc/passwd and /etc/group as fields: the planner compares the install
 * root's with the base's, and the assembler picks the image's lines from them.
 */

/** One /etc/passwd line. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

/** One /etc/group line (members are not kept: only the image's own accounts exist there). */
export interface GroupEntry {
  name: string;
  gid: number;
  /** Its supplementary members (the fourth field), by name. */
  members: string[];
}

export function parsePasswd(text: string): PasswdEntry[] {
  return colonLines(text)
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), gecos: f[4] ?? '', home: f[5] || '/', shell: f[6] ?? '' }));
}

export function parseGroup(text: string): GroupEntry[] {
  return colonLines(text)
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) }));
}

/** Names present in `after` and not in `before`, in `after`'s order: the accounts an install added. */
export function addedNames<T extends { name: string }>(before: readonly T[], after: readonly T[]): T[] {
  const known = new Set(before.map((e) => e.name));
  return after.filter((e) => !known.has(e.name));
}

function colonLines(text: string): string[][] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#') && !line.startsWith('+') && !line.startsWith('-'))
    .map((line) => line.split(':'));
}
