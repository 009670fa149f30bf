import { posix } from 'node:path';

/**
 * What one run of an application did, read from the log of
 * `strace -f -yy -o LOG -- unshare --root=ROOT ... CMD`: the paths it reached
 * in the root (opened, executed, stat'ed), the paths it missed (ENOENT), the
 * system calls that succeeded, the socket families it opened and the ids it
 * switched to. Paths are absolute inside the root, as the program named them
 * (through symlinks: /etc/localtime, not the zoneinfo file it leads to).
 */
export interface TraceLog {
  /** Paths reached successfully, each with how and by which program first. */
  reached: Map<string, { how: 'opened' | 'executed' | 'stat' | 'directory'; by: string }>;
  /** Paths the program looked for and did not find (ENOENT), with the program. */
  missing: Map<string, string>;
  /** Paths the program tried to create or change on a read-only root (EROFS), with the program. */
  readOnly: Map<string, string>;
  /** Paths the program created or changed (opened for writing, made, removed, renamed, chmod'ed, a socket bound), with the program. */
  written: Map<string, string>;
  /** System calls that returned success, with how often. */
  syscalls: Map<string, number>;
  /** Socket address families opened successfully: AF_INET, AF_INET6, AF_UNIX, ... */
  families: Set<string>;
  /** User and group ids the program switched to (setuid, setresgid, setgroups, ...). */
  uids: Set<number>;
  gids: Set<number>;
}

/** Calls whose first (or, after a directory fd, second) argument is a path. */
const PATH_CALLS: Record<string, { at: boolean; how: 'opened' | 'executed' | 'stat' }> = {
  open: { at: false, how: 'opened' },
  creat: { at: false, how: 'opened' },
  openat: { at: true, how: 'opened' },
  openat2: { at: true, how: 'opened' },
  execve: { at: false, how: 'executed' },
  execveat: { at: true, how: 'executed' },
  stat: { at: false, how: 'stat' },
  lstat: { at: false, how: 'stat' },
  newfstatat: { at: true, how: 'stat' },
  statx: { at: true, how: 'stat' },
  access: { at: false, how: 'stat' },
  faccessat: { at: true, how: 'stat' },
  faccessat2: { at: true, how: 'stat' },
  readlink: { at: false, how: 'stat' },
  readlinkat: { at: true, how: 'stat' },
  chdir: { at: false, how: 'stat' },
};

/** Calls that change the path they name first (after a directory fd for the *at ones), when they succeed. */
const WRITE_CALLS: Record<string, { at: boolean }> = {
  mkdir: { at: false },
  mkdirat: { at: true },
  rmdir: { at: false },
  unlink: { at: false },
  unlinkat: { at: true },
  rename: { at: false },
  renameat: { at: true },
  renameat2: { at: true },
  chmod: { at: false },
  fchmodat: { at: true },
  chown: { at: false },
  lchown: { at: false },
  fchownat: { at: true },
  truncate: { at: false },
  mknod: { at: false },
  mknodat: { at: true },
  utimensat: { at: true },
  utimes: { at: false },
};

/** An open that may write: what makes the file's directory need to be writable. */
const OPEN_FOR_WRITING = /\bO_(WRONLY|RDWR|CREAT|TRUNC|APPEND)\b/;

const UID_CALLS = new Set(['setuid', 'setreuid', 'setresuid', 'setfsuid']);
const GID_CALLS = new Set(['setgid', 'setregid', 'setresgid', 'setfsgid']);

/** `PID  name(args) = result` once unfinished/resumed halves are joined. */
const CALL_LINE = /^(\d+)\s+([a-z_0-9]+)\((.*)\)\s+=\s+(.*)$/;

/**
 * Reads a strace log. `root` is the host path of the root the program ran in
 * (annotations like `3</ROOT/usr/lib/x.so>` are host paths); `startAfterExecs`
 * skips the first process's events up to and including its Nth successful
 * execve (the sandbox's own `unshare` before it runs the app: 2).
 */
export function parseStraceLog(text: string, root: string, startAfterExecs = 0): TraceLog {
  const log: TraceLog = { reached: new Map(), missing: new Map(), readOnly: new Map(), written: new Map(), syscalls: new Map(), families: new Set(), uids: new Set(), gids: new Set() };
  const wrote = (path: string | undefined, by: string): void => {
    if (path !== undefined && !log.written.has(path)) log.written.set(path, by);
  };
  const pending = new Map<string, string>();
  const program = new Map<string, string>();
  let firstPid: string | undefined;
  let execsSeen = 0;
  const prefix = root.endsWith('/') ? root.slice(0, -1) : root;
  const inRoot = (hostPath: string): string | undefined =>
    hostPath === prefix ? '/' : hostPath.startsWith(`${prefix}/`) ? hostPath.slice(prefix.length) : undefined;

  for (const raw of text.split('\n')) {
    let line = raw;
    const unfinished = line.match(/^(\d+)\s+(.*) <unfinished \.\.\.>$/);
    if (unfinished) {
      pending.set(unfinished[1]!, unfinished[2]!);
      continue;
    }
    const resumed = line.match(/^(\d+)\s+<\.\.\. [a-z_0-9]+ resumed>(.*)$/);
    if (resumed) {
      const start = pending.get(resumed[1]!);
      pending.delete(resumed[1]!);
      if (start === undefined) continue;
      line = `${resumed[1]} ${start}${resumed[2]}`;
    }
    const m = line.match(CALL_LINE);
    if (!m) continue;
    const [, pid, name, args, result] = m as unknown as [string, string, string, string, string];
    firstPid ??= pid;
    const ok = /^(0|[1-9]\d*|0x[0-9a-f]+)\b/.test(result) && !result.startsWith('-1');
    if (pid === firstPid && execsSeen < startAfterExecs) {
      if (name === 'execve' && ok && ++execsSeen === startAfterExecs) {
        const path = pathArgument(args, false, inRoot);
        if (path) {
          program.set(pid, path);
          log.reached.set(path, { how: 'executed', by: path });
        }
      }
      continue;
    }
    const by = program.get(pid) ?? program.get(firstPid) ?? '?';
    if (ok) log.syscalls.set(name, (log.syscalls.get(name) ?? 0) + 1);
    if (/^-1 EROFS\b/.test(result)) {
      // Any call that writes a path (open for writing, mkdir, unlink, rename, chmod...): its first path.
      const path = pathArgument(args, /at2?$/.test(name), inRoot);
      if (path !== undefined && !log.readOnly.has(path)) log.readOnly.set(path, by);
      continue;
    }

    const pathCall = PATH_CALLS[name];
    if (pathCall) {
      const path = pathArgument(args, pathCall.at, inRoot);
      if (path === undefined) continue;
      if (ok) {
        if (name.startsWith('exec')) program.set(pid, path);
        const how = pathCall.how === 'opened' && /\bO_DIRECTORY\b/.test(args) ? 'directory' : pathCall.how;
        if (!log.reached.has(path) || how === 'executed') log.reached.set(path, { how, by: name.startsWith('exec') ? path : by });
        if (name === 'creat' || (pathCall.how === 'opened' && OPEN_FOR_WRITING.test(args))) wrote(path, by);
      } else if (/ENOENT/.test(result) && !log.missing.has(path)) {
        log.missing.set(path, by);
      }
      continue;
    }
    if (!ok) continue;
    const writeCall = WRITE_CALLS[name];
    if (writeCall) {
      wrote(pathArgument(args, writeCall.at, inRoot), by);
      continue;
    }
    if (name === 'bind') {
      // A Unix socket with a name in the filesystem (not an abstract one, @...): a file made in its directory.
      const socket = args.match(/sa_family=AF_UNIX, sun_path="((?:[^"\\]|\\.)*)"/)?.[1];
      if (socket) wrote(posix.resolve('/', unescapeC(socket)), by);
      continue;
    }
    if (name === 'socket') {
      const family = args.match(/^(AF_[A-Z0-9]+)/)?.[1];
      if (family) log.families.add(family);
    } else if (UID_CALLS.has(name)) {
      for (const id of numbers(args)) if (id !== 4294967295) log.uids.add(id);
    } else if (GID_CALLS.has(name)) {
      for (const id of numbers(args)) if (id !== 4294967295) log.gids.add(id);
    } else if (name === 'setgroups') {
      for (const id of numbers(args.replace(/^\d+,\s*/, ''))) log.gids.add(id);
    }
  }
  return log;
}

/** The path a call names, absolute inside the root; undefined when it lies outside it or is not given. */
function pathArgument(args: string, at: boolean, inRoot: (hostPath: string) => string | undefined): string | undefined {
  let rest = args;
  let base = '/';
  if (at) {
    // The directory fd, decoded by -y: AT_FDCWD</ROOT/etc/lighttpd> or 5</ROOT/usr/lib>.
    const dirfd = rest.match(/^(?:AT_FDCWD|\d+)(?:<([^>]*)>)?,\s*/);
    if (!dirfd) return undefined;
    if (dirfd[1] !== undefined) {
      const dir = inRoot(dirfd[1]);
      if (dir === undefined) return undefined;
      base = dir;
    }
    rest = rest.slice(dirfd[0].length);
  }
  const literal = rest.match(/^"((?:[^"\\]|\\.)*)"(\.\.\.)?/);
  if (!literal || literal[2]) return undefined;
  const path = unescapeC(literal[1]!);
  if (path === '') return undefined;
  return posix.resolve(base, path);
}

function unescapeC(text: string): string {
  return text.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_m, esc: string) => {
    if (esc.startsWith('x')) return String.fromCharCode(parseInt(esc.slice(1), 16));
    if (/^[0-7]/.test(esc)) return String.fromCharCode(parseInt(esc, 8));
    return ({ n: '\n', t: '\t', r: '\r', v: '\v', f: '\f' } as Record<string, string>)[esc] ?? esc;
  });
}

function numbers(text: string): number[] {
  return [...text.matchAll(/\b(\d+)\b/g)].map((m) => Number(m[1]));
}
