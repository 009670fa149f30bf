/**
 * tmpfiles.d(5) lines, as data: the directories and links a package expects
 * at boot (`d /run/haproxy 2775 haproxy haproxy -`). Pure.
 */
export interface TmpfilesEntry {
  type: 'd' | 'L';
  path: string;
  /** Directories: the mode (default 0755). */
  mode: number;
  user: string;
  group: string;
  /** L: the link's target. */
  target: string | undefined;
  /** "FILE:LINE", for the manifest's reasons. */
  from: string;
}

const SIMPLE_SPECIFIERS: Record<string, string> = { '%': '%', t: '/run', S: '/var/lib', C: '/var/cache', L: '/var/log', T: '/tmp', V: '/var/tmp', E: '/etc' };

/**
 * The d, D (a directory emptied at boot: the same thing in a fresh image), v,
 * q, Q (subvolumes: directories here) and L lines of one tmpfiles.d file.
 * Other types (f, w, z, x, r, ...) change files at boot and are skipped; so
 * are lines with a specifier that needs the running system.
 */
export function parseTmpfiles(text: string, file: string): TmpfilesEntry[] {
  const entries: TmpfilesEntry[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    const type = fields[0]!.replace(/[!\-=~^+]+$/, '');
    if (!['d', 'D', 'v', 'q', 'Q', 'L'].includes(type)) continue;
    let unknown = false;
    const path = (fields[1] ?? '').replace(/%(.)/g, (_, c: string) => SIMPLE_SPECIFIERS[c] ?? ((unknown = true), ''));
    if (unknown || !path.startsWith('/')) continue;
    const dash = (v: string | undefined): string | undefined => (v === undefined || v === '-' ? undefined : v);
    const modeText = dash(fields[2])?.replace(/^[~:]+/, '');
    const mode = modeText && /^[0-7]{3,4}$/.test(modeText) ? parseInt(modeText, 8) : 0o755;
    const from = `${file}:${i + 1}`;
    const user = dash(fields[3])?.replace(/^:/, '') ?? 'root';
    const group = dash(fields[4])?.replace(/^:/, '') ?? user;
    if (type === 'L') {
      const target = dash(fields.slice(6).join(' ') || undefined);
      entries.push({ type: 'L', path, mode: 0o777, user: 'root', group: 'root', target, from });
    } else {
      entries.push({ type: 'd', path, mode, user, group, target: undefined, from });
    }
  }
  return entries;
}
