import type { Argv, CommandModule } from 'yargs';
import { HOST_FILES, HOST_TOOLS, findOnPath, hasOverlayFs, isRoot, missingHostFiles } from '@tinyx/builder';
import { detectAccel, getBackend } from '@tinyx/toolstack';
import { execa } from 'execa';
import { EXIT } from '../exit-codes.js';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput } from '../output.js';

interface DoctorArgs extends GlobalArgs {
  fix?: boolean;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** The Debian package that fixes it, when one does. */
  debianPackage?: string;
  /** What to do by hand when no package fixes it. */
  fix?: string;
  /** Needed only for an option: reported, but the host is ready without it. */
  optional?: boolean;
}

export const doctorCommand: CommandModule<object, DoctorArgs> = {
  command: 'doctor',
  describe: 'Check that this host can build images; --fix installs what is missing',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .option('fix', { type: 'boolean', describe: 'apt-get install the missing Debian packages (needs root and the mirror)' })
      .example('$0 doctor', 'list every host tool the pipeline needs, and what is missing')
      .example('$0 doctor --fix', 'install the missing packages with apt-get') as unknown as Argv<DoctorArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    let checks = await runChecks();
    // --fix installs the optional tools too: they are small, and the options then just work.
    const missing = [...new Set(checks.filter((c) => !c.ok && c.debianPackage).map((c) => c.debianPackage!))];
    if (args.fix && missing.length > 0) {
      if (!isRoot()) {
        out.note('tinyx doctor --fix: installing packages needs root');
        process.exitCode = EXIT.host;
        return;
      }
      out.note(`installing: ${missing.join(' ')}`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const stdio = out.json ? 'ignore' : 'inherit';
      await execa('apt-get', ['update', '-q'], { env, stdio });
      await execa('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env, stdio });
      checks = await runChecks();
    }
    const ok = checks.every((c) => c.ok || c.optional);
    if (out.json) out.result({ ok, checks });
    else {
      for (const c of checks) out.line(`${c.ok ? 'ok  ' : c.optional ? 'opt ' : 'MISS'}  ${c.name.padEnd(22)} ${c.detail}${!c.ok && c.debianPackage ? `  (apt-get install ${c.debianPackage})` : ''}${!c.ok && c.fix ? `  (${c.fix})` : ''}`);
      const stillMissing = [...new Set(checks.filter((c) => !c.ok && !c.optional && c.debianPackage).map((c) => c.debianPackage!))];
      if (!ok) out.line(stillMissing.length > 0 ? `\nfix it with: tinyx doctor --fix   (apt-get install ${stillMissing.join(' ')})` : '\nsee the notes above');
      else out.line('\nthis host can build tinyx images');
    }
    process.exitCode = ok ? EXIT.ok : EXIT.host;
  },
};

export async function runChecks(): Promise<Check[]> {
  const checks: Check[] = [];
  checks.push({ name: 'root', ok: isRoot(), detail: isRoot() ? 'running as root' : 'debootstrap, chroot and mounts need root', fix: 'run as root (sudo)' });
  const overlay = await hasOverlayFs();
  checks.push({ name: 'overlayfs', ok: overlay, detail: overlay ? 'the kernel has OverlayFS' : 'no "overlay" in /proc/filesystems', fix: 'modprobe overlay' });
  for (const tool of HOST_TOOLS) {
    const path = await findOnPath(tool.command);
    checks.push({ name: tool.command, ok: !!path, detail: path ? `${path}: ${tool.purpose}` : tool.purpose, debianPackage: tool.debianPackage, ...(tool.neededFor === 'zstd' || tool.neededFor === 'ccache' ? { optional: true } : {}) });
  }
  // Booting: QEMU itself, and which accelerator tinyx run will pick (TCG is slower, never wrong).
  const qemuMissing = await getBackend('qemu')?.unavailable();
  checks.push({ name: 'qemu', ok: !qemuMissing, detail: qemuMissing ?? 'qemu-system-x86_64: boots images (tinyx run)', debianPackage: 'qemu-system-x86', optional: true });
  const ip = await findOnPath('ip');
  checks.push({ name: 'ip', ok: !!ip, detail: ip ? `${ip}: the bridge and taps of tinyx run --network bridge` : 'makes the bridge and taps of tinyx run --network bridge', debianPackage: 'iproute2', optional: true });
  // Xen: only in dom0 (test/xen boots one inside QEMU to test on).
  const xenMissing = await getBackend('xen')?.unavailable();
  checks.push({ name: 'xen', ok: !xenMissing, detail: xenMissing ?? 'xl in dom0: tinyx run --backend xen and tinyx pool', optional: true });
  const accel = await detectAccel();
  checks.push({ name: 'accelerator', ok: true, detail: `tinyx run will use ${accel.accel}: ${accel.reason}` });
  const missingFiles = await missingHostFiles();
  for (const file of HOST_FILES) {
    const ok = !missingFiles.includes(file);
    checks.push({ name: file.debianPackage, ok, detail: `${file.path}: ${file.purpose}`, debianPackage: file.debianPackage });
  }
  return checks;
}
