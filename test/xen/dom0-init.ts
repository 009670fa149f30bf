/**
 * Framed lines dom0 prints on its console (hvc0, which Xen copies to com1,
 * which QEMU gives the harness on stdout). Everything else on the console is
 * log.
 */
export const FRAME = {
  /** dom0's /init has started: `tinyx-xen-dom0: init <uptime>`. */
  init: 'tinyx-xen-dom0: init',
  /** xenstored and xenconsoled run and the bridge is up: `tinyx-xen-dom0: ready <uptime>`. */
  ready: 'tinyx-xen-dom0: ready',
  /** One test's outcome: `tinyx-xen-result: {json}`. */
  result: 'tinyx-xen-result:',
  /** The payload has finished: `tinyx-xen-done: <exit status>`. */
  done: 'tinyx-xen-done:',
} as const;

/** Where the payload's entry point is: the part of the initramfs appended per run (see payload.ts). */
export const PAYLOAD_ENTRY = '/opt/tinyx-xen/run';

/**
 * dom0's /init (PID 1 from the initramfs): kernel filesystems (xenconsoled
 * needs /dev/pts), the Xen backends, Debian's `xen` init script (xenstored,
 * xenconsoled, /proc/xen), the bridge xenbr0 with the address given on the
 * kernel command line (tinyx.xenbr0=10.99.0.1/24), then the payload's entry
 * point; then a reset, which ends Xen and, under -no-reboot, QEMU.
 */
export const DOM0_INIT = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The links udev makes in a real dom0: Xen's block script takes its lock with stat /dev/stdin, and waits forever without it.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/xen /var/log/xen/console
echo "${FRAME.init} $(cut -d' ' -f1 /proc/uptime)"
# What is left for the tests: the initramfs is unpacked into dom0's memory.
busybox free -m | busybox head -2
hostname dom0
ip link set lo up

for module in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback xen-blkback loop bridge; do
  modprobe "$module" || echo "tinyx-xen-dom0: modprobe $module failed"
done
/etc/init.d/xen start 2>&1

bridge=10.99.0.1/24
for arg in $(cat /proc/cmdline); do
  case "$arg" in tinyx.xenbr0=*) bridge="\${arg#tinyx.xenbr0=}" ;; esac
done
ip link add xenbr0 type bridge
ip addr add "$bridge" dev xenbr0
ip link set xenbr0 up
echo "${FRAME.ready} $(cut -d' ' -f1 /proc/uptime)"

status=0
if [ -x ${PAYLOAD_ENTRY} ]; then
  ${PAYLOAD_ENTRY}
  status=$?
else
  echo "tinyx-xen-dom0: no ${PAYLOAD_ENTRY} in the initramfs"
  status=127
fi
echo "${FRAME.done} $status"
sync
# A reset ends Xen; QEMU runs with -no-reboot, so it exits.
busybox reboot -f
`;
