import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, recipeFromPackage, type BuildOptions, type Manifest } from '@tinyx/builder';
import { READY_LINE } from '@tinyx/image';
import { compileRelay, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { askInNamespace, bootInRoot, bootInRootWithNic, httpGetInNamespace } from '../helpers/watched.js';
import { REPO_ROOT, runCli } from '../helpers/cli.js';
import { processesInRoot, runInRoot, unpackInitrd, waitFor } from '../helpers/image.js';

// Issue #11, the trace pass and verify before emitting. `tinyx build --package P`
// alone: the app runs once in the full install under strace, and what it used
// joins the image; then the image's own /init must start it in the cut root and
// pass its probe. Each image is then started here the same way the VM would
// (its /init as PID 1 of fresh namespaces, no kernel) and asked with a real client.
const test = integrationTest({ tools: ['unshare', 'nsenter', 'ip', 'gcc', 'fsck.erofs'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-trace-'));
test.after.always(() => removeTree(work));

type Root = Parameters<typeof unpackInitrd>[0];

async function buildImage(t: Root, name: string, recipe: BuildOptions['recipe'], options: Partial<BuildOptions> = {}): Promise<{ manifest: Manifest; root: string }> {
  const outDir = join(work, name);
  const manifest = await build({ recipe, outDir, kernel: false, format: 'initramfs', ...options });
  return { manifest, root: await unpackInitrd(t, join(outDir, manifest.artifacts.rootfs)) };
}

/** Starts the image's /init in its root and GETs `path` once it says it is ready. */
async function serve(root: string, port: number, path: string): Promise<{ status: string; body: string; output: string }> {
  const app = bootInRoot(root);
  try {
    const ready = await waitFor(() => app.output().includes(READY_LINE), 30_000, app.exited);
    if (!ready) return { status: 'never ready', body: '', output: app.output() };
    return { ...(await httpGetInNamespace(app.pid, port, path)), output: app.output() };
  } finally {
    await app.stop();
  }
}

test('lighttpd, no recipe: the trace brings the Perl its configuration runs and the www-data it switches to; the port it listened on is its probe', async (t) => {
  const { manifest, root } = await buildImage(t, 'lighttpd', { fromUnit: { package: 'lighttpd' } });
  // No port in the unit: the one it listened on in the trace.
  t.deepEqual(manifest.readiness, { tcp: { port: 80 } });
  t.like(manifest.derivedFrom?.fields.find((f) => f.key === 'trace'), { became: 'readiness tcp 80' });
  // include_shell "/usr/share/lighttpd/use-ipv6.pl": a script no ELF closure or package rule brings, and its interpreter.
  t.regex(manifest.files.find((f) => f.path === '/usr/share/lighttpd/use-ipv6.pl')?.reason ?? '', /^traced: executed/);
  t.regex(manifest.files.find((f) => f.path === '/usr/bin/perl')?.reason ?? '', /^interpreter of /);
  t.regex(manifest.accounts.users.find((u) => u.name === 'www-data')?.reason ?? '', /^traced: setuid\(33\)$/);
  t.regex(manifest.verify?.outcome ?? '', /^ready, probe on 80: connected$/);

  const page = await serve(root, 80, '/');
  t.is(page.status, '200 OK', page.output);
  t.regex(page.body, /lighttpd/i);
});

test('nginx, no recipe: www-data (named only in nginx.conf) from the setuid the trace saw; the default page over IPv4', async (t) => {
  const { manifest, root } = await buildImage(t, 'nginx-unit', { fromUnit: { package: 'nginx' } });
  t.truthy(manifest.accounts.users.find((u) => u.name === 'www-data'));
  t.regex(manifest.verify?.check ?? '', /nginx -t/);
  const app = bootInRoot(root);
  try {
    t.true(await waitFor(() => app.output().includes(READY_LINE), 30_000, app.exited), app.output());
    const page = await httpGetInNamespace(app.pid, 80, '/');
    t.is(page.status, '200 OK', app.output());
    t.regex(page.body, /Welcome to nginx/);
    // The workers run as www-data, in the image as in the full install.
    const workers = (await processesInRoot(root)).filter((p) => p.comm === 'nginx' && p.uid !== 0);
    t.true(workers.length > 0, app.output());
    t.true(workers.every((p) => p.uid === 33));
  } finally {
    await app.stop();
  }
});

test("nginx's kernel, no recipe: the trace's socket(AF_INET6) asks for IPv6, which no imported symbol shows", async (t) => {
  const result = await runCli(['kernel', 'config', '--package', 'nginx', '--json']);
  t.is(result.code, 0, result.stderr);
  const features = (JSON.parse(result.stdout) as { features: { name: string; from: string[] }[] }).features;
  t.deepEqual(features.find((f) => f.name === 'ipv6')?.from, ['traced: socket(AF_INET6)']);
});

test('apache2, no recipe: Type=forking with no pid file; /init follows what `apachectl start` leaves running, and it serves', async (t) => {
  const { manifest, root } = await buildImage(t, 'apache2', { fromUnit: { package: 'apache2' } });
  t.like(manifest.recipe.entrypoint, { cmd: ['/usr/sbin/apachectl', 'start'], forks: true, pidFile: null });
  t.like(manifest.derivedFrom?.fields.find((f) => f.key === 'Type'), { became: 'entrypoint.forks: /init follows what the command leaves running' });
  const page = await serve(root, 80, '/');
  t.is(page.status, '200 OK', page.output);
  t.regex(page.body, /Apache2 Debian Default Page/);
});

test("dnsmasq, no recipe: Type=forking with PIDFile=; /init follows the pid in it, and ends when that process does", async (t) => {
  const { manifest, root } = await buildImage(t, 'dnsmasq', { fromUnit: { package: 'dnsmasq' } });
  t.like(manifest.recipe.entrypoint, { forks: true, pidFile: '/run/dnsmasq/dnsmasq.pid' });
  t.deepEqual(manifest.readiness, { tcp: { port: 53 } });
  const app = bootInRoot(root);
  try {
    t.true(await waitFor(() => app.output().includes(READY_LINE), 30_000, app.exited), app.output());
    const pid = Number((await readFile(join(root, 'run/dnsmasq/dnsmasq.pid'), 'utf8')).trim());
    const daemon = (await processesInRoot(root)).find((p) => p.comm === 'dnsmasq');
    t.truthy(daemon, app.output());
    // The pid file holds the namespace's pid; the daemon is the one dnsmasq process, and /init outlives the helper that started it.
    t.true(pid > 1);
    process.kill(daemon!.pid, 'SIGTERM');
    t.true(await waitFor(() => /tinyx: dnsmasq exited with status 0/.test(app.output()), 15_000), app.output());
  } finally {
    await app.stop();
  }
});

test('caddy, no recipe: as User=caddy it binds port 80 (AmbientCapabilities= needs nothing in the VM), with its HOME; the probe is the port outside loopback', async (t) => {
  const { manifest, root } = await buildImage(t, 'caddy', { fromUnit: { package: 'caddy' } });
  t.is(manifest.entrypoint.user, 'caddy');
  // caddy listens on localhost:2019 (its admin API) and :80: the readiness probe is the one the VM's network reaches.
  t.deepEqual(manifest.readiness, { tcp: { port: 80 } });
  t.regex(await readFile(join(root, 'init'), 'utf8'), /export HOME=\/var\/lib\/caddy/);
  const app = bootInRoot(root);
  try {
    t.true(await waitFor(() => app.output().includes(READY_LINE), 30_000, app.exited), app.output());
    const page = await httpGetInNamespace(app.pid, 80, '/');
    t.is(page.status, '200 OK', app.output());
    t.regex(page.body, /Caddy/);
    const caddy = (await processesInRoot(root)).filter((p) => p.comm === 'caddy');
    t.true(caddy.length > 0 && caddy.every((p) => p.uid !== 0), app.output());
  } finally {
    await app.stop();
  }
});

test("python3 http.server with --cmd: the compiled modules it imports (ssl, sqlite3) are in the image, because the trace saw them", async (t) => {
  const cmd = `/usr/bin/python3 -c 'import ssl, sqlite3, http.server as s; s.test(HandlerClass=s.SimpleHTTPRequestHandler, port=8000, bind="0.0.0.0")'`;
  const recipe = recipeFromPackage({ package: 'python3', cmd, port: 8000 });
  const { manifest, root } = await buildImage(t, 'python3', recipe);
  for (const module of ['_ssl', '_sqlite3']) {
    t.regex(manifest.files.find((f) => f.path.includes(`/lib-dynload/${module}.`))?.reason ?? '', /^traced: /, module);
  }
  const imported = runInRoot(root, ['/usr/bin/python3', '-c', 'import ssl, sqlite3; print(ssl.OPENSSL_VERSION.split()[0], sqlite3.connect(":memory:").execute("select 6*7").fetchone()[0])']);
  t.is(imported.code, 0, imported.output);
  t.is(imported.output.trim(), 'OpenSSL 42');
  const page = await serve(root, 8000, '/');
  t.is(page.status, '200 OK', page.output);
  t.regex(page.body, /Directory listing for \//);

  // Without the trace the same image would not start: verify says so, and nothing is written.
  const out = join(work, 'python3-untraced');
  const error = await build({ recipe, outDir: out, kernel: false, trace: false, format: 'initramfs' }).then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  t.is(error?.code, 'E_VERIFY');
  t.regex(error?.message ?? '', /ModuleNotFoundError: No module named '_ssl'/);
  t.regex(error?.message ?? '', /\/usr\/lib\/python3\.11\/lib-dynload: no such directory in the image \(owned by python3\.11/);
  await t.throwsAsync(stat(out), { code: 'ENOENT' });
});

test("redis-server, no recipe, listens on loopback only (Debian's redis.conf): the image relays the VM's address to it, and a client there is served; --no-relay-loopback keeps it local", async (t) => {
  const { manifest, root } = await buildImage(t, 'redis-server', { fromUnit: { package: 'redis-server' } });
  t.deepEqual(manifest.relay, [{ port: 6379, address: '127.0.0.1' }]);
  t.deepEqual(manifest.readiness, { tcp: { port: 6379 } });
  t.regex(manifest.verify!.outcome, /^ready, probe on 10\.0\.2\.15:6379 through the relay: connected$/);
  const relay = manifest.files.find((f) => f.path === '/usr/sbin/tinyx-relay');
  t.truthy(relay, 'the relay is in the image');
  t.true(relay!.size < 16 * 1024, `a few KiB (${relay!.size} bytes)`);
  t.regex(relay!.reason, /relays the VM's address to 127\.0\.0\.1:6379/);
  // Its bytes depend on the source and gcc only.
  const [a, b] = [await mkdtemp(join(work, 'relay-')), await mkdtemp(join(work, 'relay-'))];
  t.deepEqual(await compileRelay(a), await compileRelay(b));

  // The image's /init, with a network card as in the VM: the relay forwards 10.0.2.15:6379 to redis, which
  // answers a client there (protected mode lets it in: the relayed connection comes from loopback).
  const app = bootInRootWithNic(root);
  try {
    t.true(await waitFor(() => app.output().includes(READY_LINE), 30_000, app.exited), app.output());
    t.regex(app.output(), /tinyx: relaying 10\.0\.2\.15 to 127\.0\.0\.1:6379/);
    t.is(await askInNamespace(app.pid, '10.0.2.15', 6379, 'PING\r\n'), '+PONG\r\n');
    t.is(await askInNamespace(app.pid, '10.0.2.15', 6379, 'SET tinyx relayed\r\n'), '+OK\r\n');
    t.is(await askInNamespace(app.pid, '10.0.2.15', 6379, 'GET tinyx\r\n'), '$7\r\nrelayed\r\n');
  } finally {
    await app.stop();
  }

  const local = await runCli(['build', '--format', 'initramfs', '--package', 'redis-server', '--no-kernel', '--no-relay-loopback', '--out', join(work, 'redis-local'), '--json']);
  t.is(local.code, 0, local.stderr);
  const kept = (JSON.parse(local.stdout) as { manifest: Manifest }).manifest;
  t.deepEqual(kept.relay, []);
  t.false(kept.files.some((f) => f.path === '/usr/sbin/tinyx-relay'));
  t.regex(kept.verify!.outcome, /^ready, probe on 6379: connected$/);
});

test("postgresql, no recipe: its unit runs nothing (an umbrella), the package's generator says it wants postgresql@15-main; pg_hba.conf (0640, private text) is kept, the snakeoil key made anew; a client at the VM's address gets PostgreSQL's answer", async (t) => {
  const { manifest, root } = await buildImage(t, 'postgresql', { fromUnit: { package: 'postgresql' } });
  t.regex(manifest.derivedFrom!.unit, /postgresql@\.service \(postgresql@15-main\.service\)$/);
  t.like(manifest.derivedFrom!.fields[0], { key: 'Wants', value: 'postgresql@15-main.service' });
  t.deepEqual(manifest.recipe.entrypoint.cmd, ['/usr/bin/pg_ctlcluster', '--skip-systemctl-redirect', '15-main', 'start']);
  t.like(manifest.recipe.entrypoint, { forks: true, pidFile: '/run/postgresql/15-main.pid' });
  t.deepEqual(manifest.relay, [{ port: 5432, address: '127.0.0.1' }]);
  t.true(manifest.files.some((f) => f.path === '/etc/postgresql/15/main/pg_hba.conf' && f.mode === '0640'), 'private configuration is no secret');
  t.regex(manifest.files.find((f) => f.path === '/etc/ssl/private/ssl-cert-snakeoil.key')?.reason ?? '', /a secret made for this image: make-ssl-cert/);
  t.regex(await readFile(join(root, 'etc/group'), 'utf8'), /^ssl-cert:x:\d+:postgres$/m, 'postgres reads the key as a member of ssl-cert');
  const app = bootInRootWithNic(root);
  try {
    t.true(await waitFor(() => app.output().includes(READY_LINE), 60_000, app.exited), app.output());
    // SSLRequest: PostgreSQL answers one byte, S (it has the snakeoil certificate) or N.
    t.is(await askInNamespace(app.pid, '10.0.2.15', 5432, '\u0000\u0000\u0000\u0008\u0004\u00d2\u0016\u002f'), 'S');
  } finally {
    await app.stop();
  }
});

test('an image that would not start is a build error, never an emitted image: lighttpd without the trace lacks its Perl script', async (t) => {
  const out = join(work, 'lighttpd-untraced');
  const result = await runCli(['build', '--format', 'initramfs', '--package', 'lighttpd', '--no-kernel', '--no-trace', '--out', out]);
  t.is(result.code, 1, result.stderr);
  t.regex(result.stderr, /verify: the check \(\/usr\/sbin\/lighttpd -tt -f \/etc\/lighttpd\/lighttpd\.conf\) failed/);
  t.regex(result.stderr, /\/usr\/share\/lighttpd\/use-ipv6\.pl: no such file in the image \(owned by lighttpd; in the full install/);
  t.regex(result.stderr, /--no-verify emits the image anyway/);
  await t.throwsAsync(stat(out), { code: 'ENOENT' });
  // --no-verify: the user's call, and the image is written.
  const forced = await runCli(['build', '--format', 'initramfs', '--package', 'lighttpd', '--no-kernel', '--no-trace', '--no-verify', '--out', out, '--json']);
  t.is(forced.code, 0, forced.stderr);
  t.like((JSON.parse(forced.stdout) as { manifest: Manifest }).manifest, { trace: null, verify: null });
});

test("on a read-only root (--format erofs): the directories the trace saw the app write in get a tmpfs; without the trace, verify runs the app read-only and names what it tried to write", async (t) => {
  const recipe = (await readFile(join(REPO_ROOT, 'recipes/nginx.yaml'), 'utf8')).replace(/^directories:\n(?: {2}- .*\n)+/m, '');
  t.notRegex(recipe, /^directories:/m);
  const file = join(work, 'nginx-no-dirs.yaml');
  await writeFile(file, recipe);
  // The trace saw nginx write its log and make its temporary directories: they are writable in the VM, and verify passes.
  const out = join(work, 'nginx-no-dirs');
  const traced = await runCli(['build', file, '--format', 'erofs', '--no-kernel', '--out', out]);
  t.is(traced.code, 0, traced.stderr);
  t.regex(traced.stderr, /writable, as the trace saw the app write there: \/var\/lib\/nginx, \/var\/log\/nginx/);
  const root = join(work, 'nginx-no-dirs-root');
  await mkdir(root);
  execFileSync('fsck.erofs', [`--extract=${root}`, join(out, 'rootfs.erofs')], { stdio: 'ignore' });
  const init = await readFile(join(root, 'init'), 'utf8');
  t.regex(init, /^# traced: written by \/usr\/sbin\/nginx\n.*mount -t tmpfs .* \/var\/log\/nginx$/m);
  t.regex(init, /^# traced: written by \/usr\/sbin\/nginx\n.*mount -t tmpfs .* \/var\/lib\/nginx$/m);
  // Without the trace nothing says where nginx writes: verify runs it on the read-only root, and the build fails naming the paths.
  const untraced = join(work, 'nginx-no-dirs-untraced');
  const result = await runCli(['build', file, '--format', 'erofs', '--no-kernel', '--no-trace', '--out', untraced]);
  t.is(result.code, 1, result.stderr);
  t.regex(result.stderr, /Read-only file system/);
  t.regex(result.stderr, /what it tried to write on the read-only root:\n {2}\/var\/(lib|log)\/nginx\/\S+( \((by \S+|in its message)\))?$/m);
  t.regex(result.stderr, /hint: list the directories it writes in under the recipe's directories \(each gets a tmpfs in the VM\), or build with --format initramfs/);
  await t.throwsAsync(stat(untraced), { code: 'ENOENT' });
  // The same recipe's root is writable as an initramfs: it builds without the trace too.
  t.is((await runCli(['build', '--format', 'initramfs', file, '--no-kernel', '--no-trace', '--out', untraced])).code, 0);
});

test('an app that fails in the full install fails the trace, in its own words, before anything is cut', async (t) => {
  const out = join(work, 'lighttpd-bad');
  const result = await runCli(['build', '--format', 'initramfs', '--package', 'lighttpd', '--cmd', '/usr/sbin/lighttpd -D -f /etc/lighttpd/missing.conf', '--no-kernel', '--out', out]);
  t.is(result.code, 2, result.stderr);
  t.regex(result.stderr, /\/usr\/sbin\/lighttpd exited with status 255 in the full install root/);
  t.regex(result.stderr, /missing\.conf/);
  await t.throwsAsync(stat(out), { code: 'ENOENT' });
});

test("secrets per image: sshd's host keys are made for each image, never the install's copy every image would share", async (t) => {
  const keys = (m: Manifest): Map<string, string> => new Map(m.files.filter((f) => /^\/etc\/ssh\/ssh_host_\w+_key(\.pub)?$/.test(f.path)).map((f) => [f.path, f.sha256]));
  const a = await buildImage(t, 'sshd-a', { fromUnit: { package: 'openssh-server' } });
  const b = await buildImage(t, 'sshd-b', { fromUnit: { package: 'openssh-server' } });
  const [ka, kb] = [keys(a.manifest), keys(b.manifest)];
  t.true(ka.has('/etc/ssh/ssh_host_ed25519_key'), [...ka.keys()].join(' '));
  t.is(ka.size, kb.size);
  for (const [path, sha] of ka) t.not(kb.get(path), sha, path);
  t.regex(a.manifest.files.find((f) => f.path === '/etc/ssh/ssh_host_ed25519_key')?.reason ?? '', /^a secret made for this image: ssh-keygen /);
  t.false(a.manifest.leftOut.some((l) => ka.has(l.path)));
  // The private key is the daemon's alone, as the install made it; sshd accepts its configuration and keys.
  t.like(a.manifest.files.find((f) => f.path === '/etc/ssh/ssh_host_ed25519_key'), { mode: '0600' });
  const check = runInRoot(a.root, ['/usr/sbin/sshd', '-t']);
  t.is(check.code, 0, check.output);
});
