import test from 'ava';
import { chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkOutputDir, replaceOutputDir } from '@tinyx/builder/internals';
import { checkStateFile, checkVmId, ensurePrivateDir, runtimeDirPath, writeStateFile } from '@tinyx/toolstack/internals';
import { runtimeDir } from '@tinyx/toolstack';

// Everything tinyx removes or overwrites must be provably its own: these are
// the checks behind --out, `tinyx save FILE`, VM ids and the runtime
// directory, on real directories made in the test. The CLI's refusals (exit
// 2, the user's files untouched) are in test/integration/owned-paths.test.ts.

async function scratch(t: { teardown(f: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-owned-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const MANIFEST = JSON.stringify({ manifestVersion: 1, name: 'nginx', artifacts: { rootfs: 'initrd.cpio.gz' }, build: { tinyx: '0.1.0' } });

/** An image directory as the emit step leaves it. */
async function imageDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'manifest.json'), MANIFEST);
  for (const name of ['initrd.cpio.gz', 'vmlinuz', 'vmlinux', 'System.map', 'kernel.config', 'nginx.xl.cfg']) await writeFile(join(dir, name), 'old');
  return dir;
}

async function refusal(t: import('ava').ExecutionContext, path: string, pattern: RegExp): Promise<void> {
  const error = await t.throwsAsync(checkOutputDir(path));
  t.is((error as { code?: string }).code, 'E_OUTPUT_NOT_OURS');
  t.is((error as { kind?: string }).kind, 'user', 'a user error: exit 2');
  t.true(error!.message.includes(path), 'the message names the path');
  t.regex(error!.message, pattern);
}

test('--out may be a new path, an empty directory, or an image directory tinyx wrote', async (t) => {
  const dir = await scratch(t);
  t.is(await checkOutputDir(join(dir, 'new')), 'absent');
  await mkdir(join(dir, 'empty'));
  t.is(await checkOutputDir(join(dir, 'empty')), 'empty');
  t.is(await checkOutputDir(await imageDir(join(dir, 'image'))), 'tinyx');
  await mkdir(join(dir, 'kernel'));
  await writeFile(join(dir, 'kernel', 'kernel.json'), JSON.stringify({ generator: 'tinyx', kind: 'kernel' }));
  await writeFile(join(dir, 'kernel', 'vmlinuz'), '');
  t.is(await checkOutputDir(join(dir, 'kernel')), 'tinyx', 'a `tinyx kernel build --out` directory');
});

test('--out is refused for a directory of user files, a file, a link, or an image directory with other files', async (t) => {
  const dir = await scratch(t);
  await mkdir(join(dir, 'home', 'sub'), { recursive: true });
  await writeFile(join(dir, 'home', 'a.txt'), 'precious');
  await refusal(t, join(dir, 'home'), /holds a\.txt, sub/);
  await writeFile(join(dir, 'file'), 'precious');
  await refusal(t, join(dir, 'file'), /is a file/);
  await mkdir(join(dir, 'target'));
  await symlink(join(dir, 'target'), join(dir, 'link'));
  await refusal(t, join(dir, 'link'), /symbolic link/);
  const image = await imageDir(join(dir, 'image'));
  await writeFile(join(image, 'notes.txt'), 'mine');
  await refusal(t, image, /other files in it \(notes\.txt\)/);
  const fake = join(dir, 'fake');
  await mkdir(fake);
  await writeFile(join(fake, 'manifest.json'), '{"name":"x"}');
  await refusal(t, fake, /no image that tinyx wrote/);
  const nested = await imageDir(join(dir, 'nested'));
  await rm(join(nested, 'vmlinuz'));
  await mkdir(join(nested, 'vmlinuz'));
  await refusal(t, nested, /vmlinuz\//);
});

test('the swap replaces an image directory tinyx wrote and removes only the names tinyx writes', async (t) => {
  const dir = await scratch(t);
  const out = await imageDir(join(dir, 'out'));
  const staging = join(dir, '.out.tmp-1');
  await mkdir(staging);
  await writeFile(join(staging, 'manifest.json'), MANIFEST);
  await writeFile(join(staging, 'initrd.cpio.gz'), 'new');
  t.deepEqual(await replaceOutputDir(staging, out), { leftBehind: undefined });
  t.deepEqual((await readdir(out)).sort(), ['initrd.cpio.gz', 'manifest.json']);
  t.is(await readFile(join(out, 'initrd.cpio.gz'), 'utf8'), 'new');
  t.deepEqual(await readdir(dir), ['out'], 'no staging or old directory left');
});

test('the swap refuses a path that stopped being tinyx\'s since the build started, and touches nothing', async (t) => {
  const dir = await scratch(t);
  const out = await imageDir(join(dir, 'out'));
  const staging = join(dir, '.out.tmp-1');
  await mkdir(staging);
  await writeFile(join(out, 'added-meanwhile.txt'), 'mine');
  await t.throwsAsync(replaceOutputDir(staging, out), { message: /added-meanwhile\.txt/ });
  t.is(await readFile(join(out, 'added-meanwhile.txt'), 'utf8'), 'mine');
  t.true((await readdir(out)).includes('vmlinuz'), 'the old image is still in place');
  t.true((await stat(staging)).isDirectory(), 'the staging directory is left for the caller to clean up');
});

test('a VM id with "/", ".." or anything but an image name and suffix is refused', (t) => {
  t.is(checkVmId('nginx-1a2b3c'), 'nginx-1a2b3c');
  t.is(checkVmId('my.app_2-00ff00'), 'my.app_2-00ff00');
  for (const id of ['../victim', 'a/b', '..', '.', '', '/etc', '.leases', 'nginx-..', 'Nginx-1']) {
    const error = t.throws(() => checkVmId(id), undefined, id);
    t.is((error as { code?: string }).code, 'E_VM_ID');
    t.is((error as { kind?: string }).kind, 'user');
  }
});

test('the runtime directory is made 0700, and refused when it is a link, open to others, or not ours', async (t) => {
  const dir = await scratch(t);
  const made = join(dir, 'run', 'tinyx');
  t.is(runtimeDir({ TINYX_RUNTIME_DIR: made }), made);
  t.is((await lstat(made)).mode & 0o777, 0o700);
  t.is(runtimeDirPath({ TINYX_RUNTIME_DIR: 'rel' }), join(process.cwd(), 'rel'), 'a relative TINYX_RUNTIME_DIR is made absolute');

  await mkdir(join(dir, 'real'), { mode: 0o700 });
  await symlink(join(dir, 'real'), join(dir, 'link'));
  t.throws(() => runtimeDir({ TINYX_RUNTIME_DIR: join(dir, 'link') }), { message: /symbolic link/ });

  await mkdir(join(dir, 'open'));
  await chmod(join(dir, 'open'), 0o755);
  const open = t.throws(() => runtimeDir({ TINYX_RUNTIME_DIR: join(dir, 'open') }));
  t.is((open as { code?: string }).code, 'E_RUNTIME_DIR');
  t.regex(open!.message, /open to other users \(mode 0755\)/);
  t.is((await lstat(join(dir, 'open'))).mode & 0o777, 0o755, 'a directory the user named is checked, never changed');
  ensurePrivateDir(join(dir, 'open'), 'tinyx\'s default', { tighten: true });
  t.is((await lstat(join(dir, 'open'))).mode & 0o777, 0o700, "tinyx's own default path, ours, is tightened");

  if (process.getuid?.() === 0) {
    await mkdir(join(dir, 'theirs'), { mode: 0o700 });
    await chown(join(dir, 'theirs'), 65534, 65534);
    t.throws(() => runtimeDir({ TINYX_RUNTIME_DIR: join(dir, 'theirs') }), { message: /belongs to uid 65534, not to you \(uid 0\)/ });
    t.throws(() => ensurePrivateDir(join(dir, 'theirs'), 'default', { tighten: true }), { message: /belongs to uid 65534/ }, 'never tightened: not ours');
  }
});

test('tinyx save writes FILE and FILE.json for this user only, replaces only a state it saved, and refuses anything else', async (t) => {
  const dir = await scratch(t);
  const file = join(dir, 'nginx.state');
  const saved = { imageDir: '/img/nginx', memoryMiB: 64, vcpus: 1, machine: 'microvm' };
  await writeStateFile(file, (temp) => writeFile(temp, 'memory-1'), saved);
  t.is(await readFile(file, 'utf8'), 'memory-1');
  t.is((await stat(file)).mode & 0o777, 0o600, "the guest's memory is for this user only");
  t.deepEqual(JSON.parse(await readFile(`${file}.json`, 'utf8')), saved);
  await writeStateFile(file, (temp) => writeFile(temp, 'memory-2'), saved);
  t.is(await readFile(file, 'utf8'), 'memory-2', 'a state tinyx saved is replaced');
  t.deepEqual((await readdir(dir)).sort(), ['nginx.state', 'nginx.state.json'], 'no temporary file left');

  const precious = join(dir, 'thesis.pdf');
  await writeFile(precious, 'precious');
  let wrote = false;
  const error = await t.throwsAsync(writeStateFile(precious, async () => void (wrote = true), saved));
  t.is((error as { code?: string }).code, 'E_STATE_FILE_NOT_OURS');
  t.is((error as { kind?: string }).kind, 'user');
  t.false(wrote, 'refused before the VM is touched');
  t.is(await readFile(precious, 'utf8'), 'precious');

  await writeFile(join(dir, 'notes.json'), 'mine');
  await t.throwsAsync(checkStateFile(join(dir, 'notes')), { message: /notes\.json is not a state description tinyx wrote/ });
  await mkdir(join(dir, 'adir'));
  await t.throwsAsync(checkStateFile(join(dir, 'adir')), { message: /is a directory/ });
  await t.throwsAsync(writeStateFile(join(dir, 'fails'), async () => Promise.reject(new Error('QEMU failed')), saved), { message: 'QEMU failed' });
  t.false((await readdir(dir)).some((name) => name.includes('fails')), 'a failed save leaves no file behind');
});
