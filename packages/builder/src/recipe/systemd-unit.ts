/**
 * systemd unit files as data: the syntax of systemd.syntax(7), the command
 * lines of systemd.service(5) ("Command lines") and the environment of
 * systemd.exec(5). Pure: no file is read here.
 */

/** One assignment of a unit file, where it was written. */
export interface UnitAssignment {
  key: string;
  value: string;
  line: number;
}

export interface SystemdUnit {
  /** The unit's file name ("haproxy.service", "redis-server@.service"). */
  name: string;
  /** Where it was read from, for messages. */
  path: string;
  sections: Map<string, UnitAssignment[]>;
}

export class UnitSyntaxError extends Error {
  constructor(
    readonly path: string,
    readonly line: number,
    problem: string,
  ) {
    super(`${path}:${line}: ${problem}`);
  }
}

/**
 * Parses a unit file: [Section] headers, Key=Value lines, comments (# and ;),
 * and lines continued by a trailing backslash (comment lines inside a
 * continuation are skipped, as systemd does).
 */
export function parseUnit(text: string, path: string, name = path.replace(/^.*\//, '')): SystemdUnit {
  const sections = new Map<string, UnitAssignment[]>();
  let section: UnitAssignment[] | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    let continued = line.endsWith('\\');
    if (continued) line = `${line.slice(0, -1)} `;
    while (continued && i + 1 < lines.length) {
      i++;
      const next = lines[i]!.trim();
      if (next.startsWith('#') || next.startsWith(';')) continue;
      continued = next.endsWith('\\');
      line += continued ? `${next.slice(0, -1)} ` : next;
    }
    line = line.trim();
    if (line.startsWith('[')) {
      if (!line.endsWith(']')) throw new UnitSyntaxError(path, start, `"${line}" is not a section header`);
      const title = line.slice(1, -1);
      section = sections.get(title) ?? [];
      sections.set(title, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new UnitSyntaxError(path, start, `"${line}" is neither a section header nor Key=Value`);
    if (!section) throw new UnitSyntaxError(path, start, 'an assignment before any [Section]');
    section.push({ key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: start });
  }
  return { name, path, sections };
}

/**
 * Every value of a list setting, in order. An empty assignment resets the
 * list (systemd's rule for Environment=, ExecStartPre=, RuntimeDirectory=...).
 */
export function unitValues(unit: SystemdUnit, section: string, key: string): UnitAssignment[] {
  let values: UnitAssignment[] = [];
  for (const a of unit.sections.get(section) ?? []) {
    if (a.key !== key) continue;
    if (a.value === '') values = [];
    else values.push(a);
  }
  return values;
}

/** The value of a single-valued setting: the last assignment wins; an empty one resets it. */
export function unitValue(unit: SystemdUnit, section: string, key: string): UnitAssignment | undefined {
  const all = (unit.sections.get(section) ?? []).filter((a) => a.key === key);
  const last = all.at(-1);
  return last && last.value !== '' ? last : undefined;
}

/**
 * The simple specifiers of systemd.unit(5) "Specifiers": those that depend
 * only on the unit's name and the system manager's fixed directories. Others
 * (%H host name, %u user of a --user manager...) have no meaning in an image
 * built ahead of time: an error.
 */
export function expandSpecifiers(text: string, unit: SystemdUnit, where: string): string {
  const full = unit.name;
  const dot = full.lastIndexOf('.');
  const stem = dot > 0 ? full.slice(0, dot) : full;
  const at = stem.indexOf('@');
  const prefix = at >= 0 ? stem.slice(0, at) : stem;
  const instance = at >= 0 ? stem.slice(at + 1) : '';
  const table: Record<string, string> = {
    '%': '%',
    n: full,
    N: stem,
    p: prefix,
    P: prefix,
    i: instance,
    // Unescaped (systemd-escape(1)): "-" is "/", "\xNN" a byte; 15-main is 15/main.
    I: instance.replace(/-/g, '/').replace(/\\x([0-9a-fA-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
    j: prefix.replace(/^.*-/, ''),
    J: prefix.replace(/^.*-/, ''),
    t: '/run',
    S: '/var/lib',
    C: '/var/cache',
    L: '/var/log',
    E: '/etc',
    T: '/tmp',
    V: '/var/tmp',
    h: '/root',
    '/': '/',
  };
  return text.replace(/%(.)/g, (_, c: string) => {
    const value = table[c];
    if (value === undefined) throw new Error(`${unit.path}: ${where}: the specifier %${c} is not supported ahead of boot`);
    return value;
  });
}

/**
 * Splits a value into words the way systemd does: whitespace separates words,
 * double and single quotes group, and backslash escapes the C way. Each word
 * says whether it was written as a bare `$NAME` (which expands to several
 * words) so that command-line expansion can follow systemd.service(5).
 */
export function splitUnitWords(value: string): { text: string; bareVariable: boolean }[] {
  const words: { text: string; bareVariable: boolean }[] = [];
  let i = 0;
  const escapes: Record<string, string> = { n: '\n', t: '\t', r: '\r', a: '\x07', b: '\b', f: '\f', v: '\v', '\\': '\\', '"': '"', "'": "'", s: ' ', ';': ';' };
  while (i < value.length) {
    while (i < value.length && /\s/.test(value[i]!)) i++;
    if (i >= value.length) break;
    let word = '';
    let quoted = false;
    while (i < value.length && !/\s/.test(value[i]!)) {
      const c = value[i]!;
      if (c === '"' || c === "'") {
        quoted = true;
        const end = value.indexOf(c, i + 1);
        if (end < 0) throw new Error(`a ${c} quote left open in "${value}"`);
        let inner = value.slice(i + 1, end);
        if (c === '"') inner = inner.replace(/\\(.)/g, (_, e: string) => escapes[e] ?? e);
        word += inner;
        i = end + 1;
      } else if (c === '\\' && i + 1 < value.length) {
        word += escapes[value[i + 1]!] ?? value[i + 1]!;
        i += 2;
      } else {
        word += c;
        i++;
      }
    }
    words.push({ text: word, bareVariable: !quoted && /^\$[A-Za-z_][A-Za-z0-9_]*$/.test(word) });
  }
  return words;
}

/** One Exec*= command line, its prefixes taken apart. */
export interface ExecCommand {
  argv: string[];
  /** `-`: a failure is ignored. */
  ignoreFailure: boolean;
  /** `@`: argv[1] is passed as argv[0]; `argv` here is what runs, so that is undone. */
  argv0: string | undefined;
  /** `+`, `!` or `!!`: run with full privileges, or without the user switch. */
  privileged: boolean;
  /** `:`: no variable or specifier expansion. */
  literal: boolean;
  line: number;
}

/**
 * Parses an Exec*= line: the prefixes, specifiers, then `${NAME}` replaced
 * inside words and a bare `$NAME` word replaced by the value split at
 * whitespace (an unset variable gives the empty string, or no word).
 */
export function parseExecLine(assignment: UnitAssignment, unit: SystemdUnit, env: Record<string, string>): ExecCommand {
  let value = assignment.value;
  const flags = { ignoreFailure: false, at: false, privileged: false, literal: false };
  for (;;) {
    if (value.startsWith('!!')) {
      flags.privileged = true;
      value = value.slice(2);
      continue;
    }
    const c = value[0];
    if (c === '-') flags.ignoreFailure = true;
    else if (c === '@') flags.at = true;
    else if (c === '+' || c === '!') flags.privileged = true;
    else if (c === ':') flags.literal = true;
    else break;
    value = value.slice(1);
  }
  const words = splitUnitWords(flags.literal ? value : expandSpecifiers(value, unit, assignment.key));
  const argv: string[] = [];
  for (const word of words) {
    if (flags.literal) argv.push(word.text);
    else if (word.bareVariable) argv.push(...(env[word.text.slice(1)] ?? '').split(/\s+/).filter((w) => w !== ''));
    else argv.push(word.text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => env[name] ?? ''));
  }
  let argv0: string | undefined;
  if (flags.at) {
    // "@/usr/bin/prog name args": runs /usr/bin/prog with argv[0] = name. The image runs the program with its own name.
    argv0 = argv[1];
    argv.splice(1, 1);
  }
  return { argv, ignoreFailure: flags.ignoreFailure, argv0, privileged: flags.privileged, literal: flags.literal, line: assignment.line };
}

/** The variables of Environment= lines, in order (a later one wins). */
export function parseEnvironment(assignments: readonly UnitAssignment[], unit: SystemdUnit): Record<string, string> {
  const env: Record<string, string> = {};
  for (const a of assignments) {
    for (const word of splitUnitWords(expandSpecifiers(a.value, unit, a.key))) {
      const eq = word.text.indexOf('=');
      if (eq > 0) env[word.text.slice(0, eq)] = word.text.slice(eq + 1);
    }
  }
  return env;
}

/**
 * An EnvironmentFile= file: KEY=VALUE lines, # and ; comments, quotes
 * removed, backslash-newline continued. (systemd reads these without a shell:
 * no expansion of $VAR inside them.)
 */
export function parseEnvironmentFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  const joined = text.replace(/\\\n/g, '');
  for (const raw of joined.split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) continue;
    let value = line.slice(eq + 1).trim();
    const q = value[0];
    if ((q === '"' || q === "'") && value.endsWith(q) && value.length >= 2) {
      value = value.slice(1, -1);
      if (q === '"') value = value.replace(/\\(["\\$`])/g, '$1');
    }
    env[key] = value;
  }
  return env;
}

/** The files of EnvironmentFile= lines: `-` marks one that may be missing. */
export function environmentFiles(unit: SystemdUnit): { path: string; optional: boolean; line: number }[] {
  return unitValues(unit, 'Service', 'EnvironmentFile').map((a) => {
    const optional = a.value.startsWith('-');
    return { path: expandSpecifiers(optional ? a.value.slice(1) : a.value, unit, a.key), optional, line: a.line };
  });
}
