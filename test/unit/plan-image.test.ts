import test from 'ava';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TinyxError, parseRecipe, type Recipe } from '@tinyx/builder';
import { DirectoryRootView, loadBlacklist, makeBlacklist, planImage, readDpkgStatus, type InstalledPackage } from '@tinyx/builder/internals';
import { recordedPackages, recordedRoot } from '../helpers/fixture-root.js';

const nginxRecipe = (cmd = ['/usr/sbin/nginx', '-t']): Recipe =>
  parseRecipe(`packages: [nginx]\nentrypoint: { cmd: ${JSON.stringify(cmd)} }\n`, 'recipes/nginx.yaml', 'nginx');

async function planNginx(options: { blacklist?: 'bundled' | 'empty'; cmd?: string[]; lenient?: boolean; remove?: string[] } = {}) {
  const view = await recordedRoot({ lenient: !!options.lenient });
  for (const path of options.remove ?? []) view.overlay(path, null);
  const { statusFile, fileLists } = await recordedPackages();
  return planImage({
    view,
    recipe: nginxRecipe(options.cmd),
    installed: await readDpkgStatus(statusFile),
    fileLists,
    blacklist: options.blacklist === 'empty' ? makeBlacklist([], []) : await loadBlacklist(),
    multiarch: 'x86_64-linux-gnu',
    alwaysInclude: [{ path: '/bin/busybox', reason: 'BusyBox' }],
  });
}

test('the ELF closure of nginx: every NEEDED library, resolved through merged /usr, and the interpreter', async (t) => {
  const plan = await planNginx();
  const elves = [...plan.files.values()].filter((f) => f.elf).map((f) => f.path);
  t.deepEqual(elves.sort(), [
    '/usr/bin/busybox',
    '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
    '/usr/lib/x86_64-linux-gnu/libc.so.6',
    '/usr/lib/x86_64-linux-gnu/libcrypt.so.1.1.0',
    '/usr/lib/x86_64-linux-gnu/libcrypto.so.3',
    '/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2',
    '/usr/lib/x86_64-linux-gnu/libssl.so.3',
    '/usr/lib/x86_64-linux-gnu/libz.so.1.2.13',
    '/usr/sbin/nginx',
  ]);
  t.is(plan.entrypoint, '/usr/sbin/nginx');
  t.is(plan.files.get('/usr/sbin/nginx')?.reason, 'entrypoint');
  t.is(plan.files.get('/usr/lib/x86_64-linux-gnu/libcrypto.so.3')?.reason, 'NEEDED by /usr/sbin/nginx');
  t.is(plan.files.get('/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2')?.reason, 'interpreter of /usr/sbin/nginx');
  // The interpreter is asked for as /lib64/ld-linux-x86-64.so.2: the image needs each link on the way.
  t.is(plan.symlinks.get('/lib64'), 'usr/lib64');
  t.is(plan.symlinks.get('/usr/lib64/ld-linux-x86-64.so.2'), '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2');
  t.is(plan.symlinks.get('/lib'), 'usr/lib');
  // NEEDED names the soname; the file is the versioned one behind the link.
  t.is(plan.symlinks.get('/usr/lib/x86_64-linux-gnu/libz.so.1'), 'libz.so.1.2.13');
  t.deepEqual(plan.libraryPath, []);
});

test('package data comes along for the kept packages, minus the path blacklist', async (t) => {
  const plan = await planNginx();
  const paths = [...plan.files.keys()];
  t.truthy(plan.files.get('/etc/nginx/nginx.conf'));
  t.is(plan.files.get('/etc/nginx/nginx.conf')?.package, 'nginx-common');
  t.is(plan.files.get('/etc/nginx/nginx.conf')?.reason, 'package nginx-common');
  t.truthy(plan.files.get('/etc/nginx/mime.types'));
  t.deepEqual(paths.filter((p) => p.startsWith('/usr/share/doc/') || p.startsWith('/usr/share/man/')), []);
  t.deepEqual(paths.filter((p) => p.includes('/systemd/') || p.startsWith('/etc/init.d/') || p.startsWith('/etc/logrotate.d/')), []);
  t.deepEqual(paths.filter((p) => p.includes('/gconv/')), [], 'gconv modules are ELF and unused; their config is blacklisted');
  // iproute2 and debconf are in nginx's Depends closure but blacklisted.
  t.deepEqual(paths.filter((p) => p.startsWith('/etc/iproute2/')), []);
  t.true(plan.excludedPackages.includes('iproute2'));
  t.true(plan.excludedPackages.includes('debconf'));
  t.deepEqual(
    plan.packages.map((p) => p.name),
    ['busybox-static', 'libc6', 'libcrypt1', 'libpcre2-8-0', 'libssl3', 'nginx', 'nginx-common', 'zlib1g'],
  );
  t.regex(plan.packages.find((p) => p.name === 'nginx')!.version, /^1\.22\.1-9/);
  // The whole kept closure, contributing files or not (gcc-12-base ships only docs): what the install made for it counts.
  t.deepEqual(plan.closure, ['gcc-12-base', 'libc6', 'libcrypt1', 'libgcc-s1', 'libpcre2-8-0', 'libssl3', 'nginx', 'nginx-common', 'zlib1g']);
});

test('without a blacklist the same plan takes docs and the dependencies it would cut', async (t) => {
  const plan = await planNginx({ blacklist: 'empty' });
  const paths = [...plan.files.keys()];
  t.true(paths.some((p) => p.startsWith('/usr/share/doc/nginx')), 'docs of nginx');
  t.true(paths.some((p) => p.startsWith('/etc/iproute2/')), 'config of iproute2');
  t.deepEqual(plan.excludedPackages, []);
  t.true(plan.packages.some((p) => p.name === 'iproute2'));
});

test('an entrypoint that no package installed is a user error naming it', async (t) => {
  const error = await t.throwsAsync(planNginx({ cmd: ['/var/www/html/index.nginx-debian.html'] }), { instanceOf: TinyxError });
  t.is(error?.code, 'E_ENTRY_NOT_PACKAGED');
  t.is(error?.kind, 'user');
  t.regex(error?.message ?? '', /recipes\/nginx\.yaml: entrypoint\.cmd: \/var\/www\/html\/index\.nginx-debian\.html is not in any installed package/);
  t.regex(error?.hint ?? '', /\/usr\/sbin\/nginx/);
});

test('a NEEDED library missing from the root is an error naming it and who needs it', async (t) => {
  const error = await t.throwsAsync(planNginx({ lenient: true, remove: ['/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0'] }), { instanceOf: TinyxError });
  t.is(error?.code, 'E_LIBRARY_MISSING');
  t.regex(error?.message ?? '', /^libpcre2-8\.so\.0, NEEDED by \/usr\/sbin\/nginx, is not in the install root/);
});

/** A root made in the test: a real compiled program whose library is found through RUNPATH=$ORIGIN/../lib/app. */
async function compiledRoot(t: { teardown(fn: () => Promise<void>): void }) {
  const root = await mkdtemp(join(tmpdir(), 'tinyx-plan-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const src = join(root, 'src');
  await mkdir(src);
  for (const dir of ['usr/bin', 'usr/lib/app', 'usr/lib/x86_64-linux-gnu', 'usr/lib64', 'etc']) await mkdir(join(root, dir), { recursive: true });
  for (const [link, target] of [['bin', 'usr/bin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64']]) await symlink(target!, join(root, link!));
  await writeFile(join(src, 'foo.c'), 'int foo(void) { return 42; }\n');
  await writeFile(join(src, 'app.c'), 'int foo(void);\nint main(void) { return foo() == 42 ? 0 : 1; }\n');
  execFileSync('gcc', ['-shared', '-fPIC', '-Wl,-soname,libfoo.so.1', '-o', join(root, 'usr/lib/app/libfoo.so.1'), join(src, 'foo.c')]);
  execFileSync('gcc', ['-o', join(root, 'usr/bin/app'), join(src, 'app.c'), `-L${join(root, 'usr/lib/app')}`, '-l:libfoo.so.1', '-Wl,-rpath,$ORIGIN/../lib/app', '-Wl,--enable-new-dtags']);
  // The program really runs with its libraries where the planner says they are.
  execFileSync(join(root, 'usr/bin/app'));
  await copyFile('/usr/lib/x86_64-linux-gnu/libc.so.6', join(root, 'usr/lib/x86_64-linux-gnu/libc.so.6'));
  await copyFile('/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', join(root, 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'));
  await symlink('/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', join(root, 'usr/lib64/ld-linux-x86-64.so.2'));
  await writeFile(join(root, 'usr/bin/run.sh'), '#!/usr/bin/app\n');
  const pkg: InstalledPackage = { name: 'app', version: '1.0-1', architecture: 'amd64', depends: [], provides: [], essential: false, status: 'install ok installed' };
  return { root, pkg };
}

test('RUNPATH with $ORIGIN, on a program compiled in the test and read by the real objdump', async (t) => {
  const { root, pkg } = await compiledRoot(t);
  const plan = await planImage({
    view: new DirectoryRootView(root),
    recipe: parseRecipe('packages: [app]\nentrypoint: { cmd: [app] }\n', 'app.yaml', 'app'),
    installed: [pkg],
    fileLists: new Map([['app', ['/usr/bin/app', '/usr/lib/app/libfoo.so.1']]]),
    blacklist: makeBlacklist([], []),
    multiarch: 'x86_64-linux-gnu',
  });
  t.is(plan.entrypoint, '/usr/bin/app', 'a bare command is found on the image PATH');
  t.is(plan.files.get('/usr/lib/app/libfoo.so.1')?.reason, 'NEEDED by /usr/bin/app');
  t.is(plan.files.get('/usr/lib/x86_64-linux-gnu/libc.so.6')?.reason, 'NEEDED by /usr/bin/app');
  t.truthy(plan.files.get('/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'));
  t.deepEqual(plan.packages, [{ name: 'app', version: '1.0-1', files: 2 }]);
});

test('a script entrypoint brings its interpreter and the interpreter its libraries', async (t) => {
  const { root, pkg } = await compiledRoot(t);
  const plan = await planImage({
    view: new DirectoryRootView(root),
    recipe: parseRecipe('packages: [app]\nentrypoint: { cmd: [/bin/run.sh] }\n', 'app.yaml', 'app'),
    installed: [pkg],
    fileLists: new Map([['app', ['/usr/bin/app', '/usr/bin/run.sh', '/usr/lib/app/libfoo.so.1']]]),
    blacklist: makeBlacklist([], []),
    multiarch: 'x86_64-linux-gnu',
  });
  t.is(plan.files.get('/usr/bin/run.sh')?.reason, 'entrypoint');
  t.is(plan.files.get('/usr/bin/app')?.reason, 'interpreter of /usr/bin/run.sh');
  t.truthy(plan.files.get('/usr/lib/app/libfoo.so.1'));
  t.is(plan.symlinks.get('/bin'), 'usr/bin');
});
