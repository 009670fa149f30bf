import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBuild, holds, kconfigSymbols, loadRecipeFile, minimizeCandidates, minimizeOptions, parseKconfig, setRecipeKernelDisable, type TrialOutcome } from '@tinyx/builder';

/** A stand-in for build + boot + probe: passes while none of `needed` is off; bytes shrink by 1000 per option off. */
function fakeTrials(needed: readonly string[], stuck: readonly string[] = []) {
  const asked: string[][] = [];
  const trial = async (off: readonly string[]): Promise<TrialOutcome> => {
    asked.push([...off]);
    const broken = off.find((s) => needed.includes(s));
    return broken ? { ok: false, reason: `without ${broken} the probe fails` } : { ok: true, bzImageBytes: 100_000 - 1000 * off.length, readyMs: 1000, stuckOn: off.filter((s) => stuck.includes(s)) };
  };
  return { trial, asked };
}

const baseline: TrialOutcome = { ok: true, bzImageBytes: 100_000, readyMs: 1000 };

test('minimize: everything off at once when the app needs none of it: one trial', async (t) => {
  const { trial, asked } = fakeTrials([]);
  const result = await minimizeOptions(['A', 'B', 'C', 'D'], baseline, trial);
  t.deepEqual(result.removed, ['A', 'B', 'C', 'D']);
  t.deepEqual(asked, [['A', 'B', 'C', 'D']]);
  t.deepEqual(result.needed, []);
  t.is(result.final.bzImageBytes, 96_000);
});

test('minimize: a failing set is halved, each half tried on top of what already went; a single failing option is needed, with its reason', async (t) => {
  const { trial, asked } = fakeTrials(['C', 'F']);
  const candidates = ['A', 'B', 'C', 'D', 'E', 'F', 'G'];
  const steps: string[] = [];
  const result = await minimizeOptions(candidates, baseline, trial, (step, progress) => steps.push(`${step.chunk.join('')}:${step.outcome.ok ? 'ok' : 'fail'}:${progress.off}/${progress.needed}/${progress.pending}`));
  t.deepEqual(result.removed, ['A', 'B', 'D', 'E', 'G']);
  t.deepEqual(result.needed, [
    { symbol: 'C', reason: 'without C the probe fails' },
    { symbol: 'F', reason: 'without F the probe fails' },
  ]);
  // Each trial's set is what passed so far plus the chunk, in the candidates' order.
  const sets = asked.map((off) => off.join(''));
  // No set twice: after AB passed, C and D on top of it is ABCD, which failed; so is ABDEF for F after E passed.
  t.deepEqual(sets, ['ABCDEFG', 'ABCD', 'AB', 'ABC', 'ABD', 'ABDEFG', 'ABDEF', 'ABDE', 'ABDEG']);
  t.deepEqual(steps, ['ABCDEFG:fail:0/0/7', 'ABCD:fail:0/0/7', 'AB:ok:2/0/5', 'C:fail:2/1/4', 'D:ok:3/1/3', 'EFG:fail:3/1/3', 'EF:fail:3/1/3', 'E:ok:4/1/2', 'G:ok:5/2/0']);
  t.is(result.final.bzImageBytes, 95_000, 'the last passing trial');
});

test('minimize: the same outcomes give the same choices (a resumed run replays its record); a failing baseline is refused', async (t) => {
  const first = fakeTrials(['B']);
  const a = await minimizeOptions(['A', 'B', 'C'], baseline, first.trial);
  const record = new Map<string, TrialOutcome>();
  const recorded = fakeTrials(['B']);
  await minimizeOptions(['A', 'B', 'C'], baseline, async (off) => {
    const outcome = await recorded.trial(off);
    record.set(off.join(','), outcome);
    return outcome;
  });
  let fresh = 0;
  const replay = await minimizeOptions(['A', 'B', 'C'], baseline, async (off) => {
    const known = record.get(off.join(','));
    if (known) return known;
    fresh++;
    return { ok: false };
  });
  t.is(fresh, 0, 'every trial answered from the record');
  t.deepEqual(replay, a);
  await t.throwsAsync(minimizeOptions(['A'], { ok: false }, first.trial), { message: 'the baseline must pass' });
});

test('minimize: an option asked off that something kept selects is reported as staying on, not as removed', async (t) => {
  const { trial } = fakeTrials([], ['B']);
  const result = await minimizeOptions(['A', 'B', 'C'], baseline, trial);
  t.deepEqual(result.removed, ['A', 'C']);
  t.deepEqual(result.stuckOn, ['B']);
});

test("candidates: on beyond tinyconfig, settable (a prompt whose conditions hold, nothing that stays selects it), not a menu gate or a choice member, not the platform's contract; in the .config's order", (t) => {
  const kconfig = new Map([
    [
      'net/Kconfig',
      [
        'menuconfig NET',
        '\tbool "Networking support"',
        'if NET',
        'config INET',
        '\tbool "TCP/IP networking"',
        '\thelp',
        '\t  Say Y. The kernel does not directly affect anything here.',
        'config TCP_CONG_ADVANCED',
        '\tbool "TCP: advanced congestion control"',
        'if TCP_CONG_ADVANCED',
        'config TCP_CONG_CUBIC',
        '\ttristate "CUBIC TCP"',
        '\tdefault y',
        'endif',
        'endif',
        'config HAVE_NET_THING',
        '\tbool',
        '\tdefault y',
        'config NET_VENDOR_X',
        '\tbool "X devices"',
        '\tdefault y',
        '\thelp',
        '\t  Note that the answer to this question does not directly affect',
        '\t  the kernel: saying N will just cause the configurator to skip',
        'choice',
        '\tprompt "Processor family"',
        'config GENERIC_CPU',
        '\tbool "Generic x86-64"',
        'endchoice',
        'config VIRTIO_NET',
        '\ttristate "Virtio network driver"',
        '\tselect NET_FAILOVER',
        'config NET_FAILOVER',
        '\ttristate "Failover driver"',
        '\tselect FAILOVER',
        'config FAILOVER',
        '\ttristate "Generic failover module"',
        'config WLAN',
        '\tbool "Wireless LAN"',
        '\tselect WIRELESS',
        'config WIRELESS',
        '\tbool "Wireless"',
        'config ZONE_DMA32',
        '\tbool "Support DMA32 zone" if ARCH_HAS_ZONE_DMA_SET && !X86_32',
        'config PRINTK',
        '\tprompt "printk"',
        '\tdefault y',
        'config CRYPTO_MANAGER_DISABLE_TESTS',
        '\tbool "Disable run-time self tests"',
        '\tdefault y',
        'config CRYPTO_MANAGER_EXTRA_TESTS',
        '\tbool "Enable extra run-time crypto self tests"',
        '\tdepends on DEBUG_KERNEL && !CRYPTO_MANAGER_DISABLE_TESTS && CRYPTO_MANAGER',
        '\thelp',
        '\t  Prose that says !NOT_A_CONDITION is not read.',
      ].join('\n'),
    ],
  ]);
  const symbols = kconfigSymbols(kconfig);
  t.deepEqual(symbols.promptIf.get('TCP_CONG_CUBIC'), [['NET', 'TCP_CONG_ADVANCED']], 'the if blocks around a prompt are its conditions');
  t.deepEqual(symbols.promptIf.get('ZONE_DMA32'), [['ARCH_HAS_ZONE_DMA_SET && !X86_32']]);
  t.deepEqual(symbols.promptIf.get('NET'), [[]]);
  t.false(symbols.prompted.has('HAVE_NET_THING'));
  t.deepEqual(symbols.selectedBy.get('FAILOVER'), [{ by: 'NET_FAILOVER', condition: undefined }]);
  t.deepEqual([...symbols.gates], ['NET_VENDOR_X'], "only the gate's help counts, not prose that happens to say 'directly affect'");
  t.deepEqual([...symbols.choices], ['GENERIC_CPU']);
  t.deepEqual([...symbols.negated].sort(), ['CRYPTO_MANAGER_DISABLE_TESTS', 'X86_32'], 'the symbols conditions name negated, not help text');
  const app = parseKconfig(
    ['PRINTK', 'NET', 'INET', 'TCP_CONG_CUBIC', 'HAVE_NET_THING', 'NET_VENDOR_X', 'GENERIC_CPU', 'VIRTIO_NET', 'NET_FAILOVER', 'FAILOVER', 'WLAN', 'WIRELESS', 'ZONE_DMA32', 'ARCH_HAS_ZONE_DMA_SET', 'CRYPTO_MANAGER_DISABLE_TESTS'].map((s) => `CONFIG_${s}=y`).join('\n') + '\n# CONFIG_TCP_CONG_ADVANCED is not set\n',
  );
  const tiny = parseKconfig('CONFIG_PRINTK=y\n');
  const result = minimizeCandidates(app, tiny, symbols, new Map([['VIRTIO_NET', 'platforms/kvm.net.config']]));
  // TCP_CONG_CUBIC: its prompt is inside `if TCP_CONG_ADVANCED`, which is off. NET_FAILOVER and FAILOVER: VIRTIO_NET stays and selects the one, which selects the other.
  // WIRELESS: WLAN selects it, but WLAN may go too. ZONE_DMA32: its prompt's condition holds.
  // CRYPTO_MANAGER_DISABLE_TESTS: off, it would let the self-tests in (a chunk that shrinks overall could hide that).
  t.deepEqual(result.candidates, ['NET', 'INET', 'WLAN', 'WIRELESS', 'ZONE_DMA32']);
  t.deepEqual(result.protected, [
    { symbol: 'VIRTIO_NET', why: 'platforms/kvm.net.config' },
    { symbol: 'CRYPTO_MANAGER_DISABLE_TESTS', why: 'other options depend on it being off (!CRYPTO_MANAGER_DISABLE_TESTS): off, it lets code in' },
  ]);
});

test('holds: the prompt conditions Kconfig files write', (t) => {
  const config = parseKconfig('CONFIG_EXPERT=y\nCONFIG_X86_64=y\n# CONFIG_X86_32 is not set\nCONFIG_HZ_250=y\n');
  t.true(holds('EXPERT', config));
  t.false(holds('EMBEDDED', config), 'absent is off');
  t.true(holds('X86_64 && !X86_32', config));
  t.false(holds('X86_32 || EMBEDDED', config));
  t.true(holds('X86_32 || EXPERT', config));
  t.true(holds('HZ_250=y', config));
  t.false(holds('HZ_250!=y', config));
  t.true(holds('(A || B) && C', config), 'a shape it does not read counts as holding: the trial decides');
});

test("setRecipeKernelDisable: only the disable entry's text changes (comments, their columns and flow styles kept byte for byte); a block list stays a block list; an empty list removes the entry; the recipe still loads", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-minimize-'));
  try {
    const file = join(dir, 'web.yaml');
    const before = '# my web server\nname: web\npackages: [nginx]\nentrypoint:\n  cmd: [/usr/sbin/nginx]    # in the foreground\nreadiness:\n  http: { port: 80, path: / }\nkernel:\n  features: [net]          # it listens\n\ncheck: [/usr/sbin/nginx, -t]\n';
    await writeFile(file, before);
    await setRecipeKernelDisable(file, ['INET_DIAG', 'UNIX98_PTYS']);
    const added = before.replace('# it listens\n', '# it listens\n  disable: [INET_DIAG, UNIX98_PTYS]\n');
    t.is(await readFile(file, 'utf8'), added);
    const recipe = await loadRecipeFile(file);
    t.deepEqual(recipe.kernel.disable, ['INET_DIAG', 'UNIX98_PTYS']);
    t.deepEqual(recipe.kernel.features, ['net']);
    await setRecipeKernelDisable(file, ['UNIX98_PTYS']);
    t.is(await readFile(file, 'utf8'), added.replace('[INET_DIAG, UNIX98_PTYS]', '[UNIX98_PTYS]'));
    await setRecipeKernelDisable(file, []);
    t.is(await readFile(file, 'utf8'), before);
    t.deepEqual((await loadRecipeFile(file)).kernel.disable, []);

    const block = 'name: web\npackages: [nginx]\nentrypoint:\n  cmd: [/usr/sbin/nginx]\nkernel:\n  disable:\n    - WLAN   # no radio\n  features: [net]\n';
    await writeFile(file, block);
    await setRecipeKernelDisable(file, ['INET_DIAG', 'WLAN']);
    t.is(await readFile(file, 'utf8'), block.replace('    - WLAN   # no radio\n', '    - INET_DIAG\n    - WLAN\n'));
    t.deepEqual((await loadRecipeFile(file)).kernel.disable, ['INET_DIAG', 'WLAN']);
    t.deepEqual(await readdir(dir), ['web.yaml'], 'nothing staged is left beside it');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a build's kernelDisable is checked when the build loads: a symbol written with CONFIG_ is refused, naming the option", async (t) => {
  const build = createBuild({ recipe: 'nginx', kernelDisable: ['UNIX98_PTYS', 'CONFIG_TMPFS'], goal: 'kernel-config' });
  try {
    await t.throwsAsync(build.runStep(build.steps[0]!), { code: 'E_KERNEL_CONFIG', message: 'kernelDisable: "CONFIG_TMPFS" is not a Kconfig symbol' } as never);
  } finally {
    await build.cleanup();
  }
});

test('minimize: an option whose absence makes the kernel larger stays (on, it leaves code out)', async (t) => {
  const sizes: Record<string, number> = { A: -1000, TESTS_OFF: 5000, B: -2000 };
  const result = await minimizeOptions(['A', 'TESTS_OFF', 'B'], { ok: true, vmlinuxBytes: 100_000 }, async (off) => ({ ok: true, vmlinuxBytes: 100_000 + off.reduce((n, s) => n + sizes[s]!, 0) }));
  t.deepEqual(result.removed, ['A', 'B']);
  // Known from the set A + TESTS_OFF, tried against the baseline: 104 000 B.
  t.deepEqual(result.needed, [{ symbol: 'TESTS_OFF', reason: 'the kernel grew by 4000 B (on, the option leaves code out)' }]);
  t.is(result.final.vmlinuxBytes, 97_000);
});
