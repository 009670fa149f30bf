import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { build, KERNEL_BOOT_PATHS, TINYX_ARTIFACT_TYPE } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { parse } from 'yaml';
import { integrationTest } from '../helpers/capabilities.js';
import { virtualMachineValidator } from '../helpers/kubevirt-schema.js';
import { runCli } from '../helpers/cli.js';

// tinyx push and pull against a real registry: Debian's docker-registry (the
// reference distribution server) on 127.0.0.1, read back by an independent
// client (skopeo), and the pulled image booted under QEMU.
const test = integrationTest({ kernel: true, tools: ['docker-registry', 'skopeo', 'qemu-system-x86_64', 'tar'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-registry-'));
const nginxDir = join(work, 'nginx');
let registry: ChildProcess | undefined;
let address = '';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test.before(async () => {
  // nginx's kernel is the one kernel.test.ts builds (a cache hit); an initramfs, so that the push has a kernel-boot container too.
  await build({ recipe: 'nginx', outDir: nginxDir, format: 'initramfs' });
  const port = await freePort();
  address = `127.0.0.1:${port}`;
  const config = join(work, 'registry.yml');
  await writeFile(config, `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, 'registry-data')}\nhttp:\n  addr: ${address}\n`);
  registry = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://${address}/v2/`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 100) throw new Error(`docker-registry did not answer on ${address}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test.after.always(async () => {
  registry?.kill('SIGTERM');
  await removeTree(work);
});

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function filesOf(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = sha256(await readFile(join(dir, name)));
  return out;
}

function skopeo(...args: string[]): string {
  return execFileSync('skopeo', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

test.serial('push, read back by skopeo (index, artifact, kernel-boot container, an OCI layout copy with the same digests), pull into a fresh directory byte for byte, and the pulled image boots and answers HTTP', async (t) => {
  const ref = `${address}/tinyx/nginx:1.0`;
  const pushed = await runCli(['push', nginxDir, ref, '--insecure', '--json']);
  t.is(pushed.code, 0, pushed.stderr);
  const result = JSON.parse(pushed.stdout) as { digest: string; artifact: string; kernelBoot: string | null; sent: number; present: number };
  t.regex(result.digest, /^sha256:[0-9a-f]{64}$/);
  t.truthy(result.kernelBoot, 'an initramfs image with a kernel gets a kernel-boot container');
  t.is(result.present, 0);

  // The index as the registry serves it, read by another client.
  const index = JSON.parse(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${ref}`)) as { mediaType: string; manifests: { digest: string; artifactType?: string; platform?: { os: string; architecture: string } }[] };
  t.is(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.is(`sha256:${sha256(Buffer.from(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${ref}`)))}`, result.digest, "the registry serves the bytes tinyx's digest names");
  t.deepEqual(index.manifests.map((m) => m.digest), [result.artifact, result.kernelBoot]);
  t.is(index.manifests[0]!.platform, undefined, 'the artifact: no platform for a runtime to pick');
  t.deepEqual(index.manifests[1]!.platform, { architecture: 'amd64', os: 'linux' });

  // The artifact: manifest.json as config, every other file a layer titled with its name, the same bytes.
  const artifact = JSON.parse(skopeo('inspect', '--tls-verify=false', '--raw', `docker://${address}/tinyx/nginx@${result.artifact}`)) as { artifactType: string; config: { digest: string }; layers: { digest: string; size: number; annotations: Record<string, string> }[] };
  t.is(artifact.artifactType, TINYX_ARTIFACT_TYPE);
  const local = await filesOf(nginxDir);
  t.is(artifact.config.digest, `sha256:${local['manifest.json']}`);
  t.deepEqual(Object.fromEntries(artifact.layers.map((l) => [l.annotations['org.opencontainers.image.title'], l.digest.slice('sha256:'.length)])), Object.fromEntries(Object.entries(local).filter(([name]) => name !== 'manifest.json')));

  // A container runtime's view (skopeo picks linux/amd64): one layer, the image's labels.
  const runtimeView = JSON.parse(skopeo('inspect', '--tls-verify=false', `docker://${ref}`)) as { Layers: string[]; Labels: Record<string, string>; Os: string };
  t.is(runtimeView.Layers.length, 1);
  t.is(runtimeView.Labels['org.opencontainers.image.title'], 'nginx');
  t.is(runtimeView.Os, 'linux');

  // Copied whole to an OCI layout: the same index digest, and the layer's tar holds the kernel and the initramfs at the documented paths.
  const layout = join(work, 'layout');
  // --preserve-digests: skopeo would otherwise gzip the uncompressed layer (a new digest); with it, it refuses any change.
  skopeo('copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:copy`);
  const layoutIndex = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  t.is(layoutIndex.manifests[0]!.digest, result.digest, 'skopeo copies the push without changing a byte');
  const bootManifest = JSON.parse(await readFile(join(layout, 'blobs/sha256', result.kernelBoot!.slice('sha256:'.length)), 'utf8')) as { layers: { digest: string }[] };
  const unpacked = join(work, 'unpacked');
  await mkdir(unpacked);
  execFileSync('tar', ['-xf', join(layout, 'blobs/sha256', bootManifest.layers[0]!.digest.slice('sha256:'.length)), '-C', unpacked]);
  const manifest = JSON.parse(await readFile(join(nginxDir, 'manifest.json'), 'utf8')) as { artifacts: { kernel: string; rootfs: string } };
  t.is(sha256(await readFile(join(unpacked, KERNEL_BOOT_PATHS.kernel))), local[manifest.artifacts.kernel]!);
  t.is(sha256(await readFile(join(unpacked, KERNEL_BOOT_PATHS.initrd))), local[manifest.artifacts.rootfs]!);

  // The KubeVirt VirtualMachine for this push: valid against KubeVirt's schema, and the paths it names are those files.
  const exported = await runCli(['export', 'kubevirt', nginxDir, '--ref', `${address}/tinyx/nginx@${result.digest}`]);
  t.is(exported.code, 0, exported.stderr);
  t.true(exported.stdout.startsWith('# written by tinyx export kubevirt\n'));
  const userYaml = join(work, 'vm.yaml');
  await writeFile(userYaml, 'apiVersion: v1\nkind: ConfigMap\n');
  const refused = await runCli(['export', 'kubevirt', nginxDir, '--ref', ref, '--out', userYaml]);
  t.is(refused.code, 2, 'a file of the user\'s is not overwritten');
  t.is(await readFile(userYaml, 'utf8'), 'apiVersion: v1\nkind: ConfigMap\n');
  const vm = parse(exported.stdout) as { spec: { template: { spec: { domain: { firmware: { kernelBoot: { container: { image: string; kernelPath: string; initrdPath: string } } } } } } } };
  const validate = await virtualMachineValidator();
  t.true(validate(vm), JSON.stringify(validate.errors));
  const container = vm.spec.template.spec.domain.firmware.kernelBoot.container;
  t.is(container.image, `${address}/tinyx/nginx@${result.digest}`);
  t.is(sha256(await readFile(join(unpacked, container.kernelPath))), local[manifest.artifacts.kernel]!);
  t.is(sha256(await readFile(join(unpacked, container.initrdPath))), local[manifest.artifacts.rootfs]!);

  // Pulled by digest into a fresh directory: every file the same bytes; then it boots.
  const pulledDir = join(work, 'pulled');
  const pulled = await runCli(['pull', `${address}/tinyx/nginx@${result.digest}`, '--out', pulledDir, '--insecure', '--json']);
  t.is(pulled.code, 0, pulled.stderr);
  t.deepEqual(await filesOf(pulledDir), local);
  const run = await runCli(['run', pulledDir, '--check', '--json']);
  t.is(run.code, 0, run.stderr.slice(-2000));
  t.is((JSON.parse(run.stdout) as { ok: boolean }).ok, true);
});

test.serial('the same directory pushes the same digest, and sends no blob the registry has', async (t) => {
  const first = await runCli(['push', nginxDir, `${address}/tinyx/nginx:a`, '--insecure', '--json']);
  const second = await runCli(['push', nginxDir, `${address}/tinyx/nginx:b`, '--insecure', '--json']);
  t.is(first.code, 0, first.stderr);
  t.is(second.code, 0, second.stderr);
  const [a, b] = [first, second].map((r) => JSON.parse(r.stdout) as { digest: string; sent: number; present: number });
  t.is(a!.digest, b!.digest);
  t.is(b!.sent, 0);
  t.true(b!.present >= 6);
});

test.serial('pull refuses what is not a tinyx image, and a directory tinyx did not write, leaving it as it was', async (t) => {
  const pushed = JSON.parse((await runCli(['push', nginxDir, `${address}/tinyx/nginx:c`, '--insecure', '--json'])).stdout) as { kernelBoot: string };
  // The kernel-boot container alone is an ordinary container image: no tinyx artifact in it.
  const container = await runCli(['pull', `${address}/tinyx/nginx@${pushed.kernelBoot}`, '--out', join(work, 'x'), '--insecure']);
  t.is(container.code, 2);
  t.regex(container.stderr, /is not a tinyx image \(no manifest of artifact type application\/vnd\.tinyx\.image\.v1\)/);

  const mine = join(work, 'mine');
  await mkdir(mine);
  await writeFile(join(mine, 'notes.txt'), 'my notes');
  const refused = await runCli(['pull', `${address}/tinyx/nginx:c`, '--out', mine, '--insecure']);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /--out .*mine: holds notes\.txt and no image that tinyx wrote/);
  t.deepEqual(await readdir(mine), ['notes.txt']);

  const missing = await runCli(['pull', `${address}/tinyx/absent:1`, '--insecure']);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /tinyx\/absent: no such image/);

  // HTTPS to a plain-HTTP registry: the error says --insecure.
  const plain = await runCli(['push', nginxDir, `${address}/tinyx/nginx:d`]);
  t.is(plain.code, 1);
  t.regex(plain.stderr, /could not be reached[^]*hint: it may speak plain HTTP: add --insecure/);
});

test.serial('a layer titled with a path is refused: nothing lands outside the directory', async (t) => {
  // An artifact made by hand, as a hostile registry could serve: its layer titled "../escaped".
  const repo = `http://${address}/v2/tinyx/hostile`;
  const manifestJson = await readFile(join(nginxDir, 'manifest.json'));
  const upload = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = `sha256:${sha256(bytes)}`;
    const start = await fetch(`${repo}/blobs/uploads/`, { method: 'POST' });
    const url = new URL(start.headers.get('location')!, `${repo}/`);
    url.searchParams.set('digest', digest);
    const put = await fetch(url, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    t.is(put.status, 201);
    return { digest, size: bytes.length };
  };
  const config = await upload(manifestJson);
  const layer = await upload(Buffer.from('not a kernel'));
  const document = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: TINYX_ARTIFACT_TYPE,
    config: { mediaType: 'application/vnd.tinyx.image.manifest.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.tinyx.kernel.bzimage', ...layer, annotations: { 'org.opencontainers.image.title': '../escaped' } }],
  };
  const put = await fetch(`${repo}/manifests/1`, { method: 'PUT', body: JSON.stringify(document), headers: { 'content-type': document.mediaType } });
  t.is(put.status, 201);
  const out = join(work, 'hostile', 'image');
  const pulled = await runCli(['pull', `${address}/tinyx/hostile:1`, '--out', out, '--insecure']);
  t.is(pulled.code, 2);
  t.regex(pulled.stderr, /a layer is titled "\.\.\/escaped", not a file of a tinyx image directory/);
  t.deepEqual(await readdir(work).then((names) => names.filter((n) => n === 'escaped' || n === 'hostile')), [], 'nothing written: not the file, not the directory');

  // A config that is not a tinyx manifest.json (not even JSON) is named as such, not a crash.
  const notJson = await upload(Buffer.from('{ not json'));
  const other = { ...document, config: { mediaType: 'application/vnd.tinyx.image.manifest.v1+json', ...notJson } };
  t.is((await fetch(`${repo}/manifests/2`, { method: 'PUT', body: JSON.stringify(other), headers: { 'content-type': document.mediaType } })).status, 201);
  const garbled = await runCli(['pull', `${address}/tinyx/hostile:2`, '--out', out, '--insecure']);
  t.is(garbled.code, 2);
  t.regex(garbled.stderr, /its manifest\.json is not one this tinyx reads/);
});
