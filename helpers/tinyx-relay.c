/*
 * tinyx-relay: the VM's own address relays TCP connections to an app that
 * listens only on loopback (its package's configuration: redis, memcached,
 * mariadb...). In a one-app VM nothing else runs to be its local client; the
 * VM's network is reached only through what the toolstack publishes.
 *
 *   tinyx-relay LISTEN_ADDR PORT TARGET_ADDR [LISTEN_ADDR PORT TARGET_ADDR]...
 *
 * LISTEN_ADDR is an IPv4 address (the guest's, from tinyx.ip=); TARGET_ADDR
 * is a loopback one, 127.0.0.1 (or another of 127/8) or ::1, reached on the
 * same PORT. Each relay binds its
 * address, then drops to nobody (65534), forks a child per connection that
 * copies both ways until both sides have closed. The app sees its client
 * come from loopback.
 *
 * Freestanding (no libc, raw system calls, x86-64 Linux): a few KiB in the
 * image, built by the image's build with the host's gcc, deterministically.
 */

typedef unsigned long size_t;
typedef long ssize_t;

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_poll 7
#define SYS_rt_sigaction 13
#define SYS_socket 41
#define SYS_connect 42
#define SYS_accept 43
#define SYS_shutdown 48
#define SYS_bind 49
#define SYS_listen 50
#define SYS_setsockopt 54
#define SYS_fork 57
#define SYS_exit 60
#define SYS_setuid 105
#define SYS_setgid 106
#define SYS_setgroups 116

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_CLOEXEC 02000000
#define SOL_SOCKET 1
#define SO_REUSEADDR 2
#define SHUT_WR 1
#define POLLIN 0x001
#define POLLHUP 0x010
#define POLLERR 0x008
#define SIGCHLD 17
#define SIG_IGN 1
#define EINTR 4
#define MAX_RELAYS 16
#define NOBODY 65534

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return ret;
}
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

struct sockaddr_in {
  unsigned short family;
  unsigned short port;
  unsigned char addr[4];
  unsigned char zero[8];
};

struct sockaddr_in6 {
  unsigned short family;
  unsigned short port;
  unsigned int flowinfo;
  unsigned char addr[16];
  unsigned int scope;
};

struct pollfd {
  int fd;
  short events;
  short revents;
};

struct kernel_sigaction {
  unsigned long handler;
  unsigned long flags;
  unsigned long restorer;
  unsigned long mask;
};

/* What gcc may call for a struct's initialisation, even freestanding. */
void *memset(void *to, int c, size_t n) {
  unsigned char *p = to;
  while (n--) *p++ = (unsigned char)c;
  return to;
}

void *memcpy(void *to, const void *from, size_t n) {
  unsigned char *p = to;
  const unsigned char *q = from;
  while (n--) *p++ = *q++;
  return to;
}

static size_t length(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

static void say(const char *a, const char *b) {
  sys3(SYS_write, 2, "tinyx-relay: ", 13);
  sys3(SYS_write, 2, a, length(a));
  sys3(SYS_write, 2, b, length(b));
  sys3(SYS_write, 2, "\n", 1);
}

static __attribute__((noreturn)) void leave(int status) {
  for (;;) sys3(SYS_exit, status, 0, 0);
}

/* A decimal number up to max, or -1. */
static long number(const char *s, long max) {
  long n = 0;
  if (!*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    n = n * 10 + (*s - '0');
    if (n > max) return -1;
  }
  return n;
}

/* Dotted IPv4 into four bytes; 0 when it is not one. */
static int ipv4(const char *s, unsigned char out[4]) {
  for (int i = 0; i < 4; i++) {
    long n = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) n = n * 10 + (*s - '0');
    if (digits == 0 || digits > 3 || n > 255) return 0;
    out[i] = (unsigned char)n;
    if (i < 3 && *s++ != '.') return 0;
  }
  return *s == 0;
}

static int equal(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

struct relay {
  int listener;
  unsigned short port; /* network order */
  int target6;
  unsigned char target4[4];
};

/* Connects to the target on loopback: an address of 127/8, or ::1. */
static int reach(const struct relay *r) {
  int fd = (int)sys3(SYS_socket, r->target6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  long ok;
  if (r->target6) {
    struct sockaddr_in6 to = {AF_INET6, r->port, 0, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 0};
    ok = sys3(SYS_connect, fd, &to, sizeof to);
  } else {
    struct sockaddr_in to = {AF_INET, r->port, {r->target4[0], r->target4[1], r->target4[2], r->target4[3]}, {0}};
    ok = sys3(SYS_connect, fd, &to, sizeof to);
  }
  if (ok < 0) {
    sys3(SYS_close, fd, 0, 0);
    return -1;
  }
  return fd;
}

/* Copies both ways until both sides are done; a side's end is passed on as a half-close. */
static void shuttle(int a, int b) {
  static char buffer[65536];
  int ends[2] = {a, b};
  struct pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  int open = 2;
  while (open > 0) {
    if (sys3(SYS_poll, fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int from = ends[i], to = ends[1 - i];
      ssize_t n = sys3(SYS_read, from, buffer, sizeof buffer);
      if (n == -EINTR) continue;
      if (n <= 0) {
        sys3(SYS_shutdown, to, SHUT_WR, 0);
        fds[i].fd = -1;
        open--;
        continue;
      }
      for (ssize_t done = 0; done < n;) {
        ssize_t w = sys3(SYS_write, to, buffer + done, n - done);
        if (w == -EINTR) continue;
        if (w <= 0) return;
        done += w;
      }
    }
  }
}

int relay_main(long argc, char **argv) {
  static struct relay relays[MAX_RELAYS];
  int count = 0;
  if (argc < 4 || (argc - 1) % 3 != 0 || (argc - 1) / 3 > MAX_RELAYS) {
    say("usage: tinyx-relay LISTEN_ADDR PORT TARGET_ADDR [LISTEN_ADDR PORT TARGET_ADDR]...", "");
    return 2;
  }
  for (long i = 1; i < argc; i += 3, count++) {
    struct sockaddr_in at = {AF_INET, 0, {0}, {0}};
    long port = number(argv[i + 1], 65535);
    if (!ipv4(argv[i], at.addr) || port <= 0) {
      say("not an IPv4 address and port: ", argv[i]);
      return 2;
    }
    relays[count].target6 = equal(argv[i + 2], "::1");
    if (!relays[count].target6 && !(ipv4(argv[i + 2], relays[count].target4) && relays[count].target4[0] == 127)) {
      say("the target is a loopback address (127.0.0.1, ::1), not ", argv[i + 2]);
      return 2;
    }
    at.port = (unsigned short)(((port & 0xff) << 8) | (port >> 8));
    relays[count].port = at.port;
    int fd = (int)sys3(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    sys6(SYS_setsockopt, fd, SOL_SOCKET, SO_REUSEADDR, (long)&one, sizeof one, 0);
    if (fd < 0 || sys3(SYS_bind, fd, &at, sizeof at) < 0 || sys3(SYS_listen, fd, 128, 0) < 0) {
      say("cannot listen on ", argv[i]);
      return 1;
    }
    relays[count].listener = fd;
  }
  /* Bound: the rest runs as nobody. */
  if (sys3(SYS_setgroups, 0, 0, 0) < 0 || sys3(SYS_setgid, NOBODY, 0, 0) < 0 || sys3(SYS_setuid, NOBODY, 0, 0) < 0) {
    say("cannot drop to nobody", "");
    return 1;
  }
  /* Children are reaped by the kernel. */
  struct kernel_sigaction ignore = {SIG_IGN, 0, 0, 0};
  sys6(SYS_rt_sigaction, SIGCHLD, (long)&ignore, 0, 8, 0, 0);
  struct pollfd fds[MAX_RELAYS];
  for (int i = 0; i < count; i++) fds[i] = (struct pollfd){relays[i].listener, POLLIN, 0};
  for (;;) {
    if (sys3(SYS_poll, fds, count, -1) < 0) continue;
    for (int i = 0; i < count; i++) {
      if (!(fds[i].revents & POLLIN)) continue;
      int client = (int)sys3(SYS_accept, relays[i].listener, 0, 0);
      if (client < 0) continue;
      if (sys3(SYS_fork, 0, 0, 0) == 0) {
        for (int j = 0; j < count; j++) sys3(SYS_close, relays[j].listener, 0, 0);
        int app = reach(&relays[i]);
        if (app >= 0) shuttle(client, app);
        leave(0);
      }
      sys3(SYS_close, client, 0, 0);
    }
  }
}

/* The entry point: argc and argv from the initial stack. */
__asm__(
    ".text\n"
    ".global _start\n"
    "_start:\n"
    "  xor %rbp, %rbp\n"
    "  mov (%rsp), %rdi\n"
    "  lea 8(%rsp), %rsi\n"
    "  and $-16, %rsp\n"
    "  call relay_main\n"
    "  mov %eax, %edi\n"
    "  mov $60, %eax\n"
    "  syscall\n");
