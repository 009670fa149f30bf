import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { mountsBelow, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { startCli, type CliResult } from '../helpers/cli.js';
import { sha256File } from '../helpers/image.js';

// These tests use a cache of their own, empty at the start, so that base and
// install really run (and really get interrupted). /var/tmp: an on-disk
// filesystem, as OverlayFS's upper directory wants.
const test = integrationTest({ tools: ['pgrep'] });
const cache = await mkdtemp('/var/tmp/tinyx-it-cache-');
const out = await mkdtemp('/var/tmp/tinyx-it-out-');
test.after.always(async () => {
  await removeTree(cache);
  await removeTree(out);
});

const env = { TINYX_CACHE: cache };

/** What an interrupted build must leave: no mount, no temporary tree, no process still working in the cache. */
async function assertCleanAfterInterrupt(t: import('ava').ExecutionContext, result: CliResult): Promise<void> {
  t.is(result.code, 130, `exit code; stderr:\n${result.stderr.slice(-3000)}`);
  t.regex(result.stderr, /cleaning up/);
  t.deepEqual(await mountsBelow(cache), [], 'no mount left in the cache');
  t.deepEqual(await readdir(join(cache, 'tmp')).catch(() => []), [], 'no temporary tree left');
  t.is(processesIn(cache), '', 'no process left working in the cache');
  t.deepEqual((await readdir(out)).filter((name) => name.startsWith('.')), [], 'no half-written image directory');
}

/** Processes whose command line names the directory (pgrep leaves itself out; exit 1 means none). */
function processesIn(dir: string): string {
  try {
    return execFileSync('pgrep', ['-af', '--', dir], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

async function waitForMount(below: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await mountsBelow(below)).length > 0) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

test.serial('Ctrl-C while debootstrap runs: its mounts go, the half-made base is not kept', async (t) => {
  const cli = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'a')], { env });
  await cli.waitForLine(/^\[base\] Bootstrap/, 60_000);
  // Wait for debootstrap's second stage, which mounts /proc in the target: the hardest moment to stop.
  t.true(await waitForMount(join(cache, 'tmp'), 240_000), 'debootstrap mounted /proc in the target');
  cli.child.kill('SIGINT');
  await assertCleanAfterInterrupt(t, await cli.done);
  t.deepEqual(await readdir(join(cache, 'bases')).catch(() => []), [], 'no base entry');
});

test.serial('two builds at once on the same (cold) cache both succeed, with the same bytes', async (t) => {
  const first = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'one')], { env });
  const second = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'two')], { env });
  const [one, two] = await Promise.all([first.done, second.done]);
  t.is(one.code, 0, one.stderr.slice(-3000));
  t.is(two.code, 0, two.stderr.slice(-3000));
  t.is(await sha256File(join(out, 'one', 'initrd.cpio.gz')), await sha256File(join(out, 'two', 'initrd.cpio.gz')));
  t.is((await readdir(join(cache, 'bases'))).length, 1, 'one base entry');
  t.is((await readdir(join(cache, 'layers'))).length, 1, 'one layer entry');
  t.deepEqual(await readdir(join(cache, 'tmp')), [], 'no temporary tree left');
  t.deepEqual(await mountsBelow(cache), []);
});

test.serial('SIGTERM while apt-get installs: the overlay and its binds are unmounted, no layer is kept', async (t) => {
  const cli = startCli(['build', 'redis', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'r')], { env });
  await cli.waitForLine(/^\[install\] Install/, 60_000);
  t.true(await waitForMount(join(cache, 'tmp'), 60_000), 'the install overlay was mounted');
  await new Promise((r) => setTimeout(r, 1500));
  cli.child.kill('SIGTERM');
  await assertCleanAfterInterrupt(t, await cli.done);
  t.is((await readdir(join(cache, 'layers'))).length, 1, 'only the nginx layer from before');
});

test.serial('Ctrl-C while resolving: the read-only root view is unmounted', async (t) => {
  const cli = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'c')], { env });
  await cli.waitForLine(/^\[resolve\] Resolve/, 120_000);
  cli.child.kill('SIGINT');
  await assertCleanAfterInterrupt(t, await cli.done);
});

/** Waits until a process whose command line names the directory matches `re` (strace under the trace, chroot under verify). */
async function waitForProcess(dir: string, re: RegExp, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (re.test(processesIn(dir))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test.serial('Ctrl-C while the trace runs the app: strace, the app and its namespaces end, its writable root is unmounted', async (t) => {
  const cli = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(out, 't')], { env });
  await cli.waitForLine(/^\[trace\] Trace/, 120_000);
  t.true(await waitForProcess(cache, /strace .*-o \S+\/tmp\/trace-/, 30_000), 'nginx ran under strace');
  cli.child.kill('SIGINT');
  await assertCleanAfterInterrupt(t, await cli.done);
});

test.serial("Ctrl-C while verify starts the image's /init: nothing of it is left running or written", async (t) => {
  const cli = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'v')], { env });
  await cli.waitForLine(/^\[verify\] Verify/, 120_000);
  t.true(await waitForProcess(cache, /(chroot|strace) .*\/tmp\/verify-/, 30_000), "the image's root was started");
  cli.child.kill('SIGINT');
  await assertCleanAfterInterrupt(t, await cli.done);
  t.false(await readdir(join(out, 'v')).then(() => true, () => false), 'no image written');
});

test.serial('Ctrl-C while packing (xz, preset 9e, seconds long): xz is stopped, no staging directory or half-written archive is left, no image written', async (t) => {
  const packed = await readdir(join(cache, 'packed')).catch(() => [] as string[]);
  const cli = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--compression', 'xz', '--out', join(out, 'p')], { env });
  await cli.waitForLine(/^\[pack\] /, 180_000);
  // Well into it: xz is compressing the archive in the staging directory beside --out.
  t.true(await waitForProcess(out, /xz .*--lzma2=preset=9e,/, 30_000), 'xz ran');
  cli.child.kill('SIGINT');
  await assertCleanAfterInterrupt(t, await cli.done);
  t.is(processesIn(out), '', 'no xz left');
  t.false(await readdir(join(out, 'p')).then(() => true, () => false), 'no image written');
  t.deepEqual(await readdir(join(cache, 'packed')).catch(() => [] as string[]), packed, 'no xz archive published');
});

test.serial('after all that, the next build succeeds from the same cache', async (t) => {
  const cli = startCli(['build', 'redis', '--format', 'initramfs', '--no-kernel', '--out', join(out, 'r')], { env });
  const result = await cli.done;
  t.is(result.code, 0, result.stderr.slice(-3000));
  t.regex(result.stderr, /\[base\] cache hit/);
  t.regex(result.stderr, /\[install\] done/);
  t.deepEqual(await mountsBelow(cache), []);
});
