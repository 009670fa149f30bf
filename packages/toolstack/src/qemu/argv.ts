import { join } from 'node:path';
import { kernelCmdline, type BootableImage, type GuestNetwork } from '@tinyx/image';
import type { Accelerator } from '../accel.js';

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
  /** The root filesystem: the initramfs (-initrd), or a read-only virtio-blk disk, /dev/vda in the guest. */
  root: { as: 'initrd' | 'disk'; file: string };
  /** The kernel command line (qemuCmdline). */
  cmdline: string;
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
  const root =
    o.root.as === 'initrd'
      ? ['-initrd', o.root.file]
      : [
          // Read-only and through the host's page cache (cache=writeback, QEMU's default): every VM of
          // the image shares one copy of the pages its guests have read. A read-only open takes a shared lock.
          '-drive', `id=root,file=${o.root.file.replace(/,/g, ',,')},format=raw,if=none,readonly=on`,
          '-device', `${o.machine === 'microvm' ? 'virtio-blk-device' : 'virtio-blk-pci'},drive=root`,
        ];
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
    ...root,
    '-append', o.cmdline,
    '-netdev', netdev,
    '-device', nicDevice,
    ...(o.paused ? ['-S'] : []),
    // A saved state: QEMU loads it before running (the machine must be the same, hence the same arguments).
    ...(o.incoming ? ['-incoming', `exec:cat ${shellQuote(o.incoming)}`] : []),
  ];
}

/** The rate of TCG's emulated local APIC timer: it counts QEMU's virtual clock in nanoseconds. */
export const TCG_APIC_TIMER_HZ = 1_000_000_000;

/** QEMU's user-mode network as the guest sees it: its address and gateway. */
export const USER_NETWORK: GuestNetwork = { address: '10.0.2.15', prefixLength: 24, gateway: '10.0.2.2' };

/**
 * A QEMU guest's kernel command line: the platform's console, what the image
 * needs (its manifest), QEMU's machine settings, and the guest's network.
 */
export function qemuCmdline(image: Pick<BootableImage, 'facts' | 'cmdline'>, network: GuestNetwork | undefined, clock: { accel: Accelerator; hostTscKhz?: number | undefined } = { accel: 'kvm' }): string {
  return kernelCmdline({
    console: image.facts.console,
    image: image.cmdline,
    machine: [
      // The guest's reboot resets the CPU, and -no-reboot turns that into QEMU exiting.
      'reboot=t',
      // On a busy host (50 TCG guests on 2 cores) the kernel's test of the IO-APIC
      // timer sees too few ticks and panics ("IO-APIC + timer doesn't work!").
      'no_timer_check',
      // Under TCG the guest's TSC is the host's, but the guest's calibration of it against the
      // emulated PIT fails, and the kernel falls back to jiffies, which ticks at HZ even when idle
      // (NO_HZ_IDLE needs a clocksource without the tick). Given the host's rate, it keeps the TSC.
      ...(clock.accel === 'tcg' && clock.hostTscKhz ? [`tsc_early_khz=${clock.hostTscKhz}`, 'tsc=reliable'] : []),
      // TCG's APIC counts at 1 GHz (QEMU's hw/intel/apic.c). Stated (tinyx's kernel patch 0002), the
      // guest does not calibrate it against the PIT: 0.2 s of boot, and on a busy host a failed check
      // that left the guest on the PIT, waking ~36 times a second when idle.
      ...(clock.accel === 'tcg' ? [`lapic_timer_hz=${TCG_APIC_TIMER_HZ}`] : []),
    ],
    network,
  });
}

export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
