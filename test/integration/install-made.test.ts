import { chown, mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, recipeFromPackage, type Manifest } from '@tinyx/builder';
import { removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { processesInRoot, runInRoot, startInRoot, unpackInitrd, waitFor } from '../helpers/image.js';

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
  const manifest = await build({ recipe: recipeFromPackage({ package: pkg, cmd }), outDir, kernel: false });
  return { manifest, root: await unpackInitrd(t, join(outDir, manifest.artifacts.rootfs)) };
}

/** What haproxy's admin socket answers to one command. */
function askSocket(path: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = createConnection(path);
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => resolve(answer)).on('error', reject);
    socket.write(`${command}\n`);
  });
}

test('haproxy: the account its postinst added and its chroot directory; `haproxy -c` passes, it starts and its worker runs as haproxy in the chroot', async (t) => {
  // haproxy.service: ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS, without the pid file and master socket.
  const { manifest, root } = await buildPackage(t, 'haproxy', '/usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg');
  const account = manifest.accounts.users.find((u) => u.name === 'haproxy');
  t.regex(account?.reason ?? '', /^account added by the install \(named in haproxy\.(preinst|postinst)\)$/);
  t.true(manifest.accounts.groups.some((g) => g.name === 'haproxy'));
  t.like(manifest.directories.find((d) => d.path === '/var/lib/haproxy/dev'), { reason: 'shipped empty by haproxy' });
  t.like(manifest.symlinks.find((l) => l.path === '/var/run'), { target: '/run' });
  t.regex(await readFile(join(root, 'etc/passwd'), 'utf8'), new RegExp(`^haproxy:x:${account!.uid}:${account!.gid}:`, 'm'));
  t.regex(await readFile(join(root, 'etc/group'), 'utf8'), new RegExp(`^haproxy:x:${account!.gid}:`, 'm'));
  t.true((await stat(join(root, 'var/lib/haproxy/dev'))).isDirectory());

  // `user haproxy` in haproxy.cfg: without the account, "cannot find user id for 'haproxy'".
  const check = runInRoot(root, ['/usr/sbin/haproxy', '-c', '-f', '/etc/haproxy/haproxy.cfg']);
  t.is(check.code, 0, check.output);
  t.regex(check.output, /Configuration file is valid/);

  // /run/haproxy (its admin socket's directory) comes from haproxy's tmpfiles.d,
  // "d /run/haproxy 2775 haproxy haproxy -", which this part of #11 does not
  // read yet: the test plays systemd-tmpfiles.
  await mkdir(join(root, 'run/haproxy'), { mode: 0o2775 });
  await chown(join(root, 'run/haproxy'), account!.uid, account!.gid);
  const app = startInRoot(root, 'exec /usr/sbin/haproxy -Ws -f /etc/haproxy/haproxy.cfg');
  try {
    const socket = join(root, 'run/haproxy/admin.sock');
    const listening = await waitFor(async () => (await stat(socket).catch(() => undefined))?.isSocket() ?? false, 30_000, app.exited);
    t.true(listening, `haproxy never made ${socket}:\n${app.output()}`);
    t.regex(await askSocket(socket, 'show info'), /^Name: HAProxy$/m);
    // The worker dropped to haproxy's uid and chrooted into /var/lib/haproxy (the directory the package ships).
    const workers = (await processesInRoot(root)).filter((p) => p.comm === 'haproxy' && p.uid === account!.uid);
    t.deepEqual(
      workers.map((p) => p.root),
      [join(root, 'var/lib/haproxy')],
      app.output(),
    );
  } finally {
    await app.stop();
  }
});

test('lighttpd: www-data, its cache and log directories, the page and the link its postinst made; it serves that page as www-data', async (t) => {
  // lighttpd.service: ExecStart=/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf
  const { manifest, root } = await buildPackage(t, 'lighttpd', '/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf');
  const wwwData = manifest.accounts.users.find((u) => u.name === 'www-data');
  t.regex(wwwData?.reason ?? '', /^owner of \/var\/(cache|log)\/lighttpd/);
  t.like(manifest.directories.find((d) => d.path === '/var/cache/lighttpd/uploads'), { uid: wwwData!.uid, reason: 'shipped empty by lighttpd' });
  t.like(manifest.directories.find((d) => d.path === '/var/log/lighttpd'), { mode: '0750', uid: wwwData!.uid, reason: 'shipped empty by lighttpd' });
  t.like(manifest.files.find((f) => f.path === '/var/www/html/index.lighttpd.html'), { reason: "created by the install (in lighttpd's /var/www/html)" });
  t.like(manifest.symlinks.find((l) => l.path === '/etc/lighttpd/conf-enabled/99-unconfigured.conf'), { target: '../conf-available/99-unconfigured.conf' });
  t.regex(await readFile(join(root, 'etc/group'), 'utf8'), /^www-data:x:33:/m);

  // Debian's lighttpd.conf also runs two perl scripts (include_shell) for its
  // MIME types and IPv6 listener, and the image has no perl (#11, what a
  // trace of the app would add): the test's copy of the configuration leaves
  // those two lines out and is Debian's otherwise.
  const debian = await readFile(join(root, 'etc/lighttpd/lighttpd.conf'), 'utf8');
  t.regex(debian, /^include_shell /m);
  await writeFile(join(root, 'tmp/lighttpd.conf'), debian.replace(/^include_shell .*$/gm, ''));
  // Without www-data: "can't find groupname www-data"; without uploads: "server.upload-dirs doesn't exist".
  const check = runInRoot(root, ['/usr/sbin/lighttpd', '-tt', '-f', '/tmp/lighttpd.conf']);
  t.is(check.code, 0, check.output);

  const app = startInRoot(
    root,
    [
      '/usr/sbin/lighttpd -D -f /tmp/lighttpd.conf &',
      'i=0',
      'while [ $i -lt 300 ]; do busybox wget -q -O /tmp/page http://127.0.0.1/ 2>/dev/null && break; i=$((i + 1)); sleep 0.1; done',
      'echo "after $i tries" > /tmp/served',
      'wait',
    ].join('\n'),
  );
  try {
    t.true(await waitFor(() => stat(join(root, 'tmp/served')).then(() => true, () => false), 60_000, app.exited), app.output());
    const page = await readFile(join(root, 'tmp/page'), 'utf8').catch(async () => {
      const log = await readFile(join(root, 'var/log/lighttpd/error.log'), 'utf8').catch(() => '(no error.log)');
      return `no page, ${await readFile(join(root, 'tmp/served'), 'utf8')}: ${app.output()}\n${log}`;
    });
    // The welcome page lighttpd's postinst copied, found through the conf-enabled link it made (index-file.names += index.lighttpd.html).
    t.regex(page, /<title>Welcome page<\/title>/);
    t.deepEqual(
      (await processesInRoot(root)).filter((p) => p.comm === 'lighttpd').map((p) => p.uid),
      [wwwData!.uid],
      app.output(),
    );
    t.regex(await readFile(join(root, 'var/log/lighttpd/error.log'), 'utf8'), /server started/);
  } finally {
    await app.stop();
  }
});
