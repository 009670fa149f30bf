/** A .config value: y, m, n, a number or a quoted string, as written after the "=". */
export type KconfigValue = string;

/** One requested option, and the fragment that asked for it (for error messages and `tinyx kernel config`). */
export interface RequestedOption {
  value: KconfigValue;
  origin: string;
}

/** A named piece of .config text: base.config, platforms/kvm.config, "feature epoll". */
export interface Fragment {
  name: string;
  text: string;
}

const SET = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/;
const UNSET = /^# CONFIG_([A-Za-z0-9_]+) is not set$/;

/** Parses .config text: `CONFIG_X=y` and `# CONFIG_X is not set` (as "n"); other comments are ignored. */
export function parseKconfig(text: string, name = '.config'): Map<string, KconfigValue> {
  const values = new Map<string, KconfigValue>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const set = line.match(SET);
    const unset = line.match(UNSET);
    if (set) values.set(set[1]!, set[2]!);
    else if (unset) values.set(unset[1]!, 'n');
    else if (!line.startsWith('#')) throw new Error(`${name}: line ${i + 1}: not a Kconfig line: ${line}`);
  });
  return values;
}

/**
 * Merges fragments in order: a later fragment's value for a symbol replaces an
 * earlier one's, as merge_config.sh does, and the result remembers which
 * fragment each value came from.
 */
export function mergeFragments(fragments: readonly Fragment[]): Map<string, RequestedOption> {
  const merged = new Map<string, RequestedOption>();
  for (const fragment of fragments) {
    for (const [symbol, value] of parseKconfig(fragment.text, fragment.name)) {
      merged.delete(symbol); // keep insertion order = order of the deciding fragment
      merged.set(symbol, { value, origin: fragment.name });
    }
  }
  return merged;
}

/** Writes requested options as .config lines, to append to a tinyconfig before olddefconfig. */
export function renderKconfig(options: ReadonlyMap<string, RequestedOption>): string {
  return [...options].map(([symbol, { value }]) => (value === 'n' ? `# CONFIG_${symbol} is not set` : `CONFIG_${symbol}=${value}`)).join('\n') + '\n';
}

export interface ConfigCheck {
  /** Options asked to be on (or to a value) that the final .config does not have: a build error. */
  dropped: { symbol: string; wanted: KconfigValue; got: KconfigValue; origin: string }[];
  /** Options asked to be off that stayed on (something selects them): reported, not an error. */
  stuckOn: { symbol: string; got: KconfigValue; origin: string }[];
}

/**
 * Compares what was asked for with what olddefconfig made of it. Kconfig
 * silently drops an option whose dependencies are unmet; this is where that
 * becomes visible.
 */
export function checkConfig(requested: ReadonlyMap<string, RequestedOption>, final: ReadonlyMap<string, KconfigValue>): ConfigCheck {
  const check: ConfigCheck = { dropped: [], stuckOn: [] };
  for (const [symbol, { value, origin }] of requested) {
    const got = final.get(symbol) ?? 'n';
    if (value === 'n') {
      if (got !== 'n') check.stuckOn.push({ symbol, got, origin });
    } else if (got !== value) {
      check.dropped.push({ symbol, wanted: value, got, origin });
    }
  }
  return check;
}

/**
 * What a symbol's definition in a kernel tree's Kconfig files depends on (the
 * files given as name -> text): its own `depends on` lines, and the `if`
 * blocks and menus with `depends on` around it. That is what must be enabled
 * for a dropped option to stick.
 */
export function findDependencies(kconfigFiles: ReadonlyMap<string, string>, symbols: readonly string[]): Map<string, { file: string; dependsOn: string[] }> {
  const wanted = new Set(symbols);
  const found = new Map<string, { file: string; dependsOn: string[] }>();
  for (const [file, text] of kconfigFiles) {
    const lines = text.split('\n');
    // Conditions of the enclosing if-blocks and menus; a menu's are learnt from the lines after it.
    const stack: { kind: 'if' | 'menu'; conditions: string[] }[] = [];
    let current: { conditions: string[] } | undefined;
    // Help texts are free prose ("if you say Y here..."): skipped by indentation.
    let helpIndent: number | null = null;
    for (const line of lines) {
      if (helpIndent !== null) {
        if (!line.trim()) continue;
        const indent = indentation(line);
        if (helpIndent === -1) {
          helpIndent = indent;
          continue;
        }
        if (indent >= helpIndent) continue;
        helpIndent = null;
      }
      const word = line.match(/^\s*([a-z_-]+)\b\s*(.*?)\s*$/);
      if (!word) continue;
      const [, keyword, rest = ''] = word;
      if (keyword === 'help' || keyword === '---help---') {
        helpIndent = -1;
      } else if (keyword === 'if') {
        stack.push({ kind: 'if', conditions: [rest] });
        current = undefined;
      } else if (keyword === 'endif' || keyword === 'endmenu') {
        stack.pop();
        current = undefined;
      } else if (keyword === 'menu') {
        const menu = { kind: 'menu' as const, conditions: [] as string[] };
        stack.push(menu);
        current = menu;
      } else if (keyword === 'config' || keyword === 'menuconfig') {
        current = undefined;
        if (wanted.has(rest)) {
          const entry = { file, dependsOn: stack.flatMap((s) => s.conditions) };
          found.set(rest, entry);
          current = { conditions: entry.dependsOn };
        }
      } else if (keyword === 'depends' && rest.startsWith('on ')) {
        current?.conditions.push(rest.slice(3).trim());
      } else if (['choice', 'endchoice', 'comment', 'source', 'mainmenu'].includes(keyword!)) {
        current = undefined;
      }
    }
  }
  return found;
}

function indentation(line: string): number {
  let width = 0;
  for (const c of line) {
    if (c === ' ') width++;
    else if (c === '\t') width = (Math.floor(width / 8) + 1) * 8;
    else break;
  }
  return width;
}
