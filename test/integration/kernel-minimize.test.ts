import { copyFile, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipeFile, setRecipeKernelDisable } from '@tinyx/builder';
import { parseKconfig, removeTree } from '@tinyx/builder/internals';
import { integrationTest } from '../helpers/capabilities.js';
import { REPO_ROOT, runCli } from '../helpers/cli.js';

// tinyx kernel minimize on nginx, with three candidates so that it fits CI:
// every trial a real kernel build (in the kept tree), a real boot under QEMU
// and the real readiness probe (HTTP).
const test = integrationTest({ kernel: true, tools: ['qemu-system-x86_64'] });
const work = await mkdtemp(join(tmpdir(), 'tinyx-it-minimize-'));
test.after.always(() => removeTree(work));

interface Report {
  ok: boolean;
  removed: string[];
  needed: { symbol: string; reason: string }[];
  stuckOn: string[];
  steps: { chunk: string[]; outcome: { ok: boolean; bzImageBytes?: number; readyMs?: number; reason?: string } }[];
  baseline: { bzImageBytes: number; vmlinuxBytes: number; readyMs: number };
  final: { bzImageBytes: number; vmlinuxBytes: number };
  replayed: number;
  readyMs: { baseline: number; minimized: number; boots: number } | null;
  disable: string[];
  written: string | null;
}

test.serial("minimize nginx's kernel over INET, NET_VENDOR_ASIX, UNIX98_PTYS: INET is needed (nginx never answers without it), the other two go; the same command again replays its record and writes kernel.disable into the recipe, comments kept", async (t) => {
  // nginx's own recipe as it was before its minimization (its kernel.disable emptied), as a file of the user's: --write edits it.
  const recipe = join(work, 'nginx.yaml');
  await copyFile(join(REPO_ROOT, 'recipes', 'nginx.yaml'), recipe);
  await setRecipeKernelDisable(recipe, []);
  const before = await readFile(recipe, 'utf8');
  const args = ['kernel', 'minimize', recipe, '--format', 'initramfs', '--only', 'INET,NET_VENDOR_ASIX,UNIX98_PTYS', '--timeout', '20', '--json'];

  const first = await runCli([...args, '--boots', '1']);
  t.is(first.code, 0, first.stderr.slice(-3000));
  const report = JSON.parse(first.stdout) as Report;
  t.deepEqual(report.removed, ['NET_VENDOR_ASIX', 'UNIX98_PTYS']);
  t.deepEqual(report.needed.map((n) => n.symbol), ['INET']);
  t.regex(report.needed[0]!.reason, /^the boot: /, 'it built and booted; the probe never answered');
  // All three off fails; then INET with NET_VENDOR_ASIX; INET alone; then each of the others on top of what passed.
  t.deepEqual(report.steps.map((s) => [s.chunk.join(' '), s.outcome.ok]), [
    ['INET NET_VENDOR_ASIX UNIX98_PTYS', false],
    ['INET NET_VENDOR_ASIX', false],
    ['INET', false],
    ['NET_VENDOR_ASIX', true],
    ['UNIX98_PTYS', true],
  ]);
  t.true(report.final.vmlinuxBytes < report.baseline.vmlinuxBytes, `vmlinux ${report.baseline.vmlinuxBytes} -> ${report.final.vmlinuxBytes} B`);
  t.true(report.final.bzImageBytes <= report.baseline.bzImageBytes);
  t.true(report.baseline.readyMs > 0);
  t.is(report.readyMs?.boots, 1);
  t.true(report.readyMs!.minimized > 0);
  t.deepEqual(report.disable, ['NET_VENDOR_ASIX', 'UNIX98_PTYS']);
  t.is(report.written, null, 'without --write the recipe is not touched');
  t.is(await readFile(recipe, 'utf8'), before);

  // Again, as after a Ctrl-C: every trial from the record, nothing built or booted for them.
  const again = await runCli([...args, '--boots', '0', '--write']);
  t.is(again.code, 0, again.stderr.slice(-3000));
  const replay = JSON.parse(again.stdout) as Report;
  t.is(replay.replayed, 5);
  t.deepEqual(replay.removed, report.removed);
  t.is(replay.readyMs, null, '--boots 0');
  t.is(replay.written, recipe);
  const text = await readFile(recipe, 'utf8');
  t.regex(text, /^# The LightVM paper's reference image/m, "the recipe's comments are kept");
  t.regex(text, /^packages: \[nginx\]$/m, 'and its other lines as they were');
  t.regex(text, /^  disable: \[NET_VENDOR_ASIX, UNIX98_PTYS\]$/m);
  t.deepEqual((await loadRecipeFile(recipe)).kernel.disable, ['NET_VENDOR_ASIX', 'UNIX98_PTYS']);
  t.is(text, before.replace(/^(  features: .*\n)/m, '$1  disable: [NET_VENDOR_ASIX, UNIX98_PTYS]\n'), 'only that line is new');

  // The next build of that recipe has them off, and INET on.
  const config = await runCli(['kernel', 'config', recipe, '--format', 'initramfs', '--json']);
  t.is(config.code, 0, config.stderr);
  const final = parseKconfig((JSON.parse(config.stdout) as { config: string }).config);
  t.is(final.get('UNIX98_PTYS'), 'n');
  t.is(final.get('NET_VENDOR_ASIX'), 'n');
  t.is(final.get('INET'), 'y');
});

test.serial("minimize refuses what it cannot try: an option of the platform's contract names its fragment; a Xen platform; exit 2", async (t) => {
  const contract = await runCli(['kernel', 'minimize', 'nginx', '--format', 'initramfs', '--only', 'VIRTIO_NET']);
  t.is(contract.code, 2, contract.stderr);
  t.regex(contract.stderr, /--only VIRTIO_NET: not a candidate \(platforms\/kvm\.net\.config: kept by every kvm kernel\)/);
  t.regex(contract.stderr, /--list shows the candidates/);
  const xen = await runCli(['kernel', 'minimize', 'nginx', '--platform', 'xen-pvh']);
  t.is(xen.code, 2, xen.stderr);
  t.regex(xen.stderr, /--platform xen-pvh is not supported/);
  const list = await runCli(['kernel', 'minimize', 'nginx', '--format', 'initramfs', '--list', '--json']);
  t.is(list.code, 0, list.stderr);
  const listed = JSON.parse(list.stdout) as { candidates: string[]; protected: { symbol: string; why: string }[] };
  t.true(listed.candidates.includes('INET'));
  // recipes/nginx.yaml carries its minimization: what its kernel.disable leaves out is off already, so not a candidate.
  const disabled = (await loadRecipeFile(join(REPO_ROOT, 'recipes', 'nginx.yaml'))).kernel.disable;
  t.true(disabled.includes('UNIX98_PTYS'));
  for (const off of disabled) t.false(listed.candidates.includes(off), off);
  const again = await runCli(['kernel', 'minimize', 'nginx', '--format', 'initramfs', '--only', 'UNIX98_PTYS']);
  t.is(again.code, 2, again.stderr);
  t.regex(again.stderr, /--only UNIX98_PTYS: not a candidate \(the recipe's kernel\.disable already leaves it out\)/);
  // Switched off, it would let the crypto self-tests in: a chunk that shrinks overall could hide that. (The erofs kernel has the crypto API, for erofs's decompression.)
  const erofs = JSON.parse((await runCli(['kernel', 'minimize', 'nginx', '--list', '--json'])).stdout) as { candidates: string[]; protected: { symbol: string; why: string }[] };
  t.false(erofs.candidates.includes('CRYPTO_MANAGER_DISABLE_TESTS'));
  t.regex(erofs.protected.find((p) => p.symbol === 'CRYPTO_MANAGER_DISABLE_TESTS')?.why ?? '', /^other options depend on it being off \(!CRYPTO_MANAGER_DISABLE_TESTS\)/);
  for (const kept of ['VIRTIO_NET', 'EPOLL', 'PRINTK', 'BLK_DEV_INITRD']) t.true(listed.protected.some((p) => p.symbol === kept), `${kept} is kept by contract`);
  // An initramfs kernel has no disk, but the recipe's kernel.disable also goes to its erofs builds, whose disk drivers need the block devices.
  t.regex(listed.protected.find((p) => p.symbol === 'BLK_DEV')?.why ?? '', /^\w+ depends on it, and platforms\/[\w-]+\.block\.config asks for \w+$/);
  t.false(listed.candidates.some((s) => s.startsWith('NET_VENDOR_INTEL') || s === 'GENERIC_CPU'), 'no menu gate, no choice member');
});
