import type { Argv, CommandModule } from 'yargs';
import { KERNEL_BOOT_PATHS, TINYX_ARTIFACT_TYPE, formatBytes, pullImage, pushImage } from '@tinyx/builder';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError } from '../output.js';

interface PushArgs extends GlobalArgs {
  image: string;
  ref: string;
  insecure?: boolean;
}

interface PullArgs extends GlobalArgs {
  ref: string;
  out?: string;
  insecure?: boolean;
}

const REGISTRY_EPILOG = [
  `Layout: the reference names an OCI image index. Its tinyx artifact (artifactType ${TINYX_ARTIFACT_TYPE}) has manifest.json as its config and each other file of the image directory as a layer titled with its name; tinyx pull reads it. An image with a kernel and an initramfs also gets a linux/amd64 container image of one tar layer holding ${KERNEL_BOOT_PATHS.kernel} and ${KERNEL_BOOT_PATHS.initrd}: what KubeVirt's kernelBoot.container boots.`,
  'Credentials: from docker login or podman login ($DOCKER_CONFIG/config.json or ~/.docker/config.json, then $REGISTRY_AUTH_FILE or $XDG_RUNTIME_DIR/containers/auth.json); credential helpers are not run. An anonymous registry needs none.',
].join('\n\n');

const insecure = { type: 'boolean', describe: 'plain HTTP instead of HTTPS, for a registry on localhost or your own network' } as const;

export const pushCommand: CommandModule<object, PushArgs> = {
  command: 'push <image> <ref>',
  describe: 'Push an image directory to an OCI registry (and as a kernel-boot container, for KubeVirt)',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'an image directory (out/<name>)' })
      .positional('ref', { type: 'string', demandOption: true, describe: 'where to: REGISTRY/REPOSITORY[:TAG] (the tag defaults to latest)' })
      .option('insecure', insecure)
      .example('$0 push out/nginx ghcr.io/you/nginx:1.0', 'push to a registry you have logged in to')
      .example('$0 push out/nginx localhost:5000/tinyx/nginx --insecure', 'to a plain-HTTP registry on this machine')
      .example('$0 push out/nginx localhost:5000/tinyx/nginx --insecure --json | jq -r .digest', 'the digest, for a script')
      .epilog(`The same directory pushes the same digest: nothing in the push depends on the clock. Blobs the registry has already are not sent again.\n\n${REGISTRY_EPILOG}`) as unknown as Argv<PushArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    const interrupt = interruptSignal();
    try {
      const result = await pushImage(args.image, args.ref, { insecure: !!args.insecure, signal: interrupt.signal, progress: out.note });
      if (out.json) out.result({ ok: true, ...result });
      else {
        out.line(`pushed ${args.image} to ${result.reference}`);
        out.line(`  digest       ${result.digest}`);
        out.line(`  blobs        ${result.sent} sent (${formatBytes(result.bytesSent)}), ${result.present} already there`);
        out.line(`  kernel boot  ${result.kernelBoot ? `linux/amd64 container with ${KERNEL_BOOT_PATHS.kernel} and ${KERNEL_BOOT_PATHS.initrd}` : 'none (it needs a kernel and an initramfs root: build with --format initramfs)'}`);
        out.line(`  pull it with: tinyx pull ${result.reference.replace(/:[^:/]+$/, '')}@${result.digest}`);
      }
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    } finally {
      interrupt.dispose();
    }
  },
};

export const pullCommand: CommandModule<object, PullArgs> = {
  command: 'pull <ref>',
  describe: 'Pull an image that tinyx push wrote into an image directory',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('ref', { type: 'string', demandOption: true, describe: 'REGISTRY/REPOSITORY[:TAG] or REGISTRY/REPOSITORY@sha256:DIGEST' })
      .option('out', { type: 'string', describe: "the image directory to write (default: out/<the image's name>); replaced only if tinyx wrote it" })
      .option('insecure', insecure)
      .example('$0 pull ghcr.io/you/nginx:1.0', 'into out/nginx, then: tinyx run out/nginx')
      .example('$0 pull localhost:5000/tinyx/nginx@sha256:... --out images/nginx --insecure', 'exactly one push, into a directory of your choice')
      .epilog(`Every blob is checked against its digest as it arrives; the directory appears whole or not at all.\n\n${REGISTRY_EPILOG}`) as unknown as Argv<PullArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    const interrupt = interruptSignal();
    try {
      const result = await pullImage(args.ref, { insecure: !!args.insecure, out: args.out, signal: interrupt.signal, progress: out.note });
      if (out.json) out.result({ ok: true, ...result });
      else {
        out.line(`pulled ${result.reference} into ${result.dir}`);
        out.line(`  digest  ${result.digest}`);
        out.line(`  files   ${result.files.join(', ')}`);
        out.line(`  run it with: tinyx run ${result.dir}`);
      }
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    } finally {
      interrupt.dispose();
    }
  },
};
