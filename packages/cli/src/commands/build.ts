import type { Argv, CommandModule } from 'yargs';
import { COMPRESSIONS, KERNEL_FEATURES, OUTPUT_FORMATS, formatBytes, type Compression, type KernelFeature, type OutputFormat } from '@tinyx/builder';
import { recipeFrom, recipeOptions, recipeSearchHelp, runBuild, sourceFrom, sourceOptions, type RecipeArgs, type SourceArgs } from '../build-options.js';
import { PLATFORMS, PLATFORM_NAMES, ROOT_FORMATS, isRootFormat } from '@tinyx/image';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError } from '../output.js';

interface BuildArgs extends GlobalArgs, RecipeArgs, SourceArgs {
  out?: string;
  format?: OutputFormat;
  compression?: Compression;
  kernel: boolean;
  trace: boolean;
  verify: boolean;
  'relay-loopback': boolean;
  'kernel-features'?: string;
}

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build [recipe]',
  describe: 'Build a minimal VM image for one application',
  builder: (yargs) =>
    sourceOptions(recipeOptions(globalOptions(yargs as Argv<object>), 'build'))
      .option('out', { type: 'string', describe: 'the image directory to write', defaultDescription: 'out/<name>' })
      .option('format', {
        choices: Object.keys(OUTPUT_FORMATS) as OutputFormat[],
        defaultDescription: `the platform's: ${PLATFORM_NAMES.map((p) => `${PLATFORMS[p].defaultFormat} for ${p}`).join(', ')}`,
        describe: `root filesystem format: ${Object.entries(OUTPUT_FORMATS)
          .map(([name, f]) => `${name} (${f.fileName})`)
          .join(', ')}`,
      })
      .option('compression', {
        choices: Object.keys(COMPRESSIONS) as Compression[],
        describe: `how the initramfs is compressed (given alone, it asks for an initramfs): ${Object.entries(COMPRESSIONS)
          .map(([name, c]) => `${name}: ${c.describe}`)
          .join('; ')}`,
        defaultDescription: 'gzip',
      })
      .option('kernel', { type: 'boolean', default: true, describe: 'build the kernel too (--no-kernel: the root filesystem only)' })
      .option('kernel-features', {
        type: 'string',
        describe: `kernel features beyond what the app needs, comma-separated (${Object.keys(KERNEL_FEATURES).join(', ')}): images built with the same set share one kernel`,
      })
      .option('trace', {
        type: 'boolean',
        default: true,
        describe: 'run the app once in the full install under strace and add what it used (--no-trace: static analysis only)',
      })
      .option('verify', {
        type: 'boolean',
        default: true,
        describe: "start the app from the image's own root and pass its probe and check before writing the image (--no-verify: skip)",
      })
      .option('relay-loopback', {
        type: 'boolean',
        default: true,
        describe:
          "an app that listens only at loopback addresses (its package's configuration: redis, memcached, mariadb) is reached at the VM's own address through a relay in the image, as a container's published port (--no-relay-loopback: it stays local, out of reach)",
      })
      .example('$0 build nginx', 'build out/nginx (kernel and root: a read-only erofs disk on kvm) from the recipe nginx.yaml')
      .example('$0 build nginx --format initramfs', 'the root as an initramfs, unpacked into the guest\'s RAM at boot')
      .example('$0 build ./myapp.yaml --out images/myapp', 'build from your own recipe file')
      .example('$0 build myapp --recipes images/recipes', 'build images/recipes/myapp.yaml (./recipes/myapp.yaml needs no --recipes)')
      .example('$0 build --package haproxy --verbose', "no recipe: the package's systemd unit says how to run it (--verbose shows what was taken from it)")
      .example('$0 build --package memcached --cmd "/usr/bin/memcached -u nobody -p 11211" --port 11211', 'no recipe: one package, its command, its port')
      .example('$0 build nginx --platform xen-pvh', 'for Xen PVH (vmlinuz, vmlinux, initrd and an xl config)')
      .example('$0 build nginx --compression xz', 'the smallest initrd (the kernel gets CONFIG_RD_XZ)')
      .example('$0 build redis --no-kernel --format tar --json', 'a tar of the root only, and the manifest as JSON on stdout')
      .epilog(
        `${recipeSearchHelp()}\n\n` +
          'The steps: load the recipe, bootstrap a Debian base (cached), install the packages in an OverlayFS (cached), trace the app in the full install (strace: what it opens, runs, calls), resolve what it needs at run time (ELF closure + package data + the trace), assemble the root with BusyBox and a generated /init, verify that the app starts and passes its probe in that root, build the kernel (tinyconfig + platform + the features the app needs; cached by its .config), pack, write the image directory. Needs root.',
      ) as unknown as Argv<BuildArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      const build = await runBuild(out, {
        ...recipeFrom(args),
        ...sourceFrom(args),
        ...(args.out ? { outDir: args.out } : {}),
        ...(args.format ? { format: args.format } : {}),
        ...(args.compression ? { compression: args.compression } : {}),
        kernel: args.kernel,
        ...(args['kernel-features'] ? { kernelFeatures: args['kernel-features'].split(',').map((f) => f.trim()).filter(Boolean) as KernelFeature[] } : {}),
        trace: args.trace,
        verify: args.verify,
        relayLoopback: args['relay-loopback'],
      });
      const manifest = build.manifest;
      if (out.json) {
        out.result({ ok: true, imageDir: build.outDir, manifest });
      } else {
        const s = manifest.sizes;
        out.line(`\n${manifest.name}: ${build.outDir}`);
        if (s.kernel !== null) out.line(`  kernel           vmlinuz  ${formatBytes(s.kernel)} (Linux ${manifest.kernel!.version}, ${manifest.kernel!.platform}, ${manifest.kernel!.enabledOptions} options)`);
        // A disk (erofs) is read page by page, never unpacked: the size of its files is what it holds.
        const disk = isRootFormat(manifest.format) && ROOT_FORMATS[manifest.format].boots === 'disk';
        const inside = disk ? `${formatBytes(s.rootFiles)} of files` : `${formatBytes(s.initrdUncompressed)} unpacked`;
        out.line(`  root filesystem  ${manifest.artifacts.rootfs}  ${formatBytes(s.initrd)} (${inside}, ${manifest.files.length} files, ${manifest.packages.length} packages)`);
        const derived = manifest.derivedFrom;
        if (derived) {
          out.line(`  recipe from      ${derived.unit}${args.verbose ? '' : ' (--verbose, or tinyx inspect, shows what was taken from it)'}`);
          if (args.verbose) {
            for (const f of derived.fields) out.line(`    ${f.key}=${f.value} -> ${f.became}`);
            for (const n of derived.notCarried) out.line(`    not carried over: ${n.key}=${n.value} (${n.why})`);
          }
        }
        out.line(`  inspect it with: tinyx inspect ${build.outDir}`);
      }
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};
