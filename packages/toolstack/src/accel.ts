import { access, constants, readFile } from 'node:fs/promises';

export type Accelerator = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accelerator;
  /** Why: shown by `tinyx doctor` and `tinyx run --json`. */
  reason: string;
}

/**
 * KVM when the host can really run a Linux guest with it, TCG otherwise.
 * /dev/kvm alone is not enough: kvm_pvm (software nested virtualisation) also
 * provides it and cannot run an ordinary guest, so the module behind it decides.
 */
export async function detectAccel(): Promise<AccelChoice> {
  const exists = async (path: string, mode = constants.F_OK): Promise<boolean> =>
    access(path, mode).then(
      () => true,
      () => false,
    );
  if (!(await exists('/dev/kvm', constants.R_OK | constants.W_OK))) return { accel: 'tcg', reason: 'no usable /dev/kvm: software emulation (TCG)' };
  if (await exists('/sys/module/kvm_pvm')) return { accel: 'tcg', reason: '/dev/kvm is kvm_pvm, which cannot run an ordinary Linux guest: TCG' };
  if ((await exists('/sys/module/kvm_intel')) || (await exists('/sys/module/kvm_amd'))) return { accel: 'kvm', reason: '/dev/kvm backed by kvm_intel or kvm_amd' };
  return { accel: 'tcg', reason: '/dev/kvm exists but neither kvm_intel nor kvm_amd is loaded: TCG' };
}

/**
 * The host's TSC rate in kHz, when the host states it: a CPU whose TSC runs at
 * a constant rate (constant_tsc, nonstop_tsc) and no cpufreq driver, so that
 * /proc/cpuinfo's "cpu MHz" is the rate the kernel measured for the TSC, not
 * the core's current clock. Undefined otherwise: a TCG guest then keeps its
 * jiffies clock (correct, but it ticks when idle).
 */
export async function hostTscKhz(cpuinfoPath = '/proc/cpuinfo', cpufreqDir = '/sys/devices/system/cpu/cpu0/cpufreq'): Promise<number | undefined> {
  const scaled = await access(cpufreqDir).then(
    () => true,
    () => false,
  );
  if (scaled) return undefined;
  const text = await readFile(cpuinfoPath, 'utf8').catch(() => '');
  return tscKhzFromCpuinfo(text);
}

/** The first CPU's "cpu MHz" in kHz when its flags say the TSC is constant and never stops; undefined otherwise. */
export function tscKhzFromCpuinfo(cpuinfo: string): number | undefined {
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? '';
  const flags = new Set((first.match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/));
  if (!flags.has('constant_tsc') || !flags.has('nonstop_tsc')) return undefined;
  const mhz = Number(first.match(/^cpu MHz\s*:\s*([\d.]+)$/m)?.[1]);
  return Number.isFinite(mhz) && mhz > 0 ? Math.round(mhz * 1000) : undefined;
}
