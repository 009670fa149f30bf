import { READY_LINE, probePort } from '@tinyx/image';
import type { Readiness } from '../recipe/recipe.js';
import { RELAY_PATH, relayArguments, type LoopbackRelay } from './relay.js';

export interface InitOptions {
  name: string;
  cmd: readonly string[];
  /** Run the app as this account (numeric ids: no name lookup needed at boot). */
  user: { name: string; uid: number; gid: number; home?: string | undefined };
  env: Record<string, string>;
  /** The directory the app starts in; default "/". */
  workdir?: string;
  /** The command backgrounds the app and exits (Type=forking): followed by its pid file, else by every process left. */
  forks?: boolean;
  pidFile?: string | null;
  readiness: Readiness | null;
  /** Exported as LD_LIBRARY_PATH: the image has no ld.so.cache. */
  libraryPath: readonly string[];
  /** Ports the app listens on only at loopback: tinyx-relay (RELAY_PATH) forwards the VM's address to each. */
  relay?: readonly LoopbackRelay[];
  /**
   * For a read-only root (an erofs disk): the directories /init puts on tmpfs
   * before the app starts, parents first. Undefined: the root is writable (an initramfs).
   */
  writable?: readonly WritableDir[];
}

/** A directory of a read-only root that the app may write: on tmpfs in the VM, with the image's owner and mode. */
export interface WritableDir {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  /** The image has files under it: /init copies them onto the tmpfs before mounting it there. */
  seeded: boolean;
  /** Why it is writable when neither the skeleton nor the recipe says so (the trace saw a write): a comment in /init. */
  reason?: string;
}

/** The BusyBox applets the generated /init calls; the image gets a link for each. */
export const INIT_APPLETS = ['sh', 'mount', 'mkdir', 'ip', 'cat', 'grep', 'sleep', 'hostname', 'reboot', 'start-stop-daemon', 'chmod', 'chown', 'cp'] as const;

/** Where /init mounts a seeded directory's tmpfs while it copies the image's files onto it: on the devtmpfs, writable by then. */
const SEED_MOUNT = '/dev/.tinyx-seed';

/**
 * The lines that make a read-only root's writable directories: a tmpfs on each
 * one not under another (its files copied from the image first when it has
 * some), a directory on that tmpfs for the others, each with the image's owner
 * and mode (the tmpfs's mode=, mkdir's -m). Without CONFIG_SHMEM the kernel's
 * tmpfs is ramfs, which takes mode= but no uid=, hence the chown. Each line is
 * an applet of /init's own BusyBox (a fork, no exec), a few ms under TCG.
 */
export function writableLines(dirs: readonly WritableDir[]): string[] {
  const sorted = [...dirs].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const lines: string[] = [
    '# The root is read-only (an erofs disk): what the app writes goes to tmpfs, in RAM.',
    '# A directory that cannot be made writable (a kernel without tmpfs, say) ends the VM: the app would run without it.',
    'unwritable() { echo "tinyx: /init could not make $1 writable (the error is above): the VM ends"; reboot -f; }',
  ];
  const orFail = (line: string, path: string): string => `${line} || unwritable ${path}`;
  const mounted: string[] = [];
  for (const dir of sorted) {
    const path = shellQuote(dir.path);
    const mode = dir.mode.toString(8).padStart(4, '0');
    const under = mounted.find((top) => dir.path.startsWith(`${top}/`));
    if (dir.reason) lines.push(`# ${dir.reason.replace(/\n/g, ' ')}`);
    if (under) lines.push(orFail(`mkdir -p -m ${mode} ${path}`, path));
    else if (dir.seeded) {
      lines.push(orFail(`mkdir -p ${SEED_MOUNT} && mount -t tmpfs -o mode=${mode} tmpfs ${SEED_MOUNT} && cp -a ${path}/. ${SEED_MOUNT}/ && mount -o move ${SEED_MOUNT} ${path}`, path));
      mounted.push(dir.path);
    } else {
      lines.push(orFail(`mount -t tmpfs -o mode=${mode} tmpfs ${path}`, path));
      mounted.push(dir.path);
    }
    if (dir.uid !== 0 || dir.gid !== 0) lines.push(orFail(`chown ${dir.uid}:${dir.gid} ${path}`, path));
    // chown clears set-id bits, and mode= and -m give the rest: chmod only when there are some to set again.
    if (dir.mode & 0o6000 && (dir.uid !== 0 || dir.gid !== 0)) lines.push(orFail(`chmod ${mode} ${path}`, path));
  }
  return lines;
}

/**
 * The image's /init, run by the kernel as PID 1 from the initramfs. It mounts
 * the kernel filesystems, brings up lo and eth0 from the kernel command line
 * (tinyx.ip=ADDR/PREFIX tinyx.gw=GATEWAY), starts the app, prints READY_LINE
 * when the app really listens on its port (read from /proc/net/tcp, so no
 * client is needed in the image), and ends the VM when the app exits.
 */
export function generateInit(options: InitOptions): string {
  const { cmd, user, readiness } = options;
  const relays = options.relay ?? [];
  const argv = cmd.map(shellQuote).join(' ');
  const command =
    user.uid === 0
      ? argv
      : // start-stop-daemon execs the program in this process after switching ids, so $! is the app.
        `start-stop-daemon -S -c ${user.uid}:${user.gid} -x ${shellQuote(cmd[0]!)} -- ${cmd.slice(1).map(shellQuote).join(' ')}`;
  const start = options.forks
    ? [
        `# The command puts the app in the background and exits (systemd's Type=forking).`,
        command,
        'status=$?',
        `[ $status -eq 0 ] || { echo "tinyx: ${options.name} exited with status $status"; reboot -f; }`,
        ...(options.pidFile
          ? [
              `# The app is the process in its pid file.`,
              `while [ ! -s ${shellQuote(options.pidFile)} ] && others; do sleep 0.01; done`,
              `read app < ${shellQuote(options.pidFile)} 2>/dev/null`,
              'running() { kill -0 "$app" 2>/dev/null; }',
            ]
          : [`# No pid file: the app is whatever the command left running.`, 'app=', 'running() { others; }']),
      ]
    : [`${command} &`, 'app=$!', 'running() { kill -0 $app 2>/dev/null; }'];
  const others = [
    '# Whether any process runs besides PID 1 and this script.',
    'others() {',
    '  for d in /proc/[0-9]*; do',
    '    p=${d#/proc/}',
    ...(relays.length > 0
      ? [
          '    # The relay and the connections it serves are not the app.',
          '    [ "$p" = "$relay" ] && continue',
          '    [ -n "$relay" ] && grep -qs "^PPid:[[:space:]]*$relay\$" "$d/status" && continue',
        ]
      : []),
    '    [ "$p" != 1 ] && [ "$p" != $$ ] && [ -d "$d" ] && return 0',
    '  done',
    '  return 1',
    '}',
  ];
  // As systemd does for a unit with User=: the account's HOME, USER and LOGNAME (the recipe's env wins).
  const accountEnv = user.uid === 0 ? {} : { HOME: user.home ?? '/', USER: user.name, LOGNAME: user.name };
  const env = Object.entries({ ...accountEnv, ...options.env }).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  if (options.libraryPath.length > 0) env.push(`export LD_LIBRARY_PATH=${shellQuote(options.libraryPath.join(':'))}`);
  // /init sees the socket listen (no client in the image); the toolstack's probe then sees the app answer (HTTP, a TCP exchange).
  const port = probePort(readiness);
  const relayed = relays.find((r) => r.port === port);
  const waitReady =
    port === undefined
      ? [`echo "${READY_LINE} (started${options.forks ? '' : ', pid $app'})"`]
      : [
          `# Ready means listening: a LISTEN (0A) socket on port ${port} in /proc/net/tcp or tcp6${relayed ? ` at ${relayed.address}, where the app listens (the relay's own socket on the port is not the app)` : ''}.`,
          `while ! grep -qE '${relayed ? procNetAddress(relayed.address) : ''}:${port.toString(16).toUpperCase().padStart(4, '0')} [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do`,
          '  running || break',
          '  sleep 0.01',
          'done',
          // The guest's own clock too: how much of the boot the guest saw (the rest is the VMM's).
          'read uptime _ < /proc/uptime',
          `running && echo "${READY_LINE} (listening on ${port}) at \${uptime} s of guest uptime"`,
        ];

  return `#!/bin/sh
# /init of the tinyx image "${options.name}", generated by tinyx: PID 1 of the VM.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
# POSIX shared memory (shm_open: squid, PostgreSQL) wants a world-writable tmpfs; a kernel without tmpfs goes without.
mount -t tmpfs -o mode=1777 shm /dev/shm 2>/dev/null
hostname ${shellQuote(options.name)}
${options.writable ? `${writableLines(options.writable).join('\n')}
` : ''}
# One app per VM: it may bind ports below 1024 whatever its account (systemd's
# AmbientCapabilities=CAP_NET_BIND_SERVICE; Docker sets the same for containers).
# A kernel without PROC_SYSCTL has no such file: only root binds them there.
[ -e /proc/sys/net/ipv4/ip_unprivileged_port_start ] && echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start

# Network from the kernel command line: tinyx.ip=10.0.2.15/24 tinyx.gw=10.0.2.2
# (TINYX_CMDLINE stands in for it where no kernel gives one: the build's verify step).
ip link set lo up
for arg in \${TINYX_CMDLINE:-$(cat /proc/cmdline)}; do
  case "$arg" in
    tinyx.ip=*) addr="\${arg#tinyx.ip=}" ;;
    tinyx.gw=*) gw="\${arg#tinyx.gw=}" ;;
  esac
done
if ip link show eth0 >/dev/null 2>&1; then
  ip link set eth0 up
  [ -n "$addr" ] && ip addr add "$addr" dev eth0
  [ -n "$gw" ] && ip route add default via "$gw"
fi

${
  relays.length > 0
    ? `# ${options.name} listens only at ${relays.map((r) => `${r.address}:${r.port}`).join(', ')} (its configuration): the VM's own
# address is relayed to it, as a container's published port would be.
relay=
if [ -n "$addr" ]; then
  ${RELAY_PATH} ${relayArguments(relays, '"${addr%/*}"')} &
  relay=$!
  echo "tinyx: relaying \${addr%/*} to ${relays.map((r) => `${r.address}:${r.port}`).join(', ')}"
fi
`
    : ''
}${env.join('\n')}
${options.workdir && options.workdir !== '/' ? `cd ${shellQuote(options.workdir)}
` : ''}echo "tinyx: starting ${cmd.map((c) => c.replace(/["$`\\]/g, '\\$&')).join(' ')}"
${options.forks ? `${others.join('\n')}
` : ''}${start.join('\n')}
${waitReady.join('\n')}
${options.forks ? 'while running; do sleep 0.5; done\nstatus=0' : 'wait $app\nstatus=$?'}
echo "tinyx: ${options.name} exited with status $status"
# Ends the VM: a reset, which the toolstack turns into the VMM exiting (QEMU
# -no-reboot with reboot=t, Xen on_reboot=destroy). A power-off would need
# ACPI, which the kvm kernel leaves out.
reboot -f
`;
}

/**
 * A loopback address as /proc/net/tcp and tcp6 print it: an IPv4 address is
 * its big-endian bytes read as a host-order word (127.0.0.1 is 0100007F, and
 * in tcp6, mapped, ...FFFF00000100007F), ::1 is four such words.
 */
export function procNetAddress(address: string): string {
  if (address === '::1') return '00000000000000000000000001000000';
  const hex = address
    .split('.')
    .map((b) => Number(b).toString(16).toUpperCase().padStart(2, '0'))
    .reverse()
    .join('');
  return `(${hex}|0000000000000000FFFF0000${hex})`;
}

export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
