import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountsBelow, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli } from '../helpers/cli.js';

const test = integrationTest({ tools: ['setpriv', 'unshare'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-errors-'));
test.after.always(() => removeTree(work));

async function recipeFile(name: string, yaml: string): Promise<string> {
  const file = join(work, `${name}.yaml`);
  await writeFile(file, yaml);
  return file;
}

test('an unknown application name: exit 2, the directories searched and their recipes, a close match', async (t) => {
  const result = await runCli(['build', 'ngnix']);
  t.is(result.code, 2);
  // In the checkout, the working directory's recipes/ is tinyx's own: one entry.
  t.regex(result.stderr, /no recipe named "ngnix"; did you mean "nginx"\?\n  searched, in order:\n    recipes \(the working directory, tinyx's own\): nginx, redis\n/);
  t.regex(result.stderr, /hint: write recipes\/ngnix\.yaml \(for an example, see recipes\/nginx\.yaml\), .*tinyx build --package ngnix/);
});

test('a recipe with an unknown key: exit 2, the file and the field', async (t) => {
  const file = await recipeFile('typo', 'packages: [nginx]\nentrypoint:\n  cmd: [/usr/sbin/nginx]\n  usr: www-data\n');
  const result = await runCli(['build', file, '--json']);
  t.is(result.code, 2);
  const json = JSON.parse(result.stdout) as { ok: boolean; error: { code: string; message: string; hint: string } };
  t.false(json.ok);
  t.is(json.error.code, 'E_RECIPE');
  t.regex(json.error.message, /typo\.yaml: entrypoint\.usr: unknown key$/);
  t.regex(json.error.hint, /did you mean "user"/);
});

test('a recipe with a wrong type: exit 2, the file and the field', async (t) => {
  const file = await recipeFile('wrongtype', 'packages: nginx\nentrypoint: { cmd: [/usr/sbin/nginx] }\n');
  const result = await runCli(['build', file]);
  t.is(result.code, 2);
  t.regex(result.stderr, /wrongtype\.yaml: packages: must be a list, not the string "nginx"/);
});

test('a Debian package that does not exist: exit 2, naming the package and the recipe', async (t) => {
  const file = await recipeFile('nosuchpkg', 'packages: [tinyx-no-such-package]\nentrypoint: { cmd: [/usr/bin/true] }\n');
  const result = await runCli(['build', file, '--no-kernel', '--out', join(work, 'nosuchpkg')]);
  t.is(result.code, 2, result.stderr);
  t.regex(result.stderr, /nosuchpkg\.yaml: packages: Debian has no package "tinyx-no-such-package"/);
  t.deepEqual(await mountsBelow(tmpdir()), []);
});

test('an entrypoint no installed package provides: exit 2, with the programs the package has', async (t) => {
  const missing = await runCli(['build', '--package', 'memcached', '--cmd', '/usr/bin/no-such-daemon', '--no-kernel', '--out', join(work, 'm1')]);
  t.is(missing.code, 2, missing.stderr);
  t.regex(missing.stderr, /--package memcached: entrypoint\.cmd: \/usr\/bin\/no-such-daemon does not exist in the install root/);
  t.regex(missing.stderr, /hint: .*\/usr\/bin\/memcached/);
  // /etc/passwd exists in the root, but a postinst made it: no package owns it.
  const unowned = await runCli(['build', '--package', 'memcached', '--cmd', '/etc/passwd', '--no-kernel', '--out', join(work, 'm2')]);
  t.is(unowned.code, 2, unowned.stderr);
  t.regex(unowned.stderr, /--package memcached: entrypoint\.cmd: \/etc\/passwd is not in any installed package/);
});

test('--package alone for a package that ships no service unit: exit 2, asking for the command line; no image is written', async (t) => {
  const out = join(work, 'python3');
  const result = await runCli(['build', '--package', 'python3', '--no-kernel', '--out', out]);
  t.is(result.code, 2, result.stderr);
  t.regex(result.stderr, /python3 ships no systemd service unit: nothing says how to start it/);
  t.regex(result.stderr, /hint: give the command line: tinyx build --package python3 --cmd/);
  t.false(await stat(out).then(() => true, () => false));
});

test('not root: exit 3 and how to fix it', async (t) => {
  const result = await runCli(['build', 'nginx'], {
    wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
    env: { TINYX_CACHE: join(work, 'nobody-cache'), HOME: work },
  });
  t.is(result.code, 3, result.stderr);
  t.regex(result.stderr, /tinyx build needs root/);
  t.regex(result.stderr, /hint: run it as root/);
});

test('a missing host tool: exit 3, naming the Debian package that provides it', async (t) => {
  // A private mount namespace in which debootstrap is not executable: the host's stays as it is.
  const result = await runCli(['build', 'nginx', '--json'], { wrap: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'PATH="$PATH:/usr/sbin:/sbin"; mount --bind /dev/null "$(command -v debootstrap)" && exec "$@"', 'sh'] });
  t.is(result.code, 3, result.stderr);
  const json = JSON.parse(result.stdout) as { error: { code: string; message: string; hint: string } };
  t.is(json.error.code, 'E_MISSING_TOOL');
  t.is(json.error.message, 'debootstrap is not installed on this host');
  t.regex(json.error.hint, /apt-get install debootstrap/);
});

test('bad arguments: exit 2 with usage help', async (t) => {
  const both = await runCli(['build', 'nginx', '--package', 'memcached']);
  t.is(both.code, 2);
  t.regex(both.stderr, /give a recipe or --package, not both/);
  const cmdAlone = await runCli(['build', 'nginx', '--cmd', '/usr/sbin/nginx']);
  t.is(cmdAlone.code, 2);
  t.regex(cmdAlone.stderr, /--cmd, --port, --user and --name go with --package/);
  const badFormat = await runCli(['build', 'nginx', '--format', 'zip']);
  t.is(badFormat.code, 2);
  t.regex(badFormat.stderr, /Invalid values:[\s\S]*format/);
  // A compression is the initramfs's: with another format it is refused before any work.
  const compressedErofs = await runCli(['build', 'nginx', '--format', 'erofs', '--compression', 'xz', '--out', join(work, 'never')]);
  t.is(compressedErofs.code, 2, compressedErofs.stderr);
  t.regex(compressedErofs.stderr, /--compression xz: --format erofs is not compressed\n  hint: drop --compression, or use --format initramfs --compression xz/);
  t.false(existsSync(join(work, 'never')));
  const noImage = await runCli(['inspect', join(work, 'nothing-here')]);
  t.is(noImage.code, 2);
  t.regex(noImage.stderr, /is not an image directory \(no manifest\.json\)/);
  // One run command for every backend: an option only another backend reads is refused, not ignored.
  for (const [args, pattern] of [
    [['--backend', 'xen', '--accel', 'kvm'], /--accel is for --backend qemu/],
    [['--backend', 'xen', '--network', 'bridge'], /--network is for --backend qemu/],
    [['--hotplug', 'lean'], /--hotplug is for --backend xen/],
    [['--no-refill'], /--refill is for --backend xen/],
  ] as const) {
    const refused = await runCli(['run', join(work, 'nothing-here'), ...args]);
    t.is(refused.code, 2, args.join(' '));
    t.regex(refused.stderr, pattern);
  }
  // A guest kind the image's platform does not have is named with the ones it has.
  const kvmImage = join(work, 'kvm-image');
  await mkdir(kvmImage, { recursive: true });
  for (const name of ['vmlinuz', 'vmlinux', 'initrd.cpio.gz']) await writeFile(join(kvmImage, name), '');
  await writeFile(join(kvmImage, 'manifest.json'), JSON.stringify({ manifestVersion: 1, name: 'nginx', platform: 'kvm', readiness: null, artifacts: { rootfs: 'initrd.cpio.gz', kernel: 'vmlinuz', vmlinux: 'vmlinux' } }));
  const pvh = await runCli(['run', kvmImage, '--type', 'pvh', '--check']);
  t.is(pvh.code, 2, pvh.stderr);
  t.regex(pvh.stderr, /nginx is a kvm image, which boots as microvm or q35, not pvh/);
  const onXen = await runCli(['run', kvmImage, '--backend', 'xen', '--check']);
  t.is(onXen.code, 2, onXen.stderr);
  t.regex(onXen.stderr, /nginx was built for kvm; the xen backend boots xen-pvh and xen-pv images/);
  // A tar is not run.
  await writeFile(join(kvmImage, 'manifest.json'), JSON.stringify({ manifestVersion: 1, name: 'nginx', platform: 'kvm', format: 'tar', readiness: null, artifacts: { rootfs: 'initrd.cpio.gz', kernel: 'vmlinuz', vmlinux: 'vmlinux' } }));
  const tar = await runCli(['run', kvmImage, '--check']);
  t.is(tar.code, 2, tar.stderr);
  t.regex(tar.stderr, /holds its root as tar, which no backend boots\n  hint: build it as a bootable format: tinyx build nginx --format erofs \(or initramfs\)/);
});

test('doctor: every host tool with its Debian package; a missing one fails with exit 3 and names the package', async (t) => {
  const ready = await runCli(['doctor', '--json']);
  t.is(ready.code, 0, ready.stdout);
  const report = JSON.parse(ready.stdout) as { ok: boolean; checks: { name: string; ok: boolean; detail: string; debianPackage?: string }[] };
  t.true(report.ok);
  t.deepEqual(
    report.checks.filter((c) => ['debootstrap', 'objdump', 'chroot'].includes(c.name)).map((c) => [c.name, c.ok, c.debianPackage]),
    [
      ['debootstrap', true, 'debootstrap'],
      ['objdump', true, 'binutils'],
      ['chroot', true, 'coreutils'],
    ],
  );
  t.regex(report.checks.find((c) => c.name === 'accelerator')?.detail ?? '', /^tinyx run will use (kvm|tcg): /);
  const broken = await runCli(['doctor'], { wrap: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'PATH="$PATH:/usr/sbin:/sbin"; mount --bind /dev/null "$(command -v objdump)" && exec "$@"', 'sh'] });
  t.is(broken.code, 3);
  t.regex(broken.stdout, /^MISS +objdump .*\(apt-get install binutils\)$/m);
  t.regex(broken.stdout, /fix it with: tinyx doctor --fix +\(apt-get install binutils\)/);
});

test('an include or a fixup naming a path the install root lacks: exit 2, the recipe file, the field and the path', async (t) => {
  const entry = 'entrypoint: { cmd: [/usr/sbin/nginx, -g, "daemon off;"], user: root }\n';
  const include = await recipeFile('inc', `name: inc\npackages: [nginx]\n${entry}include: [/var/www/html, /var/www/nothing-here]\n`);
  const inc = await runCli(['build', include, '--no-kernel', '--out', join(work, 'inc')]);
  t.is(inc.code, 2, inc.stderr);
  t.regex(inc.stderr, /tinyx: error: .*inc\.yaml: include\[1\]: \/var\/www\/nothing-here does not exist in the install root/);
  const fixup = await recipeFile('fix', `name: fix\npackages: [nginx]\n${entry}fixups:\n  - file: /etc/nginx/nothing.conf\n    delete-lines: 'x'\n`);
  const fix = await runCli(['build', fixup, '--no-kernel', '--out', join(work, 'fix')]);
  t.is(fix.code, 2, fix.stderr);
  t.regex(fix.stderr, /tinyx: error: .*fix\.yaml: fixups\[0\]\.file: \/etc\/nginx\/nothing\.conf is not a file of the image/);
  t.regex(fix.stderr, /hint: /);
});

test('a corrupt manifest.json: inspect and run name the file, exit 2', async (t) => {
  const dir = join(work, 'corrupt');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'manifest.json'), '{"name": ');
  for (const args of [['inspect', dir], ['run', dir, '--check']]) {
    const result = await runCli(args);
    t.is(result.code, 2, `${args[0]}: ${result.stderr}`);
    t.regex(result.stderr, /tinyx: error: .*corrupt\/manifest\.json is not valid JSON/);
  }
});
