/**
 * The kernel features a recipe may ask for, by name. The kernel step maps each
 * to Kconfig symbols (one table, so that a recipe never names a Kconfig
 * symbol directly and the table can follow the kernel's renames).
 */
export const KERNEL_FEATURES = {
  net: { describe: 'TCP/IP networking (IPv4) and a virtio/Xen network card', symbols: ['NET', 'INET'] },
  unix: { describe: 'Unix domain sockets', symbols: ['UNIX'] },
  ipv6: { describe: 'IPv6', symbols: ['IPV6'] },
  epoll: { describe: 'epoll_create/epoll_wait', symbols: ['EPOLL'] },
  eventfd: { describe: 'eventfd', symbols: ['EVENTFD'] },
  timerfd: { describe: 'timerfd_create', symbols: ['TIMERFD'] },
  signalfd: { describe: 'signalfd', symbols: ['SIGNALFD'] },
  inotify: { describe: 'inotify_init', symbols: ['INOTIFY_USER'] },
  aio: { describe: 'Linux native AIO (io_setup, io_submit)', symbols: ['AIO'] },
  'io-uring': { describe: 'io_uring (io_uring_setup, io_uring_enter)', symbols: ['IO_URING'] },
  futex: { describe: 'futexes (every threaded program)', symbols: ['FUTEX'] },
  sysvipc: { describe: 'System V IPC: shmget, semget, msgget', symbols: ['SYSVIPC'] },
  'posix-mqueue': { describe: 'POSIX message queues (mq_open)', symbols: ['POSIX_MQUEUE'] },
  shmem: { describe: 'shared anonymous memory and tmpfs (memfd_create, /dev/shm)', symbols: ['SHMEM', 'TMPFS'] },
  'file-locking': { describe: 'flock and fcntl locks', symbols: ['FILE_LOCKING'] },
  proc: { describe: '/proc', symbols: ['PROC_FS'] },
  sysfs: { describe: '/sys', symbols: ['SYSFS'] },
} as const;

export type KernelFeature = keyof typeof KERNEL_FEATURES;

export function isKernelFeature(name: string): name is KernelFeature {
  return Object.hasOwn(KERNEL_FEATURES, name);
}
