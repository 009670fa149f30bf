import { join } from 'node:path';
import type { Accelerator } from './accel.js';

/** Everything QEMU's command line depends on: the typed options of one VM (LinuxKit's buildQemuCmdline is the model). */
export interface QemuArgvOptions {
  machine: 'microvm' | 'q35';
  accel: Accelerator;
  /** TCG only: -accel tcg,tb-size=N. */
  tcgCacheMiB?: number | undefined;
  memoryMiB: number;
  vcpus: number;
  /** The VM's runtime directory: console.log and the two QMP sockets are made there. */
  dir: string;
  kernel: string;
  initrd: string;
  /** The guest's network on the kernel command line (tinyx.ip=, tinyx.gw=). */
  guestNet: string;
  /** A bridged VM's tap and MAC; absent: QEMU's user-mode network with these forwards. */
  tap?: { name: string; mac: string } | undefined;
  forwards: readonly { host: number; guest: number }[];
  paused?: boolean | undefined;
  /** A saved state to load before running (restore). */
  incoming?: string | undefined;
}

/**
 * QEMU's argv for a VM: a pure function of its options, apart from the code
 * that starts the process, so that every accelerator's and machine's command
 * line is unit-tested (the KVM one included, on hosts without KVM).
 */
export function qemuArgv(o: QemuArgvOptions): string[] {
  const hostfwd = o.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`).join('');
  const netdev = o.tap ? `tap,id=net0,ifname=${o.tap.name},script=no,downscript=no` : `user,id=net0${hostfwd}`;
  // romfile= : no iPXE option ROM on q35; the kernel is loaded directly and would only wait for it.
  const nicDevice = `${o.machine === 'microvm' ? 'virtio-net-device' : 'virtio-net-pci,romfile='},netdev=net0${o.tap ? `,mac=${o.tap.mac}` : ''}`;
  return [
    '-M', o.machine === 'microvm' ? 'microvm,acpi=off' : 'q35',
    '-accel', o.accel === 'tcg' && o.tcgCacheMiB ? `tcg,tb-size=${o.tcgCacheMiB}` : o.accel,
    // KVM: the host's CPU model, so the guest sees the features it really has.
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m', String(o.memoryMiB),
    '-smp', String(o.vcpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-serial', `file:${join(o.dir, 'console.log')}`,
    // Two monitors, as QMP serves one client at a time: qmp.sock for the process that started
    // the VM (it keeps the connection), ctl.sock for short commands from others (tinyx ps, pause, stop).
    '-qmp', `unix:${join(o.dir, 'qmp.sock')},server=on,wait=off`,
    '-qmp', `unix:${join(o.dir, 'ctl.sock')},server=on,wait=off`,
    '-kernel', o.kernel,
    '-initrd', o.initrd,
    // reboot=t: the guest's reboot resets the CPU, and -no-reboot turns that into QEMU exiting.
    // rootfstype=ramfs: the initramfs unpacks into ramfs, not tmpfs, whose limit of half the
    // memory would otherwise decide how small a guest can be (nginx: 41 MiB -> 32 MiB).
    // no_timer_check: on a busy host (50 TCG guests on 2 cores) the kernel's test of the
    // IO-APIC timer sees too few ticks and panics ("IO-APIC + timer doesn't work!").
    '-append', `console=ttyS0 quiet reboot=t panic=-1 rootfstype=ramfs no_timer_check ${o.guestNet}`,
    '-netdev', netdev,
    '-device', nicDevice,
    ...(o.paused ? ['-S'] : []),
    // A saved state: QEMU loads it before running (the machine must be the same, hence the same arguments).
    ...(o.incoming ? ['-incoming', `exec:cat ${shellQuote(o.incoming)}`] : []),
  ];
}

export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
