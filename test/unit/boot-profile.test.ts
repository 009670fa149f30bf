import test from 'ava';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SystemMap, checkTimelineFile, profileBoot, timelineSvg, writeTimeline, type StampedLine } from '@tinyx/toolstack';

// A real profiled boot of the nginx image under TCG (see test/fixtures/boot/README.md).
const fixture = (name: string): Promise<string> => readFile(fileURLToPath(new URL(`../../fixtures/boot/${name}`, import.meta.url)), 'utf8');
const recorded = async (): Promise<{ readyMs: number; lines: StampedLine[] }> => JSON.parse(await fixture('nginx-microvm-tcg.console.json')) as { readyMs: number; lines: StampedLine[] };

test('System.map: a function by its address, inside it with +0xOFFSET, nothing below the first symbol; data symbols are not functions', (t) => {
  const map = SystemMap.parse(['ffffffff81000000 T _text', 'ffffffff81000100 t inet_init', 'ffffffff81000200 D some_table', 'ffffffff81000300 W weak_fn', 'garbage line'].join('\n'));
  t.is(map.size, 3);
  t.is(map.name(0xffffffff81000100n), 'inet_init');
  t.is(map.name(0xffffffff81000142n), 'inet_init+0x42');
  t.is(map.name(0xffffffff81000204n), 'inet_init+0x104', 'the data symbol is skipped');
  t.is(map.name(0xffffffff81000300n), 'weak_fn');
  t.is(map.name(0xffffffff80ffffffn), undefined);
});

test("a recorded boot: the phases follow each other from the VMM's start to the probe's answer", async (t) => {
  const { readyMs, lines } = await recorded();
  const profile = profileBoot(lines, readyMs, SystemMap.parse(await fixture('nginx-microvm-tcg.System.map')));
  t.deepEqual(
    profile.phases.map((p) => p.id),
    ['vmm', 'kernel-setup', 'initcalls', 'root', 'kernel-finish', 'init', 'app', 'probe'],
  );
  let at = 0;
  for (const phase of profile.phases) {
    t.true(Math.abs(phase.startMs - at) < 0.02, `${phase.id} starts where the one before ends`);
    t.true(phase.ms >= 0);
    at = phase.startMs + phase.ms;
  }
  t.true(Math.abs(at - readyMs) < 0.05, 'the last phase ends at the ready time');
  // The kernel's clock zero: no line reached the host before the guest printed it, and one did within the 2 ms poll.
  const kernelLines = lines.flatMap((l) => {
    const m = /^\[\s*(\d+\.\d{6})\]/.exec(l.text);
    return m ? [{ t: Number(m[1]) * 1000, atMs: l.atMs }] : [];
  });
  t.true(kernelLines.every((l) => profile.kernelZeroMs! + l.t <= l.atMs + 0.01), 'every line was seen after it was printed');
  t.true(kernelLines.some((l) => l.atMs - (profile.kernelZeroMs! + l.t) < 0.01), 'the offset is the smallest difference');
  const init = lines.find((l) => l.text.startsWith('tinyx: starting'))!;
  t.is(profile.phases.find((p) => p.id === 'app')!.startMs, Math.round(init.atMs * 100) / 100, "the app's phase starts when /init's line was seen");
});

test('a recorded boot: every initcall named through System.map, with its probes; the ten most expensive steps, largest first', async (t) => {
  const { readyMs, lines } = await recorded();
  const profile = profileBoot(lines, readyMs, SystemMap.parse(await fixture('nginx-microvm-tcg.System.map')));
  t.is(profile.initcalls.length, lines.filter((l) => / calling {2}0x/.test(l.text)).length, 'one per calling line');
  t.is(profile.unnamed, 0);
  t.false(profile.initcalls.some((c) => c.name.startsWith('0x')));
  t.true(profile.initcalls.some((c) => c.name === 'init_user_reserve+0x2'), 'an address inside a function is named with its offset');
  const blk = profile.initcalls.find((c) => c.name === 'virtio_blk_init');
  t.truthy(blk);
  t.regex(blk!.detail ?? '', /^probes: virtio0 \d+\.\d ms$/, "the virtio disk's probe belongs to the driver's initcall");
  t.true(blk!.ms > 10, 'reading the disk takes time under TCG');
  t.is(profile.top.length, 10);
  for (let i = 1; i < profile.top.length; i++) t.true(profile.top[i - 1]!.ms >= profile.top[i]!.ms);
  const smallestTop = profile.top[9]!.ms;
  t.false(profile.initcalls.some((c) => c.ms > smallestTop && !profile.top.includes(c)), 'no initcall costlier than the tenth step was left out');
  // The silence between the root's mount and the freeing of init memory is the largest in the kernel (TCG's cost of poisoning pages that held code).
  t.true(profile.top.some((s) => s.kind === 'gap' && s.name.includes('VFS: Mounted root') && s.name.includes('Freeing unused kernel image')));
  const gapsAfterInit = profile.top.filter((s) => s.kind === 'gap' && s.name.includes('clocksource: tsc:'));
  t.deepEqual(gapsAfterInit, [], "kernel lines after /init are not the kernel's silences");
  t.true(profile.lineCostMs > 0 && profile.lineCostMs < 1, `a line costs ${profile.lineCostMs} ms`);
});

test('without System.map the initcalls keep their addresses and are counted; a KALLSYMS kernel names them itself', async (t) => {
  const { readyMs, lines } = await recorded();
  const bare = profileBoot(lines, readyMs);
  t.is(bare.unnamed, bare.initcalls.length);
  t.regex(bare.initcalls[0]!.name, /^0xffffffff8[0-9a-f]{7}$/);
  const kallsyms: StampedLine[] = [
    { text: '[    0.100000] calling  inet_init+0x0/0x2a0 @ 1', atMs: 150 },
    { text: '[    0.109000] initcall inet_init+0x0/0x2a0 returned 0 after 9000 usecs', atMs: 159.5 },
  ];
  const named = profileBoot(kallsyms, 400);
  t.is(named.initcalls[0]!.name, 'inet_init');
  t.is(named.unnamed, 0);
  t.is(named.kernelZeroMs, 50);
});

test('a console without kernel timestamps still gives the phases it can see', (t) => {
  const profile = profileBoot(
    [
      { text: 'tinyx: starting /usr/sbin/nginx', atMs: 600 },
      { text: 'tinyx: ready (listening on 80) at 0.90 s of guest uptime', atMs: 950 },
    ],
    1000,
  );
  t.is(profile.kernelZeroMs, null);
  t.deepEqual(
    profile.phases.map((p) => [p.id, p.startMs, p.ms]),
    [
      ['init', 0, 600],
      ['app', 600, 350],
      ['probe', 950, 50],
    ],
    "what comes before /init's line is one phase",
  );
});

test('the timeline picture: an SVG with a bar per phase and per initcall, and the names escaped', async (t) => {
  const { readyMs, lines } = await recorded();
  const profile = profileBoot(lines, readyMs, SystemMap.parse(await fixture('nginx-microvm-tcg.System.map')));
  const svg = timelineSvg(profile, 'nginx <microvm> & tcg');
  t.regex(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
  t.true(svg.trimEnd().endsWith('</svg>'));
  t.true(svg.includes('nginx &lt;microvm&gt; &amp; tcg'));
  t.is((svg.match(/fill="#4d9221"/g) ?? []).length, profile.initcalls.length, 'one tick per initcall');
  for (const phase of profile.phases) t.true(svg.includes(`${phase.title}: ${phase.ms} ms`), phase.id);
  // Text is escaped: no raw < inside an element's text.
  t.false(/>[^<]*<(?![/a-z])/.test(svg));
});

test("--profile-svg's file: written where nothing is, replaced when tinyx drew it, refused when it is the user's file or a directory (left as it was)", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-svg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { readyMs, lines } = await recorded();
  const svg = timelineSvg(profileBoot(lines, readyMs), 'nginx');
  const file = join(dir, 'boot.svg');
  await writeTimeline(file, svg);
  t.is(await readFile(file, 'utf8'), svg);
  await writeTimeline(file, `${svg}<!-- again -->\n`);
  t.true((await readFile(file, 'utf8')).endsWith('<!-- again -->\n'), 'a timeline tinyx drew is replaced');
  const mine = join(dir, 'mine.svg');
  await writeFile(mine, '<svg xmlns="http://www.w3.org/2000/svg"><circle r="1"/></svg>\n');
  for (const path of [mine, dir]) {
    const error = await t.throwsAsync(checkTimelineFile(path));
    t.is((error as { code?: string }).code, 'E_OUTPUT_NOT_OURS');
    t.is((error as { kind?: string }).kind, 'user');
    t.true(error!.message.includes(path));
  }
  await t.throwsAsync(writeTimeline(mine, svg), { message: /a file tinyx did not write/ });
  t.is(await readFile(mine, 'utf8'), '<svg xmlns="http://www.w3.org/2000/svg"><circle r="1"/></svg>\n', "the user's file is untouched");
  await mkdir(join(dir, 'sub'));
  t.deepEqual((await readdir(dir)).sort(), ['boot.svg', 'mine.svg', 'sub'], 'no temporary file left');
});
