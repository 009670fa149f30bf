import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { HOST_FILES, HOST_TOOLS, hostFilePattern, testTierFiles, testTierTools, type HostFile } from '@tinyx/image';

/** What a test file needs beyond its tier: the kernel step's tools and files, and commands of its own. */
export interface ExtraNeeds {
  /** The file builds kernels: every HOST_TOOLS and HOST_FILES entry needed for the kernel step. */
  kernel?: boolean;
  /** Commands the file runs itself; each must be in HOST_TOOLS (packages/builder/src/host-tools.ts). */
  tools?: readonly string[];
}

const FIX = 'tinyx doctor --fix --tests';
const PATH = `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;

/**
 * Why a tier that builds images (integration, xen), or a test file of it with
 * `extra` needs, cannot run on this host; undefined when it can. What it
 * checks comes from the host-tools registry, the list `tinyx doctor --fix
 * --tests` installs from, so a host that ran it lacks nothing here.
 */
export function missingCapability(tier: 'integration' | 'xen' = 'integration', extra: ExtraNeeds = {}): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (debootstrap, chroot and OverlayFS mounts need root)';
  if (!/\boverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'))) {
    try {
      execFileSync('modprobe', ['overlay'], { stdio: 'ignore', env: { ...process.env, PATH } });
    } catch {
      return 'no OverlayFS in this kernel';
    }
  }
  const kernel = (need: { neededFor: string }): boolean => !!extra.kernel && need.neededFor === 'kernel';
  const tools = new Set([...testTierTools(tier), ...HOST_TOOLS.filter(kernel).map((tool) => tool.command), ...(extra.tools ?? [])]);
  for (const command of tools) {
    const tool = HOST_TOOLS.find((t) => t.command === command);
    // A programming error, not a host problem: a test declares every host tool it runs in the registry.
    if (!tool) throw new Error(`a test asks for ${command}, which is not in HOST_TOOLS (packages/builder/src/host-tools.ts): add it there`);
    try {
      execFileSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore', env: { ...process.env, PATH } });
    } catch {
      return `${command} is not installed (apt-get install ${tool.debianPackage}, or ${FIX})`;
    }
  }
  for (const file of [...testTierFiles(tier), ...HOST_FILES.filter(kernel)]) {
    if (!hostFilePresent(file)) return `${file.path} is missing (apt-get install ${file.debianPackage}, or ${FIX})`;
  }
  return undefined;
}

function hostFilePresent(file: HostFile): boolean {
  const { dir, name } = hostFilePattern(file);
  try {
    return readdirSync(dir).some((entry) => name.test(entry));
  } catch {
    return false;
  }
}
