import type { Argv, CommandModule } from 'yargs';
import { hasOverlayFs } from '@tinyx/builder';
import { findOnPath, hostScope, isOptional, isRoot, missingHostFiles, packagesToInstall, run, type HostScope } from '@tinyx/image';
import { detectAccel, getBackend } from '@tinyx/toolstack';
import { EXIT } from '../exit-codes.js';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError } from '../output.js';

interface DoctorArgs extends GlobalArgs {
  fix?: boolean;
  tests?: boolean;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** The Debian package that fixes it, when one does. */
  debianPackage?: string;
  /** The file checked, for a HOST_FILES entry (its name is the package's). */
  path?: string;
  /** What to do by hand when no package fixes it. */
  fix?: string;
  /** Needed only for an option: reported, but the host is ready without it. */
  optional?: boolean;
}

export const doctorCommand: CommandModule<object, DoctorArgs> = {
  command: 'doctor',
  describe: 'Check that this host can build and run images (--tests: and run npm test); --fix installs what is missing',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .option('fix', { type: 'boolean', describe: 'apt-get install the missing Debian packages and load the overlay module (needs root and the mirror)' })
      .option('tests', { type: 'boolean', describe: "also what npm test's tiers need: GNU cpio, kmod, procps, file, ... (the README's first command uses it)" })
      .example('$0 doctor', 'list every host tool tinyx needs to build and run images, and what is missing')
      .example('$0 doctor --fix', 'install the missing packages with apt-get')
      .example('$0 doctor --fix --tests', 'install what npm test needs too, so that every tier runs') as unknown as Argv<DoctorArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    const scope: HostScope = { tests: !!args.tests };
    try {
      let checks = await runChecks(scope);
      if (args.fix && needsFixing(scope, checks)) {
        if (!isRoot()) {
          out.note('tinyx doctor --fix: installing packages and loading modules needs root');
          process.exitCode = EXIT.host;
          return;
        }
        await fixHost(missingPackages(scope, checks), (line) => out.note(line));
        checks = await runChecks(scope);
      }
      const ok = checks.every((c) => c.ok || c.optional);
      if (out.json) out.result({ ok, tests: scope.tests, checks });
      else {
        for (const c of checks) out.line(`${c.ok ? 'ok  ' : c.optional ? 'opt ' : 'MISS'}  ${c.name.padEnd(22)} ${c.detail}${!c.ok && c.debianPackage ? `  (apt-get install ${c.debianPackage})` : ''}${!c.ok && c.fix ? `  (${c.fix})` : ''}`);
        const stillMissing = missingPackages(scope, checks.filter((c) => !c.optional));
        const fixCommand = `tinyx doctor --fix${scope.tests ? ' --tests' : ''}`;
        if (!ok) out.line(stillMissing.length > 0 ? `\nfix it with: ${fixCommand}   (apt-get install ${stillMissing.join(' ')})` : '\nsee the notes above');
        else out.line(scope.tests ? '\nthis host can build and run tinyx images and run every tier of npm test' : '\nthis host can build tinyx images');
      }
      process.exitCode = ok ? EXIT.ok : EXIT.host;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

/** The packages `--fix` installs for these checks: the registry's choice for what failed (optional ones too). */
function missingPackages(scope: HostScope, checks: readonly Check[]): string[] {
  return packagesToInstall(scope, new Set(checks.filter((c) => !c.ok).map((c) => c.path ?? c.name)));
}

function needsFixing(scope: HostScope, checks: readonly Check[]): boolean {
  return missingPackages(scope, checks).length > 0 || checks.some((c) => c.name === 'overlayfs' && !c.ok);
}

/**
 * apt-get install of the missing packages, then `modprobe overlay` when the
 * kernel has OverlayFS as a module not yet loaded (kmod may be one of the
 * packages). apt-get update runs first, every time: a fresh Debian has no
 * package lists at all, and lists even a few days old name versions the
 * mirror has replaced (a security update), so that install fails with a 404;
 * the update costs seconds, and only when something is missing.
 */
async function fixHost(packages: readonly string[], onLine: (line: string) => void): Promise<void> {
  if (packages.length > 0) {
    onLine(`installing: ${packages.join(' ')}`);
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    const hint = "check the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d) and that the mirror is reachable";
    await run('apt-get', ['update', '-q'], { env, onLine, hint });
    await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { env, onLine, hint });
  }
  if (!(await hasOverlayFs())) await run('modprobe', ['overlay'], { allowFailure: true, onLine });
}

export async function runChecks(scope: HostScope = { tests: false }): Promise<Check[]> {
  const { tools, files } = hostScope(scope);
  const checks: Check[] = [];
  checks.push({ name: 'root', ok: isRoot(), detail: isRoot() ? 'running as root' : 'debootstrap, chroot and mounts need root', fix: 'run as root (sudo)' });
  const overlay = await hasOverlayFs();
  checks.push({ name: 'overlayfs', ok: overlay, detail: overlay ? 'the kernel has OverlayFS' : 'no "overlay" in /proc/filesystems', fix: 'modprobe overlay' });
  for (const tool of tools) {
    const path = await findOnPath(tool.command);
    const purpose = tool.neededFor === 'tests' ? `${tool.purpose} (tests)` : tool.purpose;
    checks.push({ name: tool.command, ok: !!path, detail: path ? `${path}: ${purpose}` : purpose, debianPackage: tool.debianPackage, ...(isOptional(tool, scope) ? { optional: true } : {}) });
  }
  // Xen: only in dom0 (test/xen boots one inside QEMU to test on); no package makes a host dom0.
  const xenMissing = await getBackend('xen').unavailable();
  checks.push({ name: 'xen', ok: !xenMissing, detail: xenMissing ?? 'xl in dom0: tinyx run --backend xen and tinyx pool', optional: true });
  // Which accelerator tinyx run will pick (TCG is slower, never wrong).
  const accel = await detectAccel();
  checks.push({ name: 'accelerator', ok: true, detail: `tinyx run will use ${accel.accel}: ${accel.reason}` });
  const missingFiles = await missingHostFiles(files);
  for (const file of files) {
    const ok = !missingFiles.includes(file);
    checks.push({ name: file.debianPackage, ok, detail: `${file.path}: ${file.purpose}`, debianPackage: file.debianPackage, path: file.path, ...(isOptional(file, scope) ? { optional: true } : {}) });
  }
  return checks;
}
