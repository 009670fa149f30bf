import type { Argv, CommandModule } from 'yargs';
import { formatBytes, type Manifest } from '@tinyx/builder';
import { ROOT_FORMATS, isRootFormat, readManifest } from '@tinyx/image';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError } from '../output.js';

interface InspectArgs extends GlobalArgs {
  image: string;
  files?: boolean;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <image>',
  describe: 'Show what is inside an image directory: sizes, packages, files',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory (out/<name>)' })
      .option('files', { type: 'boolean', describe: 'list every file with its size and package' })
      .example('$0 inspect out/nginx', 'sizes, the entrypoint, packages and the largest files')
      .example('$0 inspect out/nginx --files', 'every file')
      .example('$0 inspect out/nginx --json | jq .packages', 'the manifest, for scripts') as unknown as Argv<InspectArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      // The builder's Manifest types what the one reader of the contract read.
      const manifest = (await readManifest(args.image)) as Manifest;
      if (out.json) out.result(manifest);
      else printManifest(manifest, args.image, !!args.files, out.line);
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

function printManifest(m: Manifest, dir: string, allFiles: boolean, line: (text?: string) => void): void {
  const s = m.sizes;
  line(`${m.name}  (${dir})`);
  if (m.recipe.description) line(`  ${m.recipe.description}`);
  line();
  line(`entrypoint   ${m.entrypoint.cmd.join(' ')}  (as ${m.entrypoint.user}, uid ${m.entrypoint.uid})`);
  line(`readiness    ${m.readiness ? JSON.stringify(m.readiness) : 'none'}`);
  line(`platform     ${m.platform}    format ${m.format}`);
  if (m.boot) line(`boot         ${m.boot.cmdline}  (the kernel command line the image needs; the backend adds its console and the network)`);
  line();
  // Only images built with --package and no --cmd have it (and none built before tinyx read units).
  if (m.derivedFrom) {
    line(`recipe from  ${m.derivedFrom.unit}`);
    for (const f of m.derivedFrom.fields) line(`  ${f.key}=${f.value} -> ${f.became}`);
    for (const n of m.derivedFrom.notCarried) line(`  not carried over: ${n.key}=${n.value} (${n.why})`);
    line();
  }
  // Images built before the trace and verify steps existed, or with --no-trace / --no-verify, have none.
  if (m.trace) {
    line(`trace        ${m.trace.outcome} (${m.trace.seconds} s): ${m.trace.added.length} paths added`);
    for (const a of m.trace.added.slice(0, allFiles ? undefined : 8)) line(`  ${a.path}  (${a.reason})`);
    if (!allFiles && m.trace.added.length > 8) line(`  ... ${m.trace.added.length - 8} more (--files lists them all)`);
  }
  if (m.verify) line(`verify       ${m.verify.outcome}${m.verify.check ? `; check: ${m.verify.check}` : ''} (${m.verify.seconds} s)`);
  if (m.relay && m.relay.length > 0) line(`relay        the VM's address to ${m.relay.map((r) => `${r.address}:${r.port}`).join(', ')}, where the app listens (loopback only)`);
  if (m.trace || m.verify) line();
  line('sizes');
  line(`  kernel             ${s.kernel === null ? '(none: built with --no-kernel)' : `vmlinuz ${formatBytes(s.kernel)}${s.vmlinux ? `, vmlinux ${formatBytes(s.vmlinux)}` : ''}`}`);
  const rootAs = isRootFormat(m.format) ? ROOT_FORMATS[m.format].boots : null;
  const how = rootAs === 'disk' ? 'a read-only disk, read page by page' : m.compression ? `${formatBytes(s.initrdUncompressed)} unpacked` : 'uncompressed';
  line(`  ${m.artifacts.rootfs.padEnd(18)} ${formatBytes(s.initrd)}  (${how})`);
  line(`  files              ${m.files.length} files, ${formatBytes(s.rootFiles)}; ${m.symlinks.length} symlinks`);
  line(`  total              ${formatBytes(s.total)}`);
  line();
  if (m.kernel) {
    const k = m.kernel;
    const root = rootAs === 'disk' ? `the root on an ${m.format} disk` : `initramfs via ${k.decompressor ?? 'no decompressor'}`;
    line(`kernel       Linux ${k.version} for ${k.platform}: ${k.enabledOptions} options, ${root} (${k.source})`);
    for (const f of k.features) line(`  ${f.name.padEnd(14)} ${f.from.join('; ')}`);
    if (k.couldNotDisable.length > 0) line(`  could not switch off: ${k.couldNotDisable.join(', ')}`);
    line();
  }
  line(`packages (${m.packages.length})`);
  const bytesByPackage = new Map<string, number>();
  for (const f of m.files) bytesByPackage.set(f.package ?? '(tinyx)', (bytesByPackage.get(f.package ?? '(tinyx)') ?? 0) + f.size);
  for (const p of m.packages) line(`  ${p.name.padEnd(28)} ${p.version.padEnd(28)} ${String(p.files).padStart(4)} files ${formatBytes(bytesByPackage.get(p.name) ?? 0).padStart(10)}`);
  if (m.excludedPackages.length > 0) line(`  not shipped (blacklist): ${m.excludedPackages.join(', ')}`);
  line();
  // Images built before tinyx read what the install made have no accounts or leftOut.
  const users = m.accounts?.users ?? [];
  if (users.length > 0) {
    line(`accounts (${users.length} users, ${m.accounts.groups.length} groups)`);
    for (const u of users) line(`  ${u.name.padEnd(16)} uid ${String(u.uid).padEnd(6)} ${u.reason}`);
    line();
  }
  const leftOut = m.leftOut ?? [];
  if (leftOut.length > 0) {
    line(`made by the install, left out (${leftOut.length})`);
    for (const l of leftOut) line(`  ${l.path}  (${l.why})`);
    line();
  }
  const files = allFiles ? m.files : [...m.files].sort((a, b) => b.size - a.size).slice(0, 10);
  line(allFiles ? `files (${m.files.length})` : 'largest files');
  for (const f of files) line(`  ${formatBytes(f.size).padStart(10)}  ${f.mode}  ${f.path}  [${f.package ?? 'tinyx'}: ${f.reason}]`);
  line();
  line(`built with tinyx ${m.build.tinyx} from ${m.build.suite} (${m.build.architecture}), SOURCE_DATE_EPOCH=${m.build.sourceDateEpoch}`);
  line(`  steps: ${Object.entries(m.build.seconds)
    .map(([step, sec]) => `${step} ${sec}s${m.build.cached.includes(step) ? ' (cached)' : ''}`)
    .join(', ')}`);
}
