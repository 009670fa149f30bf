import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { statfsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from '@tinyx/builder';
import { mountsBelow, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { sha256File } from '../helpers/image.js';

// Real faults, each injected for real: a full disk (tmpfs filled with
// fallocate), an unreachable mirror and one that answers garbage, SIGKILL
// in the middle of a build, damaged cache entries. Each case checks the
// named error (exit code, a `tinyx: error:` line, no stack), that nothing
// was lost (earlier cache entries and images) and nothing leaked (mounts,
// temporary trees), then that the same command succeeds once the fault is
// gone. The cache lives on a tmpfs of its own (1200 MiB of RAM, debootstrap
// included); the README's "Faults" table lists these cases.

const test = integrationTest({ kernel: true, tools: ['fallocate', 'mountpoint', 'mount', 'pgrep'] });
const work = await mkdtemp('/var/tmp/tinyx-it-faults-');
const disk = join(work, 'disk');
const small = join(work, 'small');
const cache = join(disk, 'cache');
const env = { TINYX_CACHE: cache };
const images = join(work, 'images');
await mkdir(disk);
await mkdir(small);
await mkdir(images);
execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1200m', 'tmpfs', disk]);
test.after.always(async () => {
  for (const dir of [disk, small]) execFileSync('sh', ['-c', `! mountpoint -q "$1" || umount "$1"`, 'sh', dir]);
  await removeTree(work);
});

/** Fills the filesystem of `dir` until `leaveMiB` remain (fallocate: no bytes are written). */
async function fill(dir: string, leaveMiB: number): Promise<void> {
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  execFileSync('fallocate', ['-l', String(free - leaveMiB * 1024 * 1024), join(dir, 'filler')]);
}

async function unfill(dir: string): Promise<void> {
  await rm(join(dir, 'filler'), { force: true });
}

function assertNamed(t: import('ava').ExecutionContext, result: CliResult, exit: number, pattern: RegExp): void {
  t.is(result.code, exit, result.stderr.slice(-3000));
  t.regex(result.stderr, /^tinyx: error: /m);
  t.notRegex(result.stderr, /^\s+at /m, 'no stack trace');
  t.notRegex(result.stderr, /looks like a bug/);
  t.regex(result.stderr, pattern);
}

/** Nothing leaked into the cache: no mount, no temporary tree. */
async function assertNothingLeaked(t: import('ava').ExecutionContext): Promise<void> {
  t.deepEqual(await mountsBelow(cache), [], 'no mount left in the cache');
  t.deepEqual(await readdir(join(cache, 'tmp')).catch(() => []), [], 'no temporary tree left');
}

const entries = async (kind: string): Promise<string[]> => (await readdir(join(cache, kind)).catch(() => [] as string[])).sort();

test.serial('disk full while debootstrap runs: E_NO_SPACE naming the base step and the cache, nothing left; then it builds', async (t) => {
  await fill(disk, 120);
  const full = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(images, 'nginx')], { env });
  assertNamed(t, full, 3, /no space left on the device during the base step: the cache \(.*\/cache\) has .* free/);
  t.regex(full.stderr, /hint: free space there, or move it to a larger filesystem \(TINYX_CACHE/);
  await assertNothingLeaked(t);
  t.deepEqual(await entries('bases'), [], 'no half-made base kept');

  await unfill(disk);
  const ok = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(images, 'nginx')], { env });
  t.is(ok.code, 0, ok.stderr.slice(-3000));
  await assertNothingLeaked(t);
});

test.serial('disk full while apt-get installs: E_NO_SPACE naming the install step; the base entry is kept intact; then it builds', async (t) => {
  const bases = await entries('bases');
  await fill(disk, 4);
  const full = await runCli(['build', 'redis', '--format', 'initramfs', '--no-kernel', '--out', join(images, 'redis')], { env });
  assertNamed(t, full, 3, /no space left on the device during the install step/);
  await assertNothingLeaked(t);
  t.is((await entries('layers')).length, 1, "only nginx's layer");

  await unfill(disk);
  const ok = await runCli(['build', 'redis', '--format', 'initramfs', '--no-kernel', '--out', join(images, 'redis')], { env });
  t.is(ok.code, 0, ok.stderr.slice(-3000));
  t.regex(ok.stderr, /\[base\] cache hit/, 'the base from before is used, not rebuilt');
  t.deepEqual(await entries('bases'), bases);
});

test.serial('disk full while packing over an earlier image: E_NO_SPACE naming the pack step; the earlier image is kept byte for byte; then it builds', async (t) => {
  // Room for one build (the 11.3 MiB raw archive and the 5 MiB initrd made from it), not for a second one beside its result.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=18m', 'tmpfs', small]);
  const out = join(small, 'nginx');
  const first = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  t.is(first.code, 0, first.stderr.slice(-2000));
  const before = await sha256File(join(out, 'initrd.cpio.gz'));
  const full = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  assertNamed(t, full, 3, /no space left on the device during the pack step: the output's directory \(.*small\) has/);
  t.is(await sha256File(join(out, 'initrd.cpio.gz')), before, 'the earlier image is untouched');
  t.deepEqual(await readdir(small), ['nginx'], 'no staging directory left');
  await assertNothingLeaked(t);

  execFileSync('mount', ['-o', 'remount,size=64m', small]);
  const ok = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  t.is(ok.code, 0, ok.stderr.slice(-3000));
  t.is(await sha256File(join(out, 'initrd.cpio.gz')), before, 'the same bytes');
  t.deepEqual(await readdir(small), ['nginx']);
});

/** Processes whose command line names the directory (pgrep leaves itself out; exit 1 means none). */
function processesIn(dir: string): string {
  try {
    return execFileSync('pgrep', ['-af', '--', dir], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

test.serial('disk full while the kernel compiles: E_NO_SPACE naming the kernel step, the cache and make; no make left, no build tree, no kernel entry', async (t) => {
  // The kernel tree of the shared cache (extracted there once), used in place: the objects, ccache's
  // and the build tree go to this cache, on the tmpfs, which fills up within the first files.
  const tree = (JSON.parse((await runCli(['kernel', 'config', 'nginx', '--json'])).stdout) as { sourceDir: string }).sourceDir;
  await fill(disk, 24);
  const full = startCli(['kernel', 'build', 'nginx', '--format', 'initramfs', '--kernel-source', tree], { env });
  const result = await full.done;
  assertNamed(t, result, 3, /no space left on the device during the kernel step: the cache \(.*\/cache\) has .* free \(make failed/);
  t.is(processesIn(tree), '', 'no make or compiler left');
  await assertNothingLeaked(t);
  t.deepEqual(await entries('kernels'), [], 'no kernel entry');
  await unfill(disk);
  // Once the fault is gone the same command compiles the whole kernel (7 minutes here): kernel.test.ts builds it.
});

test.serial("disk full while the kernel step copies the kernel into --out's directory, then while emit writes the manifest: E_NO_SPACE naming each step and the output's directory; the earlier image kept byte for byte", async (t) => {
  // The shared cache: nginx's kernel is the one kernel.test.ts builds (built here when this runs first).
  const place = join(work, 'small-out');
  await mkdir(place);
  // 8 MiB: the initrd would fit, the 11 MiB vmlinux does not.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', place]);
  t.teardown(() => execFileSync('sh', ['-c', `! mountpoint -q "$1" || umount "$1"`, 'sh', place]));
  const out = join(place, 'nginx');
  const copying = await runCli(['build', 'nginx', '--format', 'initramfs', '--out', out]);
  assertNamed(t, copying, 3, /no space left on the device during the kernel step: the output's directory \(.*small-out\) has/);
  t.deepEqual(await readdir(place), [], 'no staging directory left');

  execFileSync('mount', ['-o', 'remount,size=64m', place]);
  const first = await build({ recipe: 'nginx', outDir: out, format: 'initramfs' });
  const before = Object.fromEntries(await Promise.all((await readdir(out)).map(async (name) => [name, await sha256File(join(out, name))] as const)));
  // Emit starts with every other file of the new image in its staging directory: the disk fills up then.
  const error = await build({
    recipe: 'nginx',
    outDir: out,
    format: 'initramfs',
    onEvent: (event) => {
      if (event.type === 'step-start' && event.step === 'emit') execFileSync('fallocate', ['-l', String(statfsSync(place).bavail * statfsSync(place).bsize), join(place, 'filler')]);
    },
  }).then(
    () => undefined,
    (e: unknown) => e as Error & { code?: string },
  );
  t.is(error?.code, 'E_NO_SPACE', String(error));
  t.regex(error?.message ?? '', /no space left on the device during the emit step: the output's directory \(.*small-out\) has/);
  const after = Object.fromEntries(await Promise.all((await readdir(out)).map(async (name) => [name, await sha256File(join(out, name))] as const)));
  t.deepEqual(after, before, 'the earlier image is untouched');
  t.deepEqual((await readdir(place)).sort(), ['filler', 'nginx'], 'no staging directory left');

  await rm(join(place, 'filler'));
  const again = await runCli(['build', 'nginx', '--format', 'initramfs', '--out', out]);
  t.is(again.code, 0, again.stderr.slice(-3000));
  t.is(await sha256File(join(out, 'initrd.cpio.gz')), before['initrd.cpio.gz']!, 'the same bytes');
  t.is(first.artifacts.rootfs, 'initrd.cpio.gz');
});

test.serial('a mirror that does not answer, and one that answers garbage: the command, the mirror and the hint; nothing kept', async (t) => {
  const own = { TINYX_CACHE: join(work, 'mirror-cache') };
  const closed = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(images, 'm'), '--mirror', 'http://127.0.0.1:9/debian'], { env: own });
  assertNamed(t, closed, 1, /debootstrap .* exited with status 1/);
  t.regex(closed.stderr, /Failed getting release file http:\/\/127\.0\.0\.1:9\/debian/);
  t.regex(closed.stderr, /hint: check that http:\/\/127\.0\.0\.1:9\/debian serves bookworm/);

  const server = createServer((_request, response) => response.end('this is not a Debian archive\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as { port: number };
  const garbage = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', join(images, 'm'), '--mirror', `http://127.0.0.1:${port}/debian`], { env: own });
  assertNamed(t, garbage, 1, /debootstrap .* exited with status 1/);
  t.regex(garbage.stderr, new RegExp(`hint: check that http://127\\.0\\.0\\.1:${port}/debian serves`));
  t.deepEqual(await mountsBelow(own.TINYX_CACHE), []);
  t.deepEqual(await readdir(join(own.TINYX_CACHE, 'tmp')).catch(() => []), []);
  t.deepEqual(await readdir(join(own.TINYX_CACHE, 'bases')).catch(() => []), []);
  t.deepEqual(await readdir(images).then((names) => names.filter((n) => n.startsWith('.m') || n === 'm')), [], 'no image directory');
});

test.serial('SIGKILL in the middle of a build: nothing half-written is served; the next build sweeps the mount and tree it left and gives the same bytes', async (t) => {
  const out = join(images, 'nginx');
  const before = await sha256File(join(out, 'initrd.cpio.gz'));
  const cli = startCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  await cli.waitForLine(/^\[resolve\] Resolve/, 60_000);
  const deadline = Date.now() + 30_000;
  while ((await mountsBelow(join(cache, 'tmp'))).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  cli.child.kill('SIGKILL');
  await cli.done;
  t.not((await mountsBelow(join(cache, 'tmp'))).length, 0, 'the killed build left its read-only root mounted (no cleanup can run on SIGKILL)');

  const next = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  t.is(next.code, 0, next.stderr.slice(-3000));
  t.regex(next.stderr, /cache: removed tmp\/root-\d+-[0-9a-f]+, left by a build that no longer runs/);
  t.is(await sha256File(join(out, 'initrd.cpio.gz')), before);
  await assertNothingLeaked(t);
});

test.serial('a damaged cache entry (a truncated compressed archive, a file gone from a layer) is detected, removed and rebuilt, never shipped', async (t) => {
  const out = join(images, 'nginx');
  const good = await sha256File(join(out, 'initrd.cpio.gz'));
  // The packed entry whose archive is this image's initrd.
  let packed: string | undefined;
  for (const name of await entries('packed')) if ((await sha256File(join(cache, 'packed', name, 'archive'))) === good) packed = name;
  t.truthy(packed, "the initrd's compressed archive is in the cache");
  await truncate(join(cache, 'packed', packed!, 'archive'), 1000);
  const repacked = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  t.is(repacked.code, 0, repacked.stderr.slice(-3000));
  t.regex(repacked.stderr, new RegExp(`cache: packed/${packed} was damaged \\(archive is not what was published \\(sha256 differs\\)\\); removed, building it again`));
  t.is(await sha256File(join(out, 'initrd.cpio.gz')), good, 'the image has the right bytes');

  let layer: string | undefined;
  for (const name of await entries('layers')) {
    const meta = JSON.parse(await readFile(join(cache, 'layers', name, 'meta.json'), 'utf8')) as { packages: string[] };
    if (meta.packages.join(' ') === 'nginx') layer = name;
  }
  await rm(join(cache, 'layers', layer!, 'upper/usr/sbin/nginx'));
  const reinstalled = await runCli(['build', 'nginx', '--format', 'initramfs', '--no-kernel', '--out', out], { env });
  t.is(reinstalled.code, 0, reinstalled.stderr.slice(-3000));
  t.regex(reinstalled.stderr, new RegExp(`cache: layers/${layer} was damaged \\(\\d+ entries were published, \\d+ are there\\)`));
  t.regex(reinstalled.stderr, /\[install\] done/, 'installed again, not a cache hit');
  t.is(await sha256File(join(out, 'initrd.cpio.gz')), good);
  await assertNothingLeaked(t);
});
