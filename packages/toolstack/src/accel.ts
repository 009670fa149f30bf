import { access, constants } from 'node:fs/promises';

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
