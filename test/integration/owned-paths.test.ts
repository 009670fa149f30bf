import { spawnSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli, type CliResult } from '../helpers/cli.js';

// tinyx runs as root: every path it removes or overwrites must be provably its
// own. Each case points the real CLI at a user's files and checks the refusal
// (exit 2 with a `tinyx: error:` line and a hint, no stack) and that every
// file is still there; then that the same command works on a path tinyx owns.

const test = integrationTest({ tools: ['setpriv'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-owned-'));
test.after.always(() => removeTree(work));

/** A directory of a user's files: a.txt and sub/b.txt. */
async function userFiles(dir: string): Promise<string> {
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'a.txt'), 'precious\n');
  await writeFile(join(dir, 'sub', 'b.txt'), 'x\n');
  return dir;
}

async function assertUserFilesKept(t: import('ava').ExecutionContext, dir: string): Promise<void> {
  t.is(await readFile(join(dir, 'a.txt'), 'utf8'), 'precious\n', `${dir}/a.txt is kept`);
  t.is(await readFile(join(dir, 'sub', 'b.txt'), 'utf8'), 'x\n', `${dir}/sub/b.txt is kept`);
}

function assertRefused(t: import('ava').ExecutionContext, result: CliResult, code: string | RegExp, exit = 2): void {
  t.is(result.code, exit, result.stderr);
  t.regex(result.stderr, /^tinyx: error: /m);
  t.regex(result.stderr, /^ {2}hint: /m);
  t.notRegex(result.stderr, /^\s+at /m, 'no stack trace');
  if (typeof code === 'string') t.true(result.stderr.includes(code), `${code} in: ${result.stderr}`);
  else t.regex(result.stderr, code);
}

test.serial('build --out DIR with a user\'s files in it: exit 2, every file kept, nothing left beside it', async (t) => {
  const demo = await userFiles(join(work, 'demo'));
  const result = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', demo]);
  assertRefused(t, result, /--out .*demo: holds a\.txt, sub and no image that tinyx wrote/);
  await assertUserFilesKept(t, demo);
  t.deepEqual((await readdir(work)).filter((name) => name.startsWith('.demo')), [], 'no staging directory left');
});

test.serial('build --out . from a directory of the user\'s: exit 2, the directory kept', async (t) => {
  const here = await userFiles(join(work, 'here'));
  const result = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', '.'], { cwd: here });
  assertRefused(t, result, /holds a\.txt, sub/);
  await assertUserFilesKept(t, here);
});

test.serial('build --out FILE and kernel build --out DIR: exit 2 before any work, the file and directory kept', async (t) => {
  const file = join(work, 'notes.txt');
  await writeFile(file, 'precious\n');
  assertRefused(t, await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', file]), /notes\.txt: is a file, not a directory/);
  t.is(await readFile(file, 'utf8'), 'precious\n');
  const kdir = await userFiles(join(work, 'kdir'));
  const kernel = await runCli(['kernel', 'build', 'nginx', '--format', 'initramfs', '--out', kdir]);
  assertRefused(t, kernel, /holds a\.txt, sub/);
  t.notRegex(kernel.stderr, /Build the kernel/, 'refused before the build');
  await assertUserFilesKept(t, kdir);
});

test.serial('an image directory tinyx wrote is replaced; once a user file is added to it, it is refused', async (t) => {
  const out = join(work, 'img');
  const first = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out]);
  t.is(first.code, 0, first.stderr);
  const again = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out]);
  t.is(again.code, 0, `tinyx's own image directory is replaced: ${again.stderr}`);
  t.deepEqual((await readdir(out)).sort(), ['initrd.cpio.gz', 'manifest.json']);
  await writeFile(join(out, 'mine.txt'), 'mine\n');
  assertRefused(t, await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out]), /other files in it \(mine\.txt\)/);
  t.is(await readFile(join(out, 'mine.txt'), 'utf8'), 'mine\n');
  t.true((await readdir(out)).includes('manifest.json'), 'the image is left as it was');
  t.deepEqual((await readdir(work)).filter((name) => name.startsWith('.img')), [], 'no staging directory left');
});

test.serial('a build killed between the two renames of its swap (nothing at --out, the earlier image moved aside): the next build puts the earlier image back, then replaces it', async (t) => {
  const out = join(work, 'swapped');
  const first = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out]);
  t.is(first.code, 0, first.stderr);
  // What SIGKILL leaves at that moment: the old image renamed aside, the new one still in its staging directory.
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  await rename(out, join(work, `.swapped.tmp-${dead}-0a1b2c.old`));
  await mkdir(join(work, `.swapped.tmp-${dead}-0a1b2c`));
  const next = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out]);
  t.is(next.code, 0, next.stderr);
  t.regex(next.stderr, new RegExp(`${out} was moved aside by a build killed during its swap \\(pid ${dead}\\): put back`));
  t.deepEqual((await readdir(out)).sort(), ['initrd.cpio.gz', 'manifest.json']);
  t.deepEqual((await readdir(work)).filter((name) => name.startsWith('.swapped')), [], 'the staging directory it left is removed');
});

test.serial('a VM id with ".." or "/" is refused by every command before anything is touched', async (t) => {
  const runtime = join(work, 'rt');
  await mkdir(runtime, { mode: 0o700 });
  // Shaped like a VM's directory, beside the runtime directory: `stop ../victim` once removed it.
  const victim = await userFiles(join(work, 'victim'));
  await writeFile(join(victim, 'vm.json'), JSON.stringify({ id: 'victim', pid: 1, imageDir: '/nonexistent', name: 'x', forwards: [], memoryMiB: 1 }));
  const env = { TINYX_RUNTIME_DIR: runtime };
  for (const args of [['stop', '../victim'], ['pause', '../victim'], ['logs', '../victim'], ['save', '../victim', join(work, 'state')], ['stop', `${victim}`], ['stop', '..']]) {
    assertRefused(t, await runCli(args, { env }), /is not a VM id/);
  }
  await assertUserFilesKept(t, victim);
  t.true((await lstat(join(victim, 'vm.json'))).isFile());
});

test.serial('as a user without XDG_RUNTIME_DIR: the runtime directory is made 0700, and one planted by another user is refused', async (t) => {
  // os.tmpdir() follows TMPDIR: the default /tmp/tinyx-65534 is here, not in the host's /tmp.
  const tmp = join(work, 'tmp');
  await mkdir(tmp, { recursive: true });
  await chmod(work, 0o755);
  await chmod(tmp, 0o1777);
  const nobody = { wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'], env: { TMPDIR: tmp, XDG_RUNTIME_DIR: undefined, TINYX_RUNTIME_DIR: undefined, HOME: tmp } };

  const own = await runCli(['ps'], nobody);
  t.is(own.code, 0, own.stderr);
  const made = await lstat(join(tmp, 'tinyx-65534'));
  t.is(made.uid, 65534);
  t.is(made.mode & 0o777, 0o700);
  await removeTree(join(tmp, 'tinyx-65534'));

  // Another user (root here) made the path first, open or closed: never used.
  await mkdir(join(tmp, 'tinyx-65534'), { mode: 0o777 });
  await chmod(join(tmp, 'tinyx-65534'), 0o777);
  const planted = await runCli(['ps'], nobody);
  assertRefused(t, planted, /runtime directory .*tinyx-65534 .* belongs to uid 0, not to you \(uid 65534\)/, 3);
  t.regex(planted.stderr, /TINYX_RUNTIME_DIR/, 'the hint says how to choose another');
  await chown(join(tmp, 'tinyx-65534'), 65534, 65534);
  const open = await runCli(['ps'], nobody);
  t.is(open.code, 0, `a directory of its own at tinyx's default path is tightened to 0700: ${open.stderr}`);
  t.is((await lstat(join(tmp, 'tinyx-65534'))).mode & 0o777, 0o700);
});
