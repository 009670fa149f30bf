import { chmod, copyFile, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, defaultCacheDir, recipeFromPackage, type Manifest } from '@tinyx/builder';
import { BUSYBOX_PATH, Cache, createBase, hostBaseSpec, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { askSocket, startWatched, type Watched } from '../helpers/watched.js';
import { IMAGE_ENV, processesInRoot, runInRoot, unpackInitrd, waitFor } from '../helpers/image.js';

// Issue #11: Debian services built with `--package P --cmd ...` and no recipe,
// their command taken from the package's systemd unit. The cut root must hold
// what the install made for them: the accounts postinst added, the directories
// the package ships empty, the files and links the scripts made. Each app is
// started in a chroot of the unpacked root, in its own namespaces (a
// container of the cut root: no kernel, no VM).
const test = integrationTest({ tools: ['unshare'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-made-'));
test.after.always(() => removeTree(work));

/** An image root filesystem without a recipe, as `tinyx build --package P --cmd CMD --no-kernel` makes it, and its unpacked root. */
async function buildPackage(t: Parameters<typeof unpackInitrd>[0], pkg: string, cmd: string): Promise<{ manifest: Manifest; root: string }> {
  const outDir = join(work, pkg);
  const manifest = await build({ recipe: recipeFromPackage({ package: pkg, cmd }), outDir, kernel: false, format: 'initramfs' });
  return { manifest, root: await unpackInitrd(t, join(outDir, manifest.artifacts.rootfs)) };
}

/**
 * Starts `script` with the image's own /bin/sh, chrooted into the unpacked
 * root, in fresh PID, mount and network namespaces (what the VM runs, without
 * the VM): /proc mounted, lo up. The script is the namespace's PID 1; `stop()`
 * kills unshare, whose death kills it (--kill-child), which ends everything in
 * the namespace, and resolves once it has. (SIGKILL: unshare --fork ignores
 * SIGTERM and SIGINT while it waits for its child.)
 */
function startInRoot(root: string, script: string): Watched {
  return startWatched(['unshare', '--fork', '--pid', '--mount', '--net', '--kill-child', 'chroot', root, '/bin/sh', '-c', `mount -t proc proc /proc && ip link set lo up && ${script}`], IMAGE_ENV);
}

/** An account of the unpacked root's /etc/passwd. */
async function accountIn(root: string, name: string): Promise<{ uid: number; gid: number } | undefined> {
  const fields = (await readFile(join(root, 'etc/passwd'), 'utf8')).split('\n').find((line) => line.startsWith(`${name}:`))?.split(':');
  return fields ? { uid: Number(fields[2]), gid: Number(fields[3]) } : undefined;
}

test('haproxy: `haproxy -c` passes, it starts, and its worker runs as the account its postinst added, chrooted in the directory the package ships empty', async (t) => {
  // haproxy.service: ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS, without the pid file and master socket.
  const { manifest, root } = await buildPackage(t, 'haproxy', '/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg');
  // `user haproxy` and `group haproxy` in haproxy.cfg: without them, "cannot find user id for 'haproxy'".
  const check = runInRoot(root, ['/usr/sbin/haproxy', '-c', '-f', '/etc/haproxy/haproxy.cfg']);
  t.is(check.code, 0, check.output);
  t.regex(check.output, /Configuration file is valid/);
  const account = await accountIn(root, 'haproxy');
  if (!account) return t.fail("no haproxy in the image's /etc/passwd");
  t.regex(await readFile(join(root, 'etc/group'), 'utf8'), new RegExp(`^haproxy:x:${account.gid}:`, 'm'));

  // /run/haproxy (its admin socket's directory) comes from haproxy's tmpfiles.d,
  // "d /run/haproxy 2775 haproxy haproxy -": the build makes it, as systemd-tmpfiles would at boot.
  const runDir = await stat(join(root, 'run/haproxy'));
  t.like({ mode: runDir.mode & 0o7777, uid: runDir.uid, gid: runDir.gid }, { mode: 0o2775, uid: account.uid, gid: account.gid });
  const app = startInRoot(root, 'exec /usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg');
  try {
    const socket = join(root, 'run/haproxy/admin.sock');
    const listening = await waitFor(async () => (await stat(socket).catch(() => undefined))?.isSocket() ?? false, 30_000, app.exited);
    t.true(listening, `haproxy never made ${socket}:\n${app.output()}`);
    if (listening) t.regex(await askSocket(socket, 'show info'), /^Name: HAProxy$/m);
    // The worker dropped to haproxy's uid and chrooted into /var/lib/haproxy (which the package ships).
    const workers = (await processesInRoot(root)).filter((p) => p.comm === 'haproxy' && p.uid === account.uid);
    t.deepEqual(
      workers.map((p) => p.root),
      [join(root, 'var/lib/haproxy')],
      app.output(),
    );
  } finally {
    await app.stop();
  }

  // The manifest says why each is there.
  t.like(manifest.accounts.users.find((u) => u.name === 'haproxy'), { uid: account.uid });
  t.regex(manifest.accounts.users.find((u) => u.name === 'haproxy')?.reason ?? '', /^account added by the install \(named in haproxy\.(preinst|postinst)\)$/);
  t.true(manifest.accounts.groups.some((g) => g.name === 'haproxy'));
  t.like(manifest.directories.find((d) => d.path === '/var/lib/haproxy/dev'), { reason: 'shipped empty by haproxy' });
  t.like(manifest.directories.find((d) => d.path === '/run/haproxy'), { mode: '2775', reason: 'tmpfiles.d of haproxy (/usr/lib/tmpfiles.d/haproxy.conf:1)' });
  t.like(manifest.symlinks.find((l) => l.path === '/var/run'), { target: '/run' });
});

test('lighttpd: it serves the page its postinst made as www-data, with its cache and log directories; the manifest says why each is there', async (t) => {
  // lighttpd.service: ExecStart=/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf
  const { manifest, root } = await buildPackage(t, 'lighttpd', '/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf');
  // Debian's lighttpd.conf runs two perl scripts (include_shell) for its MIME
  // types and IPv6 listener: the trace saw them run, so the image has them and perl.
  t.regex(await readFile(join(root, 'etc/lighttpd/lighttpd.conf'), 'utf8'), /^include_shell "\/usr\/share\/lighttpd\/use-ipv6\.pl/m);
  // Without www-data: "can't find groupname www-data"; without uploads: "server.upload-dirs doesn't exist".
  const check = runInRoot(root, ['/usr/sbin/lighttpd', '-tt', '-f', '/etc/lighttpd/lighttpd.conf']);
  t.is(check.code, 0, check.output);

  // The client, inside the app's network namespace: the base's full busybox-static (the image's own BusyBox has /init's applets only, no wget),
  // under its own name, which is how it takes an applet from its first argument.
  const base = await createBase(new Cache(defaultCacheDir()), await hostBaseSpec(), {});
  await copyFile(join(base.root, BUSYBOX_PATH), join(root, 'tmp/busybox'));
  await chmod(join(root, 'tmp/busybox'), 0o755);
  const app = startInRoot(
    root,
    [
      '/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf &',
      'i=0',
      'while [ $i -lt 300 ]; do /tmp/busybox wget -q -O /tmp/page http://127.0.0.1/ 2>/dev/null && break; i=$((i + 1)); sleep 0.1; done',
      'echo "after $i tries" > /tmp/served',
      'wait',
    ].join('\n'),
  );
  const wwwData = await accountIn(root, 'www-data');
  try {
    t.true(await waitFor(() => stat(join(root, 'tmp/served')).then(() => true, () => false), 60_000, app.exited), app.output());
    const page = await readFile(join(root, 'tmp/page'), 'utf8').catch(async () => {
      const log = await readFile(join(root, 'var/log/lighttpd/error.log'), 'utf8').catch(() => '(no error.log)');
      return `no page, ${await readFile(join(root, 'tmp/served'), 'utf8').catch(() => '')}: ${app.output()}\n${log}`;
    });
    // The welcome page lighttpd's postinst copied, found through the conf-enabled link it made (index-file.names += index.lighttpd.html).
    t.regex(page, /<title>Welcome page<\/title>/);
    t.deepEqual(
      (await processesInRoot(root)).filter((p) => p.comm === 'lighttpd').map((p) => p.uid),
      [wwwData?.uid],
      app.output(),
    );
    // Opened by lighttpd once it runs as www-data: the directory is www-data's 0750, as the package made it.
    t.regex(await readFile(join(root, 'var/log/lighttpd/error.log'), 'utf8').catch(() => ''), /server started/);
  } finally {
    await app.stop();
  }

  const users = manifest.accounts.users;
  // The trace saw lighttpd switch to it (setuid(33)); the image's files it owns would keep it anyway.
  t.regex(users.find((u) => u.name === 'www-data')?.reason ?? '', /^traced: setuid\(33\)$/);
  t.like(manifest.directories.find((d) => d.path === '/run/lighttpd'), { mode: '0750', uid: wwwData?.uid, reason: 'tmpfiles.d of lighttpd (/usr/lib/tmpfiles.d/lighttpd.tmpfile.conf:1)' });
  t.like(manifest.directories.find((d) => d.path === '/var/cache/lighttpd/uploads'), { uid: wwwData?.uid, reason: 'shipped empty by lighttpd' });
  t.like(manifest.directories.find((d) => d.path === '/var/log/lighttpd'), { mode: '0750', uid: wwwData?.uid, reason: 'shipped empty by lighttpd' });
  t.like(manifest.files.find((f) => f.path === '/var/www/html/index.lighttpd.html'), { reason: "created by the install (in lighttpd's /var/www/html)" });
  // The link lighty-enable-mod made: the trace saw lighttpd open the file through it, so the plan has it first.
  t.like(manifest.symlinks.find((l) => l.path === '/etc/lighttpd/conf-enabled/99-unconfigured.conf'), {
    target: '../conf-available/99-unconfigured.conf',
    reason: 'on the way to a file of the image',
  });
  t.regex(manifest.files.find((f) => f.path === '/etc/lighttpd/conf-available/99-unconfigured.conf')?.reason ?? '', /^traced: opened by \/usr\/sbin\/lighttpd$/);
});
