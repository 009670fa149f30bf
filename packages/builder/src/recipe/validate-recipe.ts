import { RecipeError } from '../errors.js';
import { KERNEL_FEATURES, isKernelFeature, type KernelFeature } from '../kernel-features.js';
import type { DirectorySpec, Fixup, Readiness, Recipe } from './recipe.js';

/** A Debian package name (Debian Policy 5.6.1), optionally with an architecture qualifier. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$/;
const RECIPE_NAME = /^[a-z0-9][a-z0-9._-]*$/;
const ACCOUNT_NAME = /^[a-z_][a-z0-9_-]*\$?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

/**
 * Validates the parsed YAML of a recipe and fills in defaults. Strict: an
 * unknown key, a wrong type or a bad value is a RecipeError naming the file
 * and the field, with a hint where one helps (a close key name, the allowed values).
 */
export function validateRecipe(data: unknown, file: string, fallbackName: string): Recipe {
  const v = new Validator(file);
  const top = v.object(data as Json, '', [
    'name',
    'description',
    'packages',
    'entrypoint',
    'users',
    'include',
    'directories',
    'dlopen',
    'readiness',
    'kernel',
    'fixups',
    'check',
  ]);

  const packages = v.required(top.packages, 'packages', () => v.stringList(top.packages!, 'packages'));
  if (packages.length === 0) v.fail('packages', 'must name at least one Debian package');
  packages.forEach((pkg, i) => {
    if (!PACKAGE_NAME.test(pkg)) v.fail(`packages[${i}]`, `"${pkg}" is not a Debian package name`);
  });

  const name = top.name === undefined ? fallbackName : v.string(top.name, 'name');
  if (!RECIPE_NAME.test(name)) v.fail('name', `"${name}" is not a valid image name`, 'use lower-case letters, digits, ".", "_" and "-"');

  const entry = v.required(top.entrypoint, 'entrypoint', () => v.object(top.entrypoint!, 'entrypoint', ['cmd', 'user', 'env', 'workdir', 'forks', 'pidFile']));
  const cmd = v.required(entry.cmd, 'entrypoint.cmd', () =>
    typeof entry.cmd === 'string' ? splitCommandLine(entry.cmd, (problem) => v.fail('entrypoint.cmd', problem)) : v.stringList(entry.cmd!, 'entrypoint.cmd'),
  );
  if (cmd.length === 0 || cmd[0] === '') v.fail('entrypoint.cmd', 'must name the program to run');
  const user = entry.user === undefined ? 'root' : v.account(entry.user, 'entrypoint.user');
  const env: Record<string, string> = {};
  if (entry.env !== undefined) {
    const envObj = v.object(entry.env, 'entrypoint.env', null);
    for (const [key, value] of Object.entries(envObj)) {
      if (!ENV_NAME.test(key)) v.fail(`entrypoint.env.${key}`, 'is not a valid environment variable name');
      env[key] = typeof value === 'number' ? String(value) : v.string(value ?? null, `entrypoint.env.${key}`);
    }
  }

  const workdir = entry.workdir === undefined ? '/' : v.absolutePath(entry.workdir, 'entrypoint.workdir');
  const forks = entry.forks === undefined ? false : v.boolean(entry.forks, 'entrypoint.forks');
  const pidFile = entry.pidFile === undefined || entry.pidFile === null ? null : v.absolutePath(entry.pidFile, 'entrypoint.pidFile');
  if (pidFile && !forks) v.fail('entrypoint.pidFile', 'is only for an app whose command forks', 'set forks: true, or drop pidFile');

  const users = top.users === undefined ? [] : v.stringList(top.users, 'users').map((u, i) => v.account(u, `users[${i}]`));
  const include = top.include === undefined ? [] : v.stringList(top.include, 'include').map((p, i) => v.absolutePath(p, `include[${i}]`));
  const dlopen = top.dlopen === undefined ? [] : v.stringList(top.dlopen, 'dlopen').map((p, i) => v.absolutePath(p, `dlopen[${i}]`));
  const directories = top.directories === undefined ? [] : v.list(top.directories, 'directories').map((d, i) => directory(v, d, `directories[${i}]`));
  const readiness = top.readiness === undefined || top.readiness === null ? null : readinessProbe(v, top.readiness);
  const features = kernelFeatures(v, top.kernel);
  const fixups = top.fixups === undefined ? [] : v.list(top.fixups, 'fixups').map((f, i) => fixup(v, f, `fixups[${i}]`));
  const check = top.check === undefined || top.check === null ? null : typeof top.check === 'string' ? splitCommandLine(top.check, (p) => v.fail('check', p)) : v.stringList(top.check, 'check');

  return {
    name,
    description: top.description === undefined ? '' : v.string(top.description, 'description'),
    packages,
    entrypoint: { cmd, user, env, workdir, forks, pidFile },
    users,
    include,
    directories,
    dlopen,
    readiness,
    kernel: { features },
    fixups,
    check,
    source: file,
  };
}

function directory(v: Validator, data: Json, field: string): DirectorySpec {
  if (typeof data === 'string') return { path: v.absolutePath(data, field), owner: 'root', mode: 0o755 };
  const obj = v.object(data, field, ['path', 'owner', 'mode']);
  const path = v.required(obj.path, `${field}.path`, () => v.absolutePath(obj.path!, `${field}.path`));
  const owner = obj.owner === undefined ? 'root' : v.account(obj.owner, `${field}.owner`);
  let mode = 0o755;
  if (obj.mode !== undefined) {
    // YAML reads 0755 as the decimal 755; a string "0755" is unambiguous, so both are taken as octal text.
    const text = typeof obj.mode === 'number' ? String(obj.mode) : v.string(obj.mode, `${field}.mode`);
    if (!/^0?[0-7]{3,4}$/.test(text)) v.fail(`${field}.mode`, `"${text}" is not an octal mode`, 'write it as a string, for example "0750"');
    mode = parseInt(text, 8);
  }
  return { path, owner, mode };
}

function readinessProbe(v: Validator, data: Json): Readiness {
  const obj = v.object(data, 'readiness', ['tcp', 'http', 'console']);
  const kinds = Object.keys(obj);
  if (kinds.length !== 1) {
    v.fail('readiness', kinds.length === 0 ? 'names no probe' : `names ${kinds.length} probes (${kinds.join(', ')})`, 'give exactly one of: tcp: PORT, http: { port: PORT, path: /PATH }, console: "a line the app prints"');
  }
  if (obj.tcp !== undefined) return { tcp: { port: v.port(obj.tcp, 'readiness.tcp') } };
  if (obj.http !== undefined) {
    const http = v.object(obj.http, 'readiness.http', ['port', 'path']);
    const port = v.required(http.port, 'readiness.http.port', () => v.port(http.port!, 'readiness.http.port'));
    const path = http.path === undefined ? '/' : v.string(http.path, 'readiness.http.path');
    if (!path.startsWith('/')) v.fail('readiness.http.path', `"${path}" must start with "/"`);
    return { http: { port, path } };
  }
  const line = v.string(obj.console!, 'readiness.console');
  if (!line) v.fail('readiness.console', 'must not be empty');
  return { console: { line } };
}

function kernelFeatures(v: Validator, data: Json | undefined): KernelFeature[] {
  if (data === undefined) return [];
  const obj = v.object(data, 'kernel', ['features']);
  if (obj.features === undefined) return [];
  const names = v.stringList(obj.features, 'kernel.features');
  names.forEach((name, i) => {
    if (!isKernelFeature(name)) {
      v.fail(`kernel.features[${i}]`, `unknown feature "${name}"`, `known features: ${Object.keys(KERNEL_FEATURES).join(', ')}${suggest(name, Object.keys(KERNEL_FEATURES))}`);
    }
  });
  return [...new Set(names as KernelFeature[])].sort();
}

function fixup(v: Validator, data: Json, field: string): Fixup {
  const obj = v.object(data, field, ['file', 'delete-lines', 'replace', 'with', 'write']);
  const file = v.required(obj.file, `${field}.file`, () => v.absolutePath(obj.file!, `${field}.file`));
  const ops = ['delete-lines', 'replace', 'write'].filter((op) => obj[op] !== undefined);
  if (ops.length !== 1) v.fail(field, ops.length === 0 ? 'names no edit' : `names ${ops.join(' and ')} at once`, 'give exactly one of: delete-lines: REGEX, replace: REGEX with: TEXT, write: TEXT');
  if (obj['delete-lines'] !== undefined) return { file, deleteLines: v.regex(obj['delete-lines'], `${field}.delete-lines`) };
  if (obj.replace !== undefined) {
    const replace = v.regex(obj.replace, `${field}.replace`);
    const withText = v.required(obj.with, `${field}.with`, () => v.string(obj.with!, `${field}.with`));
    return { file, replace, with: withText };
  }
  if (obj.with !== undefined) v.fail(`${field}.with`, 'goes only with replace');
  return { file, write: v.string(obj.write!, `${field}.write`) };
}

/** Splits a command line the way a shell would for plain words, single and double quotes (no expansion). */
export function splitCommandLine(text: string, fail: (problem: string) => never): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) word += text[++i];
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) fail(`unterminated ${quote} quote in: ${text}`);
  if (inWord) words.push(word);
  return words;
}

/** ", did you mean X?" when a close match exists. */
export function suggest(word: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(word, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? `; did you mean "${best}"?` : '';
}

/** Levenshtein distance with transpositions counted as one edit ("ngnix" is one from "nginx"). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

class Validator {
  constructor(private readonly file: string) {}

  fail(field: string, problem: string, hint?: string): never {
    throw new RecipeError(this.file, field || undefined, problem, hint);
  }

  required<T>(value: Json | undefined, field: string, then: () => T): T {
    if (value === undefined || value === null) this.fail(field, 'is required');
    return then();
  }

  /** An object whose keys must all be in `known` (null: any key). */
  object(value: Json, field: string, known: readonly string[] | null): Partial<Obj> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(field || '(top level)', `must be a mapping, not ${describe(value)}`);
    if (known) {
      for (const key of Object.keys(value)) {
        if (!known.includes(key)) {
          this.fail(field ? `${field}.${key}` : key, 'unknown key', `known keys here: ${known.join(', ')}${suggest(key, known)}`);
        }
      }
    }
    return value;
  }

  list(value: Json, field: string): Json[] {
    if (!Array.isArray(value)) this.fail(field, `must be a list, not ${describe(value)}`);
    return value;
  }

  string(value: Json, field: string): string {
    if (typeof value !== 'string') this.fail(field, `must be a string, not ${describe(value)}`);
    return value;
  }

  boolean(value: Json, field: string): boolean {
    if (typeof value !== 'boolean') this.fail(field, `must be true or false, not ${describe(value)}`);
    return value;
  }

  stringList(value: Json, field: string): string[] {
    return this.list(value, field).map((item, i) => this.string(item, `${field}[${i}]`));
  }

  absolutePath(data: Json, field: string): string {
    const value = this.string(data, field);
    if (!value.startsWith('/')) this.fail(field, `"${value}" must be an absolute path`);
    if (value.split('/').includes('..')) this.fail(field, `"${value}" must not contain ".."`);
    return value.length > 1 ? value.replace(/\/+$/, '') : value;
  }

  account(value: Json, field: string): string {
    const name = this.string(value, field);
    if (!ACCOUNT_NAME.test(name)) this.fail(field, `"${name}" is not a user name`);
    return name;
  }

  port(value: Json, field: string): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
      this.fail(field, `must be a port number 1-65535, not ${describe(value)}`);
    }
    return value;
  }

  regex(value: Json, field: string): string {
    const text = this.string(value, field);
    try {
      new RegExp(text, 'm');
    } catch (error) {
      this.fail(field, `is not a valid regular expression: ${(error as Error).message}`);
    }
    return text;
  }
}

function describe(value: Json | undefined): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string "${value}"`;
  return `${typeof value} ${JSON.stringify(value)}`;
}
