import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, loadRecipe, type Manifest } from '@tinyx/builder';
import { INIT_APPLETS, buildBusybox, Cache, createBase, defaultCacheDir, hostBaseSpec, mountsBelow, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { TINYX_BIN, runCli } from '../helpers/cli.js';
import { runInRoot, sha256File, unpackInitrd } from '../helpers/image.js';

const test = integrationTest({ tools: ['readelf'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-build-'));
test.after.always(() => removeTree(work));

/** The shared build cache ($TINYX_CACHE or ~/.cache/tinyx): warm after the first build, as a user's would be. */
async function buildRecipe(name: string, out: string, sourceDateEpoch?: number): Promise<Manifest> {
  // The root filesystem only: the kernel has its own tests (kernel.test.ts), and a kernel per recipe would take a while.
  // As an initramfs, which these tests unpack with cpio (an erofs root is run.test.ts's and consumer.test.ts's).
  return build({ recipe: name, outDir: join(work, out), format: 'initramfs', kernel: false, ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }) });
}

test('nginx: the image directory, its manifest, and `nginx -t` inside the assembled root', async (t) => {
  const manifest = await buildRecipe('nginx', 'nginx');
  const dir = join(work, 'nginx');
  t.deepEqual((await readdir(dir)).sort(), ['initrd.cpio.gz', 'manifest.json']);
  const onDisk = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  t.deepEqual(onDisk.files, manifest.files);
  t.is(manifest.name, 'nginx');
  t.is(manifest.sizes.initrd, (await stat(join(dir, 'initrd.cpio.gz'))).size);
  t.true(manifest.sizes.initrdUncompressed > manifest.sizes.initrd);
  t.deepEqual(manifest.entrypoint.cmd.slice(0, 1), ['/usr/sbin/nginx']);
  t.true(manifest.packages.some((p) => p.name === 'nginx' && /^1\.22/.test(p.version)));
  t.true(manifest.files.some((f) => f.path === '/usr/lib/x86_64-linux-gnu/libssl.so.3' && /^[0-9a-f]{64}$/.test(f.sha256)));
  t.false(manifest.files.some((f) => f.path.startsWith('/usr/share/doc/')), 'no docs');
  t.false(manifest.files.some((f) => f.path.startsWith('/var/lib/dpkg/')), 'no dpkg state');
  t.deepEqual(Object.keys(manifest.build.seconds), ['load', 'base', 'install', 'trace', 'resolve', 'assemble', 'verify', 'pack']);
  t.truthy(manifest.build.tools.objdump);

  const root = await unpackInitrd(t, join(dir, 'initrd.cpio.gz'));
  const check = runInRoot(root, (await loadRecipe('nginx')).check!);
  t.is(check.code, 0, check.output);
  t.regex(check.output, /syntax is ok/);
  // The fix-up took the IPv6 listener out of the default site.
  t.notRegex(await readFile(join(root, 'etc/nginx/sites-available/default'), 'utf8'), /listen \[::\]:80/);
  t.regex(await readFile(join(root, 'etc/passwd'), 'utf8'), /^www-data:x:33:33:/m);
  t.is((await stat(join(root, 'init'))).mode & 0o777, 0o755);
  t.true((await stat(join(root, 'dev/console'))).isCharacterDevice());
  // The image's /bin/sh is BusyBox and runs the generated /init's syntax check.
  t.is(runInRoot(root, ['/bin/sh', '-n', '/init']).code, 0);
  // Its own BusyBox: /init's applets and no other, static against musl, built from Debian's busybox source.
  const listed = runInRoot(root, ['/bin/busybox', '--list']);
  t.is(listed.code, 0, listed.output);
  t.deepEqual(listed.output.trim().split('\n').filter((a) => a !== 'busybox').sort(), [...INIT_APPLETS].sort());
  t.true((await stat(join(root, 'usr/bin/busybox'))).size < 512 * 1024, 'BusyBox with 13 applets is under 512 KiB (busybox-static: 1.98 MB)');
  t.notRegex(execFileSync('readelf', ['-lW', join(root, 'usr/bin/busybox')], { encoding: 'utf8' }), /INTERP/, 'static: no program interpreter');
  t.regex(manifest.build.tools.busybox ?? '', /^busybox 1:1\.\d+\.\d+-\S+, 13 applets, static \(.*musl\)$/);
  t.deepEqual(await mountsBelow(tmpdir()), [], 'no mount left behind');
});

test('nginx twice gives the same bytes; another SOURCE_DATE_EPOCH gives other bytes', async (t) => {
  const first = await buildRecipe('nginx', 'nginx-a');
  const second = await buildRecipe('nginx', 'nginx-b');
  t.deepEqual(second.build.cached, ['base', 'install', 'pack'], 'the second build reuses base, app layer and the compressed archive');
  const a = await sha256File(join(work, 'nginx-a', 'initrd.cpio.gz'));
  t.is(await sha256File(join(work, 'nginx-b', 'initrd.cpio.gz')), a);
  t.deepEqual(second.files, first.files);
  await buildRecipe('nginx', 'nginx-c', 1_700_000_000);
  t.not(await sha256File(join(work, 'nginx-c', 'initrd.cpio.gz')), a);
});

test("BusyBox built again in an empty cache, in other directories: the same bytes as the nginx image's", async (t) => {
  const spec = await hostBaseSpec();
  const base = await createBase(new Cache(defaultCacheDir()), spec, {});
  const multiarch = 'x86_64-linux-gnu';
  // In the shared cache since the nginx image's build (serial tests, in order); built now when this test runs alone.
  await buildBusybox(new Cache(defaultCacheDir()), { root: base.root, spec, multiarch }, INIT_APPLETS);
  const told: string[] = [];
  const shared = await buildBusybox(new Cache(defaultCacheDir()), { root: base.root, spec, multiarch }, INIT_APPLETS, { onBuild: (source) => told.push(source) });
  t.true(shared.cached);
  t.deepEqual(told, [], 'a cache hit is not announced as a build');
  const again = await buildBusybox(new Cache(join(work, 'busybox-cache')), { root: base.root, spec, multiarch }, INIT_APPLETS, { onBuild: (source) => told.push(source) });
  t.false(again.cached);
  t.deepEqual(told, [again.source], 'the build is announced once, with its source');
  t.is(again.source, shared.source);
  t.is(await sha256File(again.path), await sha256File(shared.path));
});

test("a base whose busybox-static version the mirror no longer serves (after a point release): BusyBox is built from the mirror's newest source, and names the version it stands in for", async (t) => {
  const spec = await hostBaseSpec();
  const base = await createBase(new Cache(defaultCacheDir()), spec, {});
  const multiarch = 'x86_64-linux-gnu';
  const current = await buildBusybox(new Cache(defaultCacheDir()), { root: base.root, spec, multiarch }, INIT_APPLETS);
  // A root whose dpkg database has a busybox-static older than any the mirror has.
  const root = join(work, 'old-base');
  await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
  await mkdir(join(root, 'var/lib/dpkg/updates'));
  const gone = '1:1.35.0-4+deb12u0~gone';
  await writeFile(join(root, 'var/lib/dpkg/status'), `Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\nSource: busybox\nVersion: ${gone}\nMaintainer: tinyx tests\nDescription: a version no mirror has\n`);
  const built = await buildBusybox(new Cache(defaultCacheDir()), { root, spec, multiarch }, INIT_APPLETS);
  t.is(built.instead, gone);
  t.is(built.source, current.source, "the mirror's newest, which the current base has");
  t.is(await sha256File(built.path), await sha256File(current.path));
});

test('redis: runs as its own account, `redis-server --version` works inside the root, and the verify step saw it answer PING', async (t) => {
  const manifest = await buildRecipe('redis', 'redis');
  t.is(manifest.entrypoint.user, 'redis');
  // The recipe's probe is an exchange: a connection alone would pass before redis reads a byte.
  t.deepEqual(manifest.readiness, { tcp: { port: 6379, send: 'PING\r\n', expect: '+PONG' } });
  t.regex(manifest.verify!.outcome, /^ready, probe on 6379: answered "\+PONG"$/);
  t.not(manifest.entrypoint.uid, 0);
  const root = await unpackInitrd(t, join(work, 'redis', 'initrd.cpio.gz'));
  const check = runInRoot(root, (await loadRecipe('redis')).check!);
  t.is(check.code, 0, check.output);
  t.regex(check.output, /Redis server v=7/);
  // Debian makes redis.conf readable by redis only; the image keeps that owner.
  const conf = await stat(join(root, 'etc/redis/redis.conf'));
  t.is(conf.uid, manifest.entrypoint.uid);
  t.is(conf.mode & 0o777, 0o640);
  t.is((await stat(join(root, 'var/lib/redis'))).uid, manifest.entrypoint.uid);
  t.regex(await readFile(join(root, 'init'), 'utf8'), new RegExp(`start-stop-daemon -S -c ${manifest.entrypoint.uid}:${manifest.entrypoint.gid} -x /usr/bin/redis-server`));
});

test('memcached without a recipe, through the CLI with --json, and `memcached -h` inside the root', async (t) => {
  const out = join(work, 'memcached');
  const result = await runCli(['build', '--package', 'memcached', '--cmd', '/usr/bin/memcached -u nobody -p 11211', '--port', '11211', '--format', 'initramfs', '--out', out, '--no-kernel', '--json']);
  t.is(result.code, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { ok: boolean; imageDir: string; manifest: Manifest };
  t.true(json.ok);
  t.is(json.imageDir, out);
  t.deepEqual(json.manifest.readiness, { tcp: { port: 11211 } });
  t.is(json.manifest.recipe.source, '--package memcached');
  t.false(json.manifest.packages.some((p) => p.name.startsWith('perl')), 'memcached Depends on perl; the blacklist cuts it');
  const root = await unpackInitrd(t, join(out, 'initrd.cpio.gz'));
  const check = runInRoot(root, ['/usr/bin/memcached', '-h']);
  t.is(check.code, 0, check.output);
  t.regex(check.output, /^memcached 1\./);
});

test('--compression xz: a smaller initrd that GNU cpio reads back, with CRC32 checks for the kernel', async (t) => {
  const gzip = await buildRecipe('nginx', 'nginx-gz');
  const xz = await build({ recipe: 'nginx', outDir: join(work, 'nginx-xz'), compression: 'xz', kernel: false });
  t.is(xz.artifacts.rootfs, 'initrd.cpio.xz');
  t.is(xz.compression, 'xz');
  t.true(xz.sizes.initrd < gzip.sizes.initrd * 0.85, `${xz.sizes.initrd} vs gzip ${gzip.sizes.initrd}`);
  t.is(xz.sizes.initrdUncompressed, gzip.sizes.initrdUncompressed);
  const root = await unpackInitrd(t, join(work, 'nginx-xz', 'initrd.cpio.xz'));
  t.is(runInRoot(root, ['/usr/sbin/nginx', '-t']).code, 0);
  t.regex(execFileSync('xz', ['--robot', '--list', join(work, 'nginx-xz', 'initrd.cpio.xz')], { encoding: 'utf8' }), /\tCRC32\t/);
});

test("--format erofs: the summary gives the disk's size and its files' size (held compressed, never unpacked)", async (t) => {
  const out = join(work, 'nginx-erofs');
  const built = await runCli(['build', 'nginx', '--format', 'erofs', '--no-kernel', '--out', out]);
  t.is(built.code, 0, built.stderr);
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as Manifest;
  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2).replace('.', '\\.');
  t.regex(built.stdout, new RegExp(`root filesystem  rootfs\\.erofs  ${mib(manifest.sizes.initrd)} MiB \\(${mib(manifest.sizes.rootFiles)} MiB of files, ${manifest.files.length} files,`));
  t.regex(built.stderr, new RegExp(`\\[pack\\] done .*: rootfs\\.erofs: ${mib(manifest.sizes.initrd)} MiB \\(${mib(manifest.sizes.rootFiles)} MiB of files\\)`));
  t.true(manifest.sizes.rootFiles > manifest.sizes.initrd, 'LZ4HC: the disk is smaller than its files');
});

test('--format tar writes rootfs.tar, and inspect reads the image back', async (t) => {
  const out = join(work, 'nginx-tar');
  const built = await runCli(['build', 'nginx', '--format', 'tar', '--no-kernel', '--out', out]);
  t.is(built.code, 0, built.stderr);
  t.regex(built.stderr, /\[base\] cache hit/);
  t.regex(built.stdout, /rootfs\.tar/);
  const listing = execFileSync('tar', ['-tvf', join(out, 'rootfs.tar')], { encoding: 'utf8' });
  t.regex(listing, /^-rwxr-xr-x 0\/0 .* usr\/sbin\/nginx$/m);
  t.regex(listing, /^crw------- 0\/0 +5,1 .* dev\/console$/m);
  const inspect = await runCli(['inspect', out]);
  t.is(inspect.code, 0, inspect.stderr);
  t.regex(inspect.stdout, /^packages \(\d+\)$/m);
  t.regex(inspect.stdout, /nginx-common/);
  t.regex(inspect.stdout, /^boot {9}quiet panic=-1 rootfstype=ramfs /m, "the kernel command line the manifest records");
  // A reader that leaves early (head) ends tinyx quietly, without a stack trace.
  const piped = spawnSync('sh', ['-c', `"${process.execPath}" "${TINYX_BIN}" inspect "${out}" --files | head -1`], { encoding: 'utf8' });
  t.is(piped.status, 0);
  t.regex(piped.stdout, /^nginx /);
  t.is(piped.stderr, '');
  const json = await runCli(['inspect', out, '--json']);
  t.is((JSON.parse(json.stdout) as Manifest).format, 'tar');
});

test("dlopen: the recipe's globs bring the modules they match (and only those) that no NEEDED entry names; a glob that matches nothing names the field", async (t) => {
  const nginx = await loadRecipe('nginx');
  const gconv = '/usr/lib/x86_64-linux-gnu/gconv/UTF-16.so';
  const recipe = { ...nginx, name: 'nginx-dlopen', dlopen: ['/usr/lib/x86_64-linux-gnu/gconv/UTF-1?.so', '/usr/lib/x86_64-linux-gnu/libnss_dns.so.*'] };
  const manifest = await build({ recipe, outDir: join(work, 'nginx-dlopen'), kernel: false });
  const files = new Map(manifest.files.map((f) => [f.path, f as { reason?: string }]));
  t.is(files.get(gconv)?.reason, 'dlopen');
  t.is(files.get('/usr/lib/x86_64-linux-gnu/gconv/UTF-32.so'), undefined, 'only what the glob matches');
  t.is(files.get('/usr/lib/x86_64-linux-gnu/libnss_dns.so.2')?.reason, 'dlopen');
  const plain = await buildRecipe('nginx', 'nginx-plain');
  t.false(plain.files.some((f) => f.path === gconv), 'not there without the dlopen entry');

  const none = { ...nginx, name: 'nginx-nodl', source: 'my-nginx.yaml', dlopen: ['/usr/lib/nothing-*.so'] };
  await t.throwsAsync(build({ recipe: none, outDir: join(work, 'nginx-nodl'), kernel: false }), {
    code: 'E_RECIPE',
    message: 'my-nginx.yaml: dlopen[0]: /usr/lib/nothing-*.so matches nothing in the install root',
  } as never);
});
