import { existsSync } from 'node:fs';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { build, loadRecipeFile, type Manifest } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { askSocket, bootInRoot } from '../helpers/watched.js';
import { runCli } from '../helpers/cli.js';
import { processesInRoot, runInRoot, unpackInitrd, waitFor } from '../helpers/image.js';

// Issue #11: `tinyx build --package P` with no --cmd and no recipe: the
// recipe is the package's systemd unit (ExecStart, User, Environment, the
// *Directory= settings, the package's tmpfiles.d). The image's own /init is
// started in a chroot of the unpacked root, in its own namespaces (no kernel,
// no VM): what the VM would run, with the directories the unit asks for made
// by the build, not by the test.
const test = integrationTest({ tools: ['unshare'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-unit-'));
test.after.always(() => removeTree(work));

async function buildPackage(t: Parameters<typeof unpackInitrd>[0], pkg: string): Promise<{ manifest: Manifest; root: string }> {
  const outDir = join(work, pkg);
  const manifest = await build({ recipe: { fromUnit: { package: pkg } }, outDir, kernel: false, format: 'initramfs' });
  return { manifest, root: await unpackInitrd(t, join(outDir, manifest.artifacts.rootfs)) };
}

test("haproxy from its unit: ExecStart with the unit's Environment, /run/haproxy from its tmpfiles.d, and /init starts it", async (t) => {
  const { manifest, root } = await buildPackage(t, 'haproxy');
  t.deepEqual(manifest.entrypoint.cmd, ['/usr/sbin/haproxy', '-Ws', '-f', '/etc/haproxy/haproxy.cfg', '-p', '/run/haproxy.pid', '-S', '/run/haproxy-master.sock']);
  t.is(manifest.derivedFrom?.unit, '/usr/lib/systemd/system/haproxy.service');
  const haproxy = manifest.accounts.users.find((u) => u.name === 'haproxy');
  t.like(manifest.directories.find((d) => d.path === '/run/haproxy'), { mode: '2775', uid: haproxy?.uid, reason: 'tmpfiles.d of haproxy (/usr/lib/tmpfiles.d/haproxy.conf:1)' });

  // The check, from ExecReload (haproxy -c), passes in the cut root.
  t.deepEqual(manifest.recipe.check?.slice(-4), ['-c', '-q', '-S', '/run/haproxy-master.sock']);
  const check = runInRoot(root, manifest.recipe.check!);
  t.is(check.code, 0, check.output);

  const app = bootInRoot(root);
  try {
    const socket = join(root, 'run/haproxy/admin.sock');
    const listening = await waitFor(async () => (await stat(socket).catch(() => undefined))?.isSocket() ?? false, 30_000, app.exited);
    t.true(listening, `haproxy never made ${socket}:\n${app.output()}`);
    if (listening) t.regex(await askSocket(socket, 'show info'), /^Name: HAProxy$/m);
    t.regex(app.output(), /tinyx: ready/);
  } finally {
    await app.stop();
  }
});

test('redis-server from its unit: it runs as User=redis and writes its pid file in RuntimeDirectory=redis', async (t) => {
  const { manifest, root } = await buildPackage(t, 'redis-server');
  t.is(manifest.entrypoint.user, 'redis');
  t.deepEqual(manifest.entrypoint.cmd, ['/usr/bin/redis-server', '/etc/redis/redis.conf', '--supervised', 'systemd', '--daemonize', 'no']);
  const redis = manifest.accounts.users.find((u) => u.name === 'redis');
  t.like(manifest.directories.find((d) => d.path === '/run/redis'), { mode: '2755', uid: redis?.uid });

  const app = bootInRoot(root);
  try {
    // redis.conf: pidfile /run/redis/redis-server.pid, written by redis-server itself once it runs as redis.
    const pidFile = join(root, 'run/redis/redis-server.pid');
    t.true(await waitFor(() => stat(pidFile).then(() => true, () => false), 30_000, app.exited), app.output());
    t.deepEqual(
      (await processesInRoot(root)).filter((p) => p.comm === 'redis-server').map((p) => p.uid),
      [redis?.uid],
      app.output(),
    );
    t.regex(await readFile(pidFile, 'utf8'), /^\d+\n?$/);
  } finally {
    await app.stop();
  }
});

test('tinyx recipe init --package: the derived recipe as a new file that builds; an existing file is never overwritten', async (t) => {
  const file = join(work, 'recipes', 'redis-server.yaml');
  const first = await runCli(['recipe', 'init', '--package', 'redis-server', '--port', '6379', '--out', file]);
  t.is(first.code, 0, first.stderr);
  const text = await readFile(file, 'utf8');
  // The first line points editors at the schema of the tinyx that wrote it, by a path from the file that leads to it.
  const schema = /^# yaml-language-server: \$schema=(\S+)\n/.exec(text)?.[1];
  t.truthy(schema, text.split('\n')[0]);
  t.true(existsSync(resolve(dirname(file), schema!)), `${schema} from ${dirname(file)}`);
  t.regex(text, /^# Derived by tinyx from \/usr\/lib\/systemd\/system\/redis-server\.service/m);
  const again = await runCli(['recipe', 'init', '--package', 'redis-server', '--out', file]);
  t.is(again.code, 2, again.stderr);
  t.regex(again.stderr, /redis-server\.yaml exists: tinyx does not overwrite a file it did not write/);
  t.is(await readFile(file, 'utf8'), text);
  const recipe = await loadRecipeFile(file);
  t.deepEqual(recipe.readiness, { tcp: { port: 6379 } });
  t.is(recipe.entrypoint.user, 'redis');
  // The same image as --package alone (apart from the readiness port): inspect shows where the recipe came from.
  const out = join(work, 'redis-from-file');
  const built = await runCli(['build', '--format', 'initramfs', file, '--no-kernel', '--out', out]);
  t.is(built.code, 0, built.stderr);
  const aloneDir = join(work, 'redis-alone');
  const json = await runCli(['build', '--format', 'initramfs', '--package', 'redis-server', '--no-kernel', '--out', aloneDir, '--json']);
  t.is(json.code, 0, json.stderr);
  t.is((JSON.parse(json.stdout) as { manifest: Manifest }).manifest.derivedFrom?.unit, '/usr/lib/systemd/system/redis-server.service');
  const alone = await runCli(['inspect', aloneDir]);
  t.regex(alone.stdout, /^recipe from {2}\/usr\/lib\/systemd\/system\/redis-server\.service$/m);
  t.regex(alone.stdout, /^ {2}RuntimeDirectory=redis -> directories \/run\/redis \(redis, 2755\)$/m);
  t.notRegex((await runCli(['inspect', out])).stdout, /^recipe from/m);
});
