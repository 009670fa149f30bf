import type { KernelFeature } from '../kernel-features.js';

/**
 * Which kernel feature a call into libc (or libaio) needs, by the name the
 * program imports. The dynamic symbols an executable and its libraries import
 * (`objdump -T`, the *UND* entries) say which kernel interfaces they can reach.
 *
 * What this cannot see: system calls made through syscall(2) (io_uring_setup,
 * userfaultfd, and anything libc does not wrap), address families and socket
 * options (AF_INET6, AF_PACKET are constants, not symbols), code that is linked
 * statically (Go programs, musl static binaries), modules dlopen()ed without
 * being declared in the recipe, and what libc does inside itself. A recipe
 * names those in `kernel.features`.
 */
export const SYMBOL_FEATURES: Readonly<Record<string, KernelFeature>> = {
  ...each(['epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2'], 'epoll'),
  ...each(['eventfd', 'eventfd_read', 'eventfd_write'], 'eventfd'),
  ...each(['timerfd_create', 'timerfd_settime', 'timerfd_gettime'], 'timerfd'),
  ...each(['signalfd'], 'signalfd'),
  ...each(['inotify_init', 'inotify_init1', 'inotify_add_watch', 'inotify_rm_watch'], 'inotify'),
  ...each(['shmget', 'shmat', 'shmdt', 'shmctl', 'semget', 'semop', 'semtimedop', 'semctl', 'msgget', 'msgsnd', 'msgrcv', 'msgctl'], 'sysvipc'),
  ...each(['mq_open', 'mq_send', 'mq_receive', 'mq_timedsend', 'mq_timedreceive', 'mq_notify', 'mq_unlink'], 'posix-mqueue'),
  ...each(['memfd_create', 'shm_open', 'shm_unlink'], 'shmem'),
  ...each(['io_setup', 'io_submit', 'io_getevents', 'io_destroy', 'io_cancel'], 'aio'),
  ...each(['flock', 'lockf', 'lockf64'], 'file-locking'),
  ...each(['socket', 'socketpair', 'bind', 'listen', 'accept', 'accept4', 'connect', 'getaddrinfo'], 'net'),
  ...each(['pthread_create', 'pthread_mutex_lock', 'pthread_cond_wait', 'pthread_cond_timedwait', 'sem_wait', 'sem_timedwait', 'sem_post'], 'futex'),
};

function each(symbols: string[], feature: KernelFeature): Record<string, KernelFeature> {
  return Object.fromEntries(symbols.map((s) => [s, feature]));
}

/** The names an object imports: the *UND* entries of `objdump -T`, without their version tags. */
export function importedSymbols(objdumpT: string): string[] {
  const names: string[] = [];
  for (const line of objdumpT.split('\n')) {
    if (!line.includes('*UND*')) continue;
    const name = line.trim().split(/\s+/).pop();
    if (name && !name.startsWith('(')) names.push(name);
  }
  return names;
}

/** The features a set of objects needs, each with the symbols (and objects) that showed it. */
export function inferFeatures(objects: ReadonlyMap<string, string>): Map<KernelFeature, string[]> {
  const found = new Map<KernelFeature, Set<string>>();
  for (const [object, text] of objects) {
    for (const symbol of importedSymbols(text)) {
      const feature = SYMBOL_FEATURES[symbol];
      if (!feature) continue;
      if (!found.has(feature)) found.set(feature, new Set());
      found.get(feature)!.add(`${symbol} (${object})`);
    }
  }
  return new Map([...found].sort(([a], [b]) => (a < b ? -1 : 1)).map(([f, s]) => [f, [...s].sort()]));
}

/**
 * Which kernel feature a system call needs, by the name strace prints: what
 * the trace pass saw the app call with success, including calls made through
 * syscall(2) and from static code, which no imported symbol shows.
 */
export const SYSCALL_FEATURES: Readonly<Record<string, KernelFeature>> = {
  ...each(['epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2'], 'epoll'),
  ...each(['eventfd', 'eventfd2'], 'eventfd'),
  ...each(['timerfd_create', 'timerfd_settime', 'timerfd_gettime'], 'timerfd'),
  ...each(['signalfd', 'signalfd4'], 'signalfd'),
  ...each(['inotify_init', 'inotify_init1', 'inotify_add_watch'], 'inotify'),
  ...each(['shmget', 'shmat', 'semget', 'semop', 'semtimedop', 'msgget', 'msgsnd', 'msgrcv'], 'sysvipc'),
  ...each(['mq_open', 'mq_timedsend', 'mq_timedreceive', 'mq_notify'], 'posix-mqueue'),
  ...each(['memfd_create'], 'shmem'),
  ...each(['io_setup', 'io_submit', 'io_getevents'], 'aio'),
  ...each(['io_uring_setup', 'io_uring_enter', 'io_uring_register'], 'io-uring'),
  ...each(['flock'], 'file-locking'),
  ...each(['futex', 'futex_waitv'], 'futex'),
};

/** Which kernel feature a socket address family needs. */
export const FAMILY_FEATURES: Readonly<Record<string, KernelFeature>> = {
  AF_INET: 'net',
  AF_INET6: 'ipv6',
  AF_UNIX: 'unix',
  AF_LOCAL: 'unix',
};

/** The features a traced run needs: from the system calls that succeeded and the socket families opened. */
export function syscallFeatures(syscalls: ReadonlyMap<string, number>, families: ReadonlySet<string>): Map<KernelFeature, string[]> {
  const found = new Map<KernelFeature, string[]>();
  const note = (feature: KernelFeature, evidence: string): void => {
    found.set(feature, [...(found.get(feature) ?? []), evidence]);
  };
  for (const name of [...syscalls.keys()].sort()) {
    const feature = SYSCALL_FEATURES[name];
    if (feature) note(feature, `traced: ${name}()`);
  }
  for (const family of [...families].sort()) {
    const feature = FAMILY_FEATURES[family];
    if (feature) note(feature, `traced: socket(${family})`);
  }
  return new Map([...found].sort(([a], [b]) => (a < b ? -1 : 1)));
}
