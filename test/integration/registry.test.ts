import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { build, KERNEL_BOOT_PATHS, TINYX_ARTIFACT_TYPE } from '@tinyx/builder';
import { Cache, defaultCacheDir, removeTree, SharedCache } from '@tinyx/builder/internals';
import { parse } from 'yaml';
import { integrationTest } from '../helpers/capabilities.js';
import { virtualMachineValidator } from '../helpers/kubevirt-schema.js';
import { REPO_ROOT, runCli, startCli, TINYX_BIN } from '../helpers/cli.js';

// tinyx push and pull against a real registry: Debian's docker-registry (the
// reference distribution server) on 127.0.0.1, read back by an independent
// client (skopeo), and the pulled image booted under QEMU.
const test = integrationTest({ kernel: true, tools: ['docker-registry', 'skopeo', 'qemu-system-x86_64', 'tar', 'htpasswd', 'bash', 'openssl'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-registry-'));
const nginxDir = join(work, 'nginx');
const registries: ChildProcess[] = [];
let address = '';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts Debian's docker-registry on 127.0.0.1 with its data under work/NAME; with a user, it asks for that user's password (htpasswd, bcrypt). */
async function startRegistry(name: string, user?: { name: string; password: string }, tokenAuth?: string): Promise<string> {
  const at = `127.0.0.1:${await freePort()}`;
  const dir = join(work, `registry-${name}`);
  await mkdir(dir);
  let auth = tokenAuth ?? '';
  if (user) {
    execFileSync('htpasswd', ['-B', '-b', '-c', join(dir, 'htpasswd'), user.name, user.password], { stdio: 'ignore' });
    auth = `auth:\n  htpasswd:\n    realm: tinyx-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  await writeFile(join(dir, 'registry.yml'), `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\nhttp:\n  addr: ${at}\n${auth}`);
  registries.push(spawn('docker-registry', ['serve', join(dir, 'registry.yml')], { stdio: 'ignore' }));
  for (let i = 0; ; i++) {
    // 200, or 401 from one that asks for a password: it answers.
    const answered = await fetch(`http://${at}/v2/`).then((r) => r.status === 200 || r.status === 401, () => false);
    if (answered) return at;
    if (i > 100) throw new Error(`docker-registry did not answer on ${at}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test.before(async () => {
  // nginx's kernel is the one kernel.test.ts builds (a cache hit); an initramfs, so that the push has a kernel-boot container too.
  await build({ recipe: 'nginx', outDir: nginxDir, format: 'initramfs' });
  address = await startRegistry('open');
});

test.after.always(async () => {
  for (const registry of registries) registry.kill('SIGTERM');
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
  const pushed = JSON.parse((await runCli(['push', nginxDir, `${address}/tinyx/nginx:c`, '--insecure', '--json'])).stdout) as { kernelBoot: string; digest: string };
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

  // A plain-HTTP registry on this machine needs no --insecure (Docker's rule for 127.0.0.0/8): the same push.
  const loopback = await runCli(['push', nginxDir, `${address}/tinyx/nginx:d`, '--json']);
  t.is(loopback.code, 0, loopback.stderr);
  t.is((JSON.parse(loopback.stdout) as { digest: string }).digest, pushed.digest);

  // Elsewhere, HTTPS to a server that speaks plain HTTP: the error says --insecure. This host's own address
  // on another interface stands for one (a plain HTTP server: the TLS handshake is what fails).
  const own = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
  t.truthy(own, 'this host has an IPv4 address besides loopback');
  const server = createHttpServer((_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => server.listen(0, own!.address, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const plain = await runCli(['push', nginxDir, `${own!.address}:${(server.address() as { port: number }).port}/tinyx/nginx:d`]);
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

/** The ```yaml block under "### In CI" in the README: the workflow users copy. */
async function readmeWorkflow(): Promise<string> {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^### /m).find((s) => s.startsWith('In CI\n'));
  const block = section && /^```yaml\n([\s\S]*?)^```$/m.exec(section)?.[1];
  if (!block) throw new Error('README.md: no ```yaml block under "### In CI"');
  return block;
}

interface Workflow {
  jobs: Record<string, { env: Record<string, string>; steps: ({ uses: string } | { run: string })[] }>;
}

test.serial("the README's CI workflow on a runner with an empty cache: the kernel comes from the registry (no source unpacked, nothing compiled), the image is the warm build's, it boots, and it is pushed with Basic auth", async (t) => {
  const user = { name: 'ci', password: 'pass-word' };
  const at = await startRegistry('auth', user);
  const dockerConfig = (password: string): Promise<string> => {
    const dir = join(work, `docker-${password}`);
    return mkdir(dir, { recursive: true })
      .then(() => writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [at]: { auth: Buffer.from(`${user.name}:${password}`).toString('base64') } } })))
      .then(() => dir);
  };
  const login = await dockerConfig(user.password);

  // Without credentials, and with a wrong password: refused, and said so.
  const none = await runCli(['push', nginxDir, `${at}/tinyx/nginx:1`], { env: { DOCKER_CONFIG: join(work, 'no-docker-config'), REGISTRY_AUTH_FILE: join(work, 'none.json') } });
  t.is(none.code, 2);
  t.regex(none.stderr, new RegExp(`the registry asks for a user name and password, and none is stored for ${at}`));
  const wrong = await runCli(['push', nginxDir, `${at}/tinyx/nginx:1`], { env: { DOCKER_CONFIG: await dockerConfig('wrong') } });
  t.is(wrong.code, 2);
  t.regex(wrong.stderr, new RegExp(`the stored credentials for ${at.replace(/\./g, '\\.')} were refused`));

  // A runner with a warm cache fills the cache repository (its kernel and configuration are local cache hits).
  const cacheRepo = `${at}/tinyx-cache`;
  const filled = await runCli(['build', 'nginx', '--format', 'initramfs', '--out', join(work, 'filled'), '--cache-to', cacheRepo], { env: { DOCKER_CONFIG: login } });
  t.is(filled.code, 0, filled.stderr.slice(-3000));
  t.regex(filled.stderr, /the kernel's configuration sent to /);
  t.regex(filled.stderr, /the kernel sent to /);
  const tags = (JSON.parse(skopeo('list-tags', '--tls-verify=false', '--creds', `${user.name}:${user.password}`, `docker://${cacheRepo}`)) as { Tags: string[] }).Tags;
  t.deepEqual(tags.map((tag) => tag.replace(/-[0-9a-f]{24}$/, '')).sort(), ['kernel-configs', 'kernels']);

  // The workflow, step by step, in a project whose node_modules/.bin/tinyx is the checkout's CLI (what `npm ci` gives).
  const workflow = parse(await readmeWorkflow()) as Workflow;
  const [job] = Object.values(workflow.jobs);
  const project = join(work, 'project');
  await mkdir(join(project, 'node_modules/.bin'), { recursive: true });
  await writeFile(join(project, 'package.json'), '{ "name": "ci-example", "private": true }\n');
  await symlink(TINYX_BIN, join(project, 'node_modules/.bin/tinyx'));
  const coldCache = join(work, 'cold-cache');
  // The job's environment on this machine: the cache an empty directory (actions/cache found nothing), the repositories local.
  const env: Record<string, string> = { TINYX_CACHE: coldCache, CACHE_REPO: cacheRepo, IMAGE: `${at}/tinyx/nginx:ci`, DOCKER_CONFIG: login };
  t.deepEqual(Object.keys(job!.env).sort(), ['CACHE_REPO', 'IMAGE', 'TINYX_CACHE'], 'every variable of the job has its value here');
  // What `npm run` exported for the checkout would tie npx to it; npx may run only what the project has.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== 'INIT_CWD'));
  const ran: { run: string; code: number; stdout: string; stderr: string }[] = [];
  for (const step of job!.steps) {
    if ('uses' in step) {
      // Stood in for: the checkout (the project), the cache (an empty one), the login (config.json above).
      t.true(['actions/checkout@', 'actions/cache@', 'docker/login-action@'].some((name) => step.uses.startsWith(name)), `a step the test stands in for: ${step.uses}`);
      continue;
    }
    if (step.run === 'npm ci') continue;
    t.false(step.run.includes('${{'), `${step.run}: an expression only GitHub evaluates`);
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      // As GitHub runs a step that names no shell: bash -e.
      const child = spawn('bash', ['-e', '-c', step.run], { cwd: project, env: { ...inherited, ...env, CI: '1', npm_config_yes: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
    ran.push({ run: step.run, ...result });
    t.is(result.code, 0, `${step.run}:\n${result.stderr.slice(-3000)}`);
    if (result.code !== 0) return;
  }
  t.deepEqual(ran.map((r) => r.run.split(' ').slice(0, 3).join(' ')), ['npx tinyx doctor', 'npx tinyx build', 'npx tinyx inspect', 'npx tinyx run', 'npx tinyx push']);

  // The kernel came from the registry: fetched, never compiled. A compile needs the unpacked source (make -C it), a kept tree, ccache.
  const built = ran.find((r) => r.run.startsWith('npx tinyx build'))!;
  t.regex(built.stderr, /the kernel's configuration fetched from /);
  t.regex(built.stderr, /\[kernel\] cache hit: Linux [\d.]+ for kvm: .*; from 127\.0\.0\.1:\d+\/tinyx-cache/);
  const cacheDirs = await readdir(coldCache);
  for (const never of ['kernel-src', 'kernel-trees', 'ccache']) t.false(cacheDirs.includes(never), `${never}/ in the runner's cache`);
  t.true(cacheDirs.includes('bases'), "the runner's cache was filled by this build (debootstrap and all)");
  // The same image as the warm build, byte for byte (manifest.json differs only in the build's own timings).
  const image = join(project, 'out/nginx');
  const ours = await filesOf(nginxDir);
  const theirs = await filesOf(image);
  t.deepEqual(Object.keys(theirs), Object.keys(ours));
  for (const name of Object.keys(ours).filter((n) => n !== 'manifest.json')) t.is(theirs[name], ours[name], name);
  type Timed = { files: unknown; kernel: { configSha256: string; buildSeconds: number } };
  const [a, b] = await Promise.all([nginxDir, image].map(async (dir) => JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Timed));
  t.deepEqual(b!.files, a!.files);
  t.is(b!.kernel.configSha256, a!.kernel.configSha256);
  t.regex(ran.find((r) => r.run.startsWith('npx tinyx run'))!.stdout, /nginx: ready \d+ ms after the VM was started/);

  // Pushed through Basic auth: the artifact the registry holds is the project's image.
  const pushed = JSON.parse(skopeo('inspect', '--tls-verify=false', '--creds', `${user.name}:${user.password}`, '--raw', `docker://${at}/tinyx/nginx:ci`)) as { manifests: { digest: string }[] };
  const artifact = JSON.parse(skopeo('inspect', '--tls-verify=false', '--creds', `${user.name}:${user.password}`, '--raw', `docker://${at}/tinyx/nginx@${pushed.manifests[0]!.digest}`)) as { config: { digest: string }; layers: { digest: string; annotations: Record<string, string> }[] };
  t.is(artifact.config.digest, `sha256:${theirs['manifest.json']}`);
  t.deepEqual(Object.fromEntries(artifact.layers.map((l) => [l.annotations['org.opencontainers.image.title'], l.digest.slice('sha256:'.length)])), Object.fromEntries(Object.entries(theirs).filter(([n]) => n !== 'manifest.json')));
});

test.serial('a shared cache entry that is not what its tag says, or a registry that cannot be reached, is passed over with a note; a refused --cache-to fails', async (t) => {
  const fresh = async (name: string): Promise<Cache> => {
    const dir = join(work, name);
    await mkdir(dir);
    return new Cache(dir);
  };
  const notes: string[] = [];
  const key = (JSON.parse(await readFile(join(nginxDir, 'manifest.json'), 'utf8')) as { kernel: { configSha256: string } }).kernel.configSha256;
  t.regex(key, /^[0-9a-f]{64}$/);
  // A good entry first: the kernel of this image, taken from the default cache where the warm build left it.
  const home = new Cache(defaultCacheDir());
  const kernels = join(defaultCacheDir(), 'kernels');
  let entryKey: string | undefined;
  for (const name of await readdir(kernels)) {
    const meta = JSON.parse(await readFile(join(kernels, name, 'meta.json'), 'utf8').catch(() => '{}')) as { configSha256?: string };
    if (meta.configSha256 === key) entryKey = name;
  }
  t.truthy(entryKey, "nginx's kernel is in the default cache");
  const to = await SharedCache.open({ to: `${address}/shared`, note: (l) => notes.push(l) });
  await to!.offer(home, 'kernels', entryKey!);
  t.true(notes.some((l) => l === `the kernel sent to ${address}/shared`), notes.join('\n'));
  const from = await SharedCache.open({ from: [`${address}/shared`], note: (l) => notes.push(l) });
  const got = await from!.fetch(await fresh('good'), 'kernels', entryKey!);
  t.truthy(got);
  t.is(sha256(await readFile(join(got!.dir, 'bzImage'))), sha256(await readFile(join(kernels, entryKey!, 'bzImage'))));

  // The same artifact under another key's tag: its annotations name another entry.
  const manifest = await fetch(`http://${address}/v2/shared/manifests/kernels-${entryKey}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } }).then((r) => r.text());
  const otherKey = 'f'.repeat(24);
  t.is((await fetch(`http://${address}/v2/shared/manifests/kernels-${otherKey}`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })).status, 201);
  notes.length = 0;
  t.is(await from!.fetch(await fresh('mislabelled'), 'kernels', otherKey), undefined);
  t.regex(notes.join('\n'), /kernels-f{24} is not a tinyx cache entry: its annotations name another entry; making the kernel here/);

  // A layer swapped for another blob: not the file its meta.json recorded.
  const swapped = JSON.parse(manifest) as { layers: { digest: string; size: number }[]; config: { digest: string; size: number } };
  swapped.layers[0] = { ...swapped.layers[0]!, digest: swapped.layers[1]!.digest, size: swapped.layers[1]!.size };
  t.is((await fetch(`http://${address}/v2/shared/manifests/kernels-${entryKey}`, { method: 'PUT', body: JSON.stringify(swapped), headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })).status, 201);
  notes.length = 0;
  const damaged = await fresh('damaged');
  t.is(await from!.fetch(damaged, 'kernels', entryKey!), undefined);
  t.regex(notes.join('\n'), /is not the file its meta\.json recorded; making the kernel here/);
  t.deepEqual(await readdir(join(damaged.dir)).then((names) => names.filter((n) => n !== 'tmp')), [], 'nothing published');
  t.deepEqual(await readdir(join(damaged.dir, 'tmp')).catch(() => []), [], 'nothing left in tmp/');

  // Nobody listens: passed over.
  notes.length = 0;
  const gone = await SharedCache.open({ from: [`127.0.0.1:${await freePort()}/shared`], note: (l) => notes.push(l) });
  t.is(await gone!.fetch(await fresh('gone'), 'kernels', entryKey!), undefined);
  t.regex(notes.join('\n'), /the registry could not be reached .*; making the kernel here/);

  // A --cache-to that asks for a password none is stored for: the build fails (a job asked to fill the cache must not pass).
  const locked = await startRegistry('locked', { name: 'ci', password: 'pass-word' });
  const refusing = await SharedCache.open({ to: `${locked}/shared` });
  await t.throwsAsync(refusing!.offer(home, 'kernels', entryKey!), { code: 'E_REGISTRY_AUTH', message: /asks for a user name and password, and none is stored for 127\.0\.0\.1:\d+/ });

  // A tag in a --cache-from reference: refused before any work.
  const tagged = await runCli(['build', 'nginx', '--cache-from', `${address}/shared:latest`]);
  t.is(tagged.code, 2);
  t.regex(tagged.stderr, /--cache-from .*\/shared:latest: name a repository without a tag or digest/);
});

test.serial('Ctrl-C during a pull: exit 130, nothing left of the staging directory, the earlier image as it was', async (t) => {
  const pushed = JSON.parse((await runCli(['push', nginxDir, `${address}/tinyx/nginx:slow`, '--json'])).stdout) as { digest: string };
  // A slow link: a proxy in front of the registry that hands out blobs 64 KiB at a time, 40 ms apart (the initramfs: some 3 s).
  const [registryHost, registryPort] = address.split(':');
  const proxy = createHttpServer((req, res) => {
    const upstream = httpRequest({ host: registryHost, port: Number(registryPort), method: req.method, path: req.url, headers: req.headers }, async (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      const slow = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');
      for await (const chunk of answer as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; at += 65536) {
          if (res.destroyed) return;
          res.write(chunk.subarray(at, at + 65536));
          if (slow) await new Promise((r) => setTimeout(r, 40));
        }
      }
      res.end();
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  const through = `127.0.0.1:${(proxy.address() as { port: number }).port}`;

  // The earlier image, pulled whole (through the same proxy), then a second pull into it interrupted.
  const parent = join(work, 'interrupted');
  const out = join(parent, 'nginx');
  const first = await runCli(['pull', `${through}/tinyx/nginx@${pushed.digest}`, '--out', out]);
  t.is(first.code, 0, first.stderr);
  const before = await filesOf(out);
  const cli = startCli(['pull', `${through}/tinyx/nginx@${pushed.digest}`, '--out', out]);
  // After the first file and before the last: in the middle of the blobs.
  await cli.waitForLine(/fetched /, 60_000);
  cli.child.kill('SIGINT');
  const ended = await cli.done;
  t.is(ended.code, 130, ended.stderr);
  t.notRegex(ended.stderr, /fetched initrd/, 'interrupted before the last blob');
  t.deepEqual(await readdir(parent), ['nginx'], 'no staging directory left beside it');
  t.deepEqual(await filesOf(out), before, 'the earlier image as it was');
});

test.serial("Bearer: through a registry whose token service signs each scope, push asks for pull,push and pull for pull, with the stored credentials; a wrong password is refused", async (t) => {
  // A token service as GHCR's or Docker Hub's: a JWT signed with a key whose certificate the registry trusts (x5c), for the scope asked.
  const dir = join(work, 'token');
  await mkdir(dir);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=tinyx-test-token'], { stdio: 'ignore' });
  const key = createPrivateKey(await readFile(join(dir, 'key.pem')));
  const certDer = Buffer.from((await readFile(join(dir, 'cert.pem'), 'utf8')).replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const user = { name: 'ci', password: 'token-pass' };
  const asked: { scope: string; user: string | undefined }[] = [];
  const b64url = (value: Buffer | string): string => Buffer.from(value).toString('base64url');
  const tokens = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const basic = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString() : undefined;
    const scope = url.searchParams.get('scope') ?? '';
    asked.push({ scope, user: basic?.split(':')[0] });
    if (basic !== `${user.name}:${user.password}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
      return;
    }
    const [type, name, actions] = scope.split(':');
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] }));
    const claims = b64url(JSON.stringify({ iss: 'tinyx-test-issuer', sub: user.name, aud: url.searchParams.get('service'), exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access: [{ type, name, actions: (actions ?? '').split(',') }] }));
    const signature = b64url(sign('sha256', Buffer.from(`${header}.${claims}`), key));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${header}.${claims}.${signature}` }));
  });
  await new Promise<void>((resolve) => tokens.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => tokens.close(() => resolve())));
  const realm = `http://127.0.0.1:${(tokens.address() as { port: number }).port}/token`;
  const at = await startRegistry('bearer', undefined, `auth:\n  token:\n    realm: ${realm}\n    service: tinyx-test-registry\n    issuer: tinyx-test-issuer\n    rootcertbundle: ${join(dir, 'cert.pem')}\n`);
  const dockerConfig = async (password: string): Promise<string> => {
    const config = join(dir, `docker-${password}`);
    await mkdir(config);
    await writeFile(join(config, 'config.json'), JSON.stringify({ auths: { [at]: { auth: Buffer.from(`${user.name}:${password}`).toString('base64') } } }));
    return config;
  };
  const login = await dockerConfig(user.password);

  const pushed = await runCli(['push', nginxDir, `${at}/tinyx/nginx:1`, '--json'], { env: { DOCKER_CONFIG: login } });
  t.is(pushed.code, 0, pushed.stderr);
  t.deepEqual(asked, [{ scope: 'repository:tinyx/nginx:pull,push', user: 'ci' }], 'one token for the push, asked with the stored credentials');
  asked.length = 0;
  const out = join(dir, 'pulled');
  const pulled = await runCli(['pull', `${at}/tinyx/nginx:1`, '--out', out], { env: { DOCKER_CONFIG: login } });
  t.is(pulled.code, 0, pulled.stderr);
  t.deepEqual(asked, [{ scope: 'repository:tinyx/nginx:pull', user: 'ci' }]);
  t.deepEqual(await filesOf(out), await filesOf(nginxDir));

  const wrong = await runCli(['pull', `${at}/tinyx/nginx:1`, '--out', join(dir, 'no')], { env: { DOCKER_CONFIG: await dockerConfig('wrong') } });
  t.is(wrong.code, 2);
  t.regex(wrong.stderr, /the stored credentials for 127\.0\.0\.1:\d+ were refused/);
});
