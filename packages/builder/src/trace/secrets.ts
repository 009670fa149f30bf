import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { shellQuote } from '../assemble/init-script.js';
import { run } from '@tinyx/image';

/** A secret made for one image: its bytes, owner and mode, and the command that made it. */
export interface ImageSecret {
  path: string;
  content: Uint8Array;
  mode: number;
  uid: number;
  gid: number;
  madeBy: string;
}

/** How a kind of secret a package's install makes once is made again, for each image. */
interface SecretMaker {
  /** The secret's path (its private half). */
  pattern: RegExp;
  /** The command, run in the install root, that makes it (and `makes`) afresh. */
  argv: (path: string, match: RegExpMatchArray) => string[];
  /** Every file the command writes: the private half and what goes with it. */
  makes: (path: string) => string[];
}

/**
 * The secrets tinyx knows how to make per image. A package's postinst made
 * them once, in the install layer every image of the package shares (sshd's
 * host keys would be the same in every VM); the image gets new ones instead.
 */
const SECRET_MAKERS: readonly SecretMaker[] = [
  {
    pattern: /^\/etc\/ssh\/ssh_host_(rsa|ecdsa|ed25519)_key$/,
    argv: (path, m) => ['ssh-keygen', '-q', '-N', '', '-C', '', '-t', m[1]!, '-f', path],
    makes: (path) => [path, `${path}.pub`],
  },
  {
    // varnish's postinst: random bytes that varnishadm and varnishd share.
    pattern: /^\/etc\/varnish\/secret$/,
    argv: (path) => ['dd', 'if=/dev/urandom', `of=${path}`, 'bs=512', 'count=1', 'status=none'],
    makes: (path) => [path],
  },
  {
    pattern: /^\/etc\/ssl\/private\/ssl-cert-snakeoil\.key$/,
    argv: () => ['make-ssl-cert', 'generate-default-snakeoil', '--force-overwrite'],
    makes: (path) => [path, '/etc/ssl/certs/ssl-cert-snakeoil.pem'],
  },
];

/**
 * Whether a file the install made, that no package lists and not all may
 * read, is taken for a secret (made once, shared by every image of the
 * package: it must be made per image or left out). Secrets are
 * configuration (under /etc or /root) that looks like one: a known kind
 * (sshd's host keys, the snakeoil key, varnish's secret), a name that says
 * so (key, secret, token, password, credentials; .pem, .p12, .keytab), a PEM
 * private key, or binary bytes. Private text configuration is not
 * (PostgreSQL's pg_hba.conf, 0640 postgres), nor is a service's own state
 * elsewhere (mariadb's system tables under /var/lib/mysql): the image starts
 * with them as the install left them. `head` is the file's first bytes.
 */
export function looksSecret(path: string, head: Uint8Array): boolean {
  if (SECRET_MAKERS.some((maker) => maker.pattern.test(path))) return true;
  if (!/^\/(etc|root)\//.test(path)) return false;
  const name = path.slice(path.lastIndexOf('/') + 1);
  if (/(^|[._-])(keys?|secrets?|tokens?|passw(or)?ds?|credentials?|shadow)([._-]|$)|\.(pem|key|p12|pfx|jks|keytab)$/i.test(name)) return true;
  const text = Buffer.from(head).toString('latin1');
  return /PRIVATE KEY-----/.test(text) || head.includes(0);
}

/** How much of a file looksSecret reads. */
export const SECRET_HEAD_BYTES = 4096;

/** The paths a secret's maker writes, or undefined when tinyx knows no maker for it. */
export function secretFiles(path: string): string[] | undefined {
  for (const maker of SECRET_MAKERS) if (maker.pattern.test(path)) return maker.makes(path);
  return undefined;
}

/**
 * Makes each secret again in `root` (a writable copy of the install root):
 * the old files removed, the maker run there with chroot, the new files read
 * back with the owner and mode the install gave them. Secrets without a
 * maker are returned as `unknown`.
 */
export async function makeSecrets(root: string, paths: readonly string[], signal?: AbortSignal): Promise<{ made: ImageSecret[]; unknown: string[] }> {
  const made: ImageSecret[] = [];
  const unknown: string[] = [];
  const done = new Set<string>();
  for (const path of paths) {
    if (done.has(path)) continue;
    const maker = SECRET_MAKERS.find((m) => m.pattern.test(path));
    if (!maker) {
      unknown.push(path);
      continue;
    }
    const files = maker.makes(path);
    const before = await Promise.all(files.map((f) => stat(join(root, f)).catch(() => undefined)));
    for (const f of files) await rm(join(root, f), { force: true });
    const argv = maker.argv(path, path.match(maker.pattern)!);
    await run('chroot', [root, ...argv], { signal });
    for (const [i, f] of files.entries()) {
      const after = await stat(join(root, f));
      const was = before[i] ?? after;
      made.push({ path: f, content: await readFile(join(root, f)), mode: was.mode & 0o7777, uid: was.uid, gid: was.gid, madeBy: argv.map(shellQuote).join(' ') });
      done.add(f);
    }
  }
  return { made, unknown };
}
