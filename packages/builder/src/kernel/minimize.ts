import type { KconfigValue } from './kconfig.js';

/**
 * `tinyx kernel minimize`: TinyX's option pruning. The options an app's kernel
 * has beyond tinyconfig and beyond what every kernel of its platform must have
 * are tried off, in chunks that halve where a chunk breaks the app (delta
 * debugging: ddmin's complement steps, cumulative), and the ones whose absence
 * still boots the image and passes its readiness probe are left out.
 */

/** How one trial of a set of options off ended. */
export interface TrialOutcome {
  ok: boolean;
  /** Why it failed: the config (an option it drops), the build, the boot, the probe. */
  reason?: string | undefined;
  /** The trial kernel's final .config hash (absent when no config was made). */
  configSha256?: string | undefined;
  bzImageBytes?: number | undefined;
  /** The stripped vmlinux: what the guest loads (the bzImage's compression hides small changes). */
  vmlinuxBytes?: number | undefined;
  /** From QEMU's start to the readiness probe's answer, one boot. */
  readyMs?: number | undefined;
  /** Options the trial asked off that its config still has on: something kept selects them. */
  stuckOn?: string[] | undefined;
}

/** A trial as the minimizer made it: the chunk it added to what is already off, and how it went. */
export interface MinimizeStep {
  chunk: string[];
  outcome: TrialOutcome;
}

export interface MinimizeResult {
  /** Left out, in candidate order: every one off in the last passing trial's config. */
  removed: string[];
  /** Tried alone and needed, with the trial's reason. */
  needed: { symbol: string; reason: string }[];
  /** Asked off and accepted, yet on in the end: selected by an option that stays. */
  stuckOn: string[];
  steps: MinimizeStep[];
  /** The last passing trial: the minimized kernel (the baseline's when nothing could go). */
  final: TrialOutcome;
}

/**
 * Tries the candidates off: first all of them, and where a chunk fails, its
 * two halves, each on top of what already passed. A single option that fails
 * is needed. Deterministic for the same candidates and outcomes, so a run
 * that replays recorded outcomes (`trial` answering from its record) makes
 * the same choices: that is how a minimization resumes.
 */
export async function minimizeOptions(
  candidates: readonly string[],
  baseline: TrialOutcome,
  trial: (off: readonly string[]) => Promise<TrialOutcome>,
  onStep?: (step: MinimizeStep, progress: { off: number; needed: number; pending: number }) => void,
): Promise<MinimizeResult> {
  if (!baseline.ok) throw new Error('the baseline must pass');
  const off: string[] = [];
  const needed: MinimizeResult['needed'] = [];
  const steps: MinimizeStep[] = [];
  let final = baseline;
  const queue: string[][] = candidates.length > 0 ? [[...candidates]] : [];
  // A set already tried is not tried again: when a failing chunk's first half passes, the second half on top is the set that failed.
  const tried = new Map<string, TrialOutcome>();
  while (queue.length > 0) {
    const chunk = queue.shift()!;
    const set = order(candidates, [...off, ...chunk]);
    const key = set.join(' ');
    let outcome = tried.get(key);
    let step: MinimizeStep | undefined;
    if (!outcome) {
      outcome = grew(await trial(set), final);
      tried.set(key, outcome);
      step = { chunk, outcome };
      steps.push(step);
    }
    if (outcome.ok) {
      off.push(...chunk);
      final = outcome;
    } else if (chunk.length > 1) {
      const half = Math.ceil(chunk.length / 2);
      queue.unshift(chunk.slice(0, half), chunk.slice(half));
    } else {
      needed.push({ symbol: chunk[0]!, reason: outcome.reason ?? 'failed' });
    }
    if (step) onStep?.(step, { off: off.length, needed: needed.length, pending: queue.reduce((n, c) => n + c.length, 0) });
  }
  const stuck = new Set(final.stuckOn ?? []);
  const removed = order(candidates, off).filter((s) => !stuck.has(s));
  return { removed, needed, stuckOn: order(candidates, off).filter((s) => stuck.has(s)), steps, final };
}

/**
 * A trial that passes but whose kernel is larger than the one it started from
 * fails: the option it switched off takes code out when on
 * (CRYPTO_MANAGER_DISABLE_TESTS: off, the crypto self-tests are built in).
 */
function grew(outcome: TrialOutcome, from: TrialOutcome): TrialOutcome {
  if (!outcome.ok || outcome.vmlinuxBytes === undefined || from.vmlinuxBytes === undefined || outcome.vmlinuxBytes <= from.vmlinuxBytes) return outcome;
  return { ...outcome, ok: false, reason: `the kernel grew by ${outcome.vmlinuxBytes - from.vmlinuxBytes} B (on, the option leaves code out)` };
}

/** Symbols in the candidates' order. */
function order(candidates: readonly string[], symbols: readonly string[]): string[] {
  const set = new Set(symbols);
  return candidates.filter((s) => set.has(s));
}

/**
 * Whether a prompt's condition holds in a .config, for the simple forms
 * Kconfig files use (`EXPERT`, `!X86_32`, `A && B`, `A || B`, `X=y`): an
 * expression of another shape counts as holding (the trial decides).
 */
export function holds(expression: string, config: ReadonlyMap<string, KconfigValue>): boolean {
  const on = (symbol: string): boolean => (config.get(symbol) ?? 'n') !== 'n';
  const term = (t: string): boolean | undefined => {
    const m = t.trim().match(/^(!?)\s*([A-Z0-9_]+)(?:\s*(!?=)\s*([ymn]))?$/);
    if (!m) return undefined;
    const value = m[3] ? (m[3] === '=' ? (config.get(m[2]!) ?? 'n') === m[4] : (config.get(m[2]!) ?? 'n') !== m[4]) : on(m[2]!);
    return m[1] ? !value : value;
  };
  if (/[()]/.test(expression)) return true;
  const any = expression.split('||').map((part) => part.split('&&').map(term));
  if (any.some((all) => all.some((v) => v === undefined))) return true;
  return any.some((all) => all.every(Boolean));
}

/** Why an option is not a candidate: the contract it belongs to. */
export interface ProtectedOption {
  symbol: string;
  why: string;
}

/**
 * The candidates: options on (=y) in the app's kernel, not on in tinyconfig,
 * settable by a .config line (a prompt whose conditions hold, and no option
 * that is on selects them), not menu gates or choice members, and not part of a contract
 * every kernel of the platform keeps (`protect`: the shared options, the
 * platform's devices, the root format, the console). In the order of the
 * app's .config, which is Kconfig's menu order: related options stay
 * together, and a chunk that fails is likely to hold few that matter.
 */
export function minimizeCandidates(
  app: ReadonlyMap<string, KconfigValue>,
  tiny: ReadonlyMap<string, KconfigValue>,
  symbols: KconfigSymbols,
  protect: ReadonlyMap<string, string>,
): { candidates: string[]; protected: ProtectedOption[] } {
  const candidates: string[] = [];
  const kept: ProtectedOption[] = [];
  for (const [symbol, value] of app) {
    if (value !== 'y' || tiny.get(symbol) === 'y' || !symbols.prompted.has(symbol) || symbols.gates.has(symbol) || symbols.choices.has(symbol)) continue;
    // A prompt behind a condition the kernel does not meet (`if EXPERT`, an `if` block): the option follows its default.
    if (!(symbols.promptIf.get(symbol) ?? []).some((all) => all.every((c) => holds(c, app)))) continue;
    const why = protect.get(symbol) ?? (symbols.negated.has(symbol) ? `other options depend on it being off (!${symbol}): off, it lets code in` : undefined);
    if (why) kept.push({ symbol, why });
    else candidates.push(symbol);
  }
  // Selected by an option that is on and stays (not a candidate itself, down the chain of selects): off, it would stay on.
  let maybeOff = new Set(candidates);
  const stays = (symbol: string): boolean => (symbols.selectedBy.get(symbol) ?? []).some((s) => app.get(s.by) === 'y' && !maybeOff.has(s.by) && (s.condition === undefined || holds(s.condition, app)));
  for (let size = -1; size !== maybeOff.size; ) {
    size = maybeOff.size;
    maybeOff = new Set([...maybeOff].filter((symbol) => !stays(symbol)));
  }
  return { candidates: candidates.filter((symbol) => maybeOff.has(symbol)), protected: kept };
}

/** What Kconfig says of the symbols: which can be switched by a .config line, and which are only menus. */
export interface KconfigSymbols {
  /** Symbols with a prompt (`bool "..."`, `tristate "..."`, `prompt "..."`): a .config line switches them. Others follow their selects and defaults. */
  prompted: Set<string>;
  /**
   * Each prompt's conditions, all of which must hold for a .config line to
   * count: the `if` blocks around it and its own (`bool "..." if EXPERT`).
   * One list per prompt; a symbol defined in several places has several.
   */
  promptIf: Map<string, string[][]>;
  /** Who selects each symbol (`select X [if COND]`): on, they keep it on whatever a .config line says. */
  selectedBy: Map<string, { by: string; condition: string | undefined }[]>;
  /**
   * Menu gates: options whose help says the answer "doesn't directly affect
   * the kernel" (NET_VENDOR_INTEL, WLAN_VENDOR_ATH): on by default, they only
   * show the questions below them. Off, they save nothing.
   */
  gates: Set<string>;
  /** The members of `choice` blocks (GENERIC_CPU): one of them is always on; switching is not leaving out. */
  choices: Set<string>;
  /**
   * Symbols a condition names negated (`depends on !CRYPTO_MANAGER_DISABLE_TESTS`):
   * options that leave something out while on, so that switching them off
   * lets code in (the crypto self-tests), which a chunk's total size can hide.
   */
  negated: Set<string>;
}

/** Reads the prompts and the menu gates from a tree's Kconfig files (name -> text). */
export function kconfigSymbols(kconfigFiles: ReadonlyMap<string, string>): KconfigSymbols {
  const prompted = new Set<string>();
  const promptIf = new Map<string, string[][]>();
  const selectedBy = new Map<string, { by: string; condition: string | undefined }[]>();
  const gates = new Set<string>();
  const choices = new Set<string>();
  const negated = new Set<string>();
  for (const text of kconfigFiles.values()) {
    let current: string | undefined;
    let inChoice = false;
    const ifs: string[] = [];
    let help: { indent: number; text: string[] } | undefined;
    const endHelp = (): void => {
      if (current && help && /(doesn't|does not|won't|will not) directly affect the kernel/.test(help.text.join(' '))) gates.add(current);
      help = undefined;
    };
    for (const line of text.split('\n')) {
      if (help) {
        if (!line.trim()) continue;
        const indent = line.length - line.trimStart().length;
        if (help.indent === -1) help.indent = indent;
        if (indent >= help.indent) {
          help.text.push(line.trim());
          continue;
        }
        endHelp();
      }
      const word = line.match(/^\s*([a-z_-]+)\b\s*(.*?)\s*$/);
      if (!word) continue;
      const [, keyword, rest = ''] = word;
      if (/^(depends|if|visible|default|select|imply|range|bool|tristate|prompt|def_bool|def_tristate)$/.test(keyword!)) {
        for (const [, symbol] of rest.replace(/"(?:[^"\\]|\\.)*"/g, '').matchAll(/!(?!=)\s*([A-Z0-9_]+)\b/g)) negated.add(symbol!);
      }
      if (keyword === 'config' || keyword === 'menuconfig') {
        current = rest;
        if (inChoice) choices.add(rest);
      } else if (keyword === 'choice' || keyword === 'endchoice') {
        inChoice = keyword === 'choice';
        current = undefined;
      } else if (keyword === 'help' || keyword === '---help---') help = { indent: -1, text: [] };
      else if (current && /^(bool|tristate|string|int|hex|prompt)$/.test(keyword!) && rest.startsWith('"')) {
        prompted.add(current);
        const condition = rest.match(/^"(?:[^"\\]|\\.)*"\s+if\s+(.+)$/)?.[1];
        promptIf.set(current, [...(promptIf.get(current) ?? []), [...ifs, ...(condition ? [condition] : [])]]);
      } else if (current && keyword === 'select') {
        const [, selected, condition] = rest.match(/^([A-Z0-9_]+)(?:\s+if\s+(.+))?$/) ?? [];
        if (selected) selectedBy.set(selected, [...(selectedBy.get(selected) ?? []), { by: current, condition }]);
      } else if (keyword === 'if') {
        ifs.push(rest);
        current = undefined;
      } else if (keyword === 'endif') {
        ifs.pop();
        current = undefined;
      } else if (['comment', 'source', 'menu', 'endmenu', 'mainmenu'].includes(keyword!)) current = undefined;
    }
    endHelp();
  }
  return { prompted, promptIf, selectedBy, gates, choices, negated };
}
