import { text } from './scalar-kinds.js';
import { splitCommandLine } from './split-command-line.js';
import { suggest } from './suggest.js';
import { describeValue, fail, fieldSchema, joinField, readField, type FieldDocs, type Fields, type Json, type JsonSchema, type Kind, type Output, type ReadContext } from './value-kind.js';

/** A mapping whose keys must all be in `known` (null: any key). */
function readMapping(value: Json, field: string, context: ReadContext, known: readonly string[] | null): { [key: string]: Json } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(context, field || '(top level)', `must be a mapping, not ${describeValue(value)}`);
  for (const key of Object.keys(value)) {
    if (known && !known.includes(key)) fail(context, joinField(field, key), 'unknown key', `known keys here: ${known.join(', ')}${suggest(key, known)}`);
  }
  return value;
}

function mapValues<T, U>(object: { readonly [key: string]: T }, map: (value: T, key: string) => U): { [key: string]: U } {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, map(value, key)]));
}

function requiredKeys(fields: Fields): { required?: string[] } {
  const required = Object.keys(fields).filter((key) => 'required' in fields[key]!);
  return required.length > 0 ? { required } : {};
}

export function list<T>(item: Kind<T>, options: { type?: string; min?: { count: number; problem: string }; distinctSorted?: boolean } = {}): Kind<T[]> {
  return {
    type: options.type ?? `list of ${item.type}s`,
    schema: { type: 'array', ...(options.min ? { minItems: options.min.count } : {}), items: item.schema },
    inner: item.inner && { path: `[]${item.inner.path}`, fields: item.inner.fields },
    read(value, field, context) {
      if (!Array.isArray(value)) fail(context, field, `must be a list, not ${describeValue(value)}`);
      if (options.min && value.length < options.min.count) fail(context, field, options.min.problem);
      const items = value.map((element, i) => item.read(element, `${field}[${i}]`, context));
      // A set written as a list: one order, whatever order it was written in.
      return options.distinctSorted ? [...new Set(items)].sort() : items;
    },
  };
}

/** A mapping of names of one's choosing (an environment) to values of one kind. */
export function record<T>(key: { pattern: RegExp; type: string; problem: string }, value: Kind<T>): Kind<Record<string, T>> {
  return {
    type: `mapping of ${key.type} to ${value.type}`,
    schema: { type: 'object', propertyNames: { pattern: key.pattern.source }, additionalProperties: value.schema },
    read(data, field, context) {
      const out: Record<string, T> = {};
      for (const [name, item] of Object.entries(readMapping(data, field, context, null))) {
        if (!key.pattern.test(name)) fail(context, joinField(field, name), key.problem);
        out[name] = value.read(item, joinField(field, name), context);
      }
      return out;
    },
  };
}

export interface MappingKind<F extends Fields> extends Kind<Output<F>> {
  readonly fields: F;
}

/** A check across fields of one mapping (pidFile goes with forks), in code and in JSON Schema. */
export interface Rule<T> {
  check(value: T, field: string, context: ReadContext): void;
  readonly schema: JsonSchema;
}

/**
 * A mapping of the fields of a table: no other key, each field read (or
 * defaulted) in table order, or `readFirst` first where one field's fault is
 * the cause of another's.
 */
export function mapping<F extends Fields>(fields: F, options: { readFirst?: readonly (keyof F & string)[]; rule?: Rule<Output<F>> } = {}): MappingKind<F> {
  const keys = Object.keys(fields);
  const first: readonly string[] = options.readFirst ?? [];
  const order = [...first, ...keys.filter((key) => !first.includes(key))];
  return {
    fields,
    type: 'mapping',
    schema: { type: 'object', properties: mapValues(fields, fieldSchema), ...requiredKeys(fields), additionalProperties: false, ...options.rule?.schema },
    inner: { path: '', fields },
    read(value, field, context) {
      const written = readMapping(value, field, context, keys);
      const read: Record<string, unknown> = {};
      for (const key of order) read[key] = readField(fields[key]!, written[key], joinField(field, key), context);
      const out = Object.fromEntries(keys.map((key) => [key, read[key]])) as Output<F>;
      options.rule?.check(out, field, context);
      return out;
    },
  };
}

/** A value that may be null for "none" (no readiness probe, no check). */
export function nullable<T>(kind: Kind<T>): Kind<T | null> {
  return {
    type: `${kind.type}, or null`,
    schema: { anyOf: [{ type: 'null' }, kind.schema] },
    inner: kind.inner,
    read: (value, field, context) => (value === null ? null : kind.read(value, field, context)),
  };
}

/** A mapping that may be written as just the value (a string or number) of one of its keys: a directory as its path, a TCP probe as its port. */
export function shorthand<F extends Fields>(key: keyof F & string, of: MappingKind<F>, type: string): Kind<Output<F>> {
  const short = of.fields[key]!.kind;
  return {
    type,
    schema: { anyOf: [short.schema, of.schema] },
    inner: of.inner,
    read(value, field, context) {
      if (typeof value !== 'string' && typeof value !== 'number') return of.read(value, field, context);
      // Read where it was written, so that a fault names directories[0], not directories[0].path.
      short.read(value, field, context);
      return of.read({ [key]: value }, field, context);
    },
  };
}

/** A command: argv as a list, or one string split as a shell would; with `namesProgram`, argv[0] must be there. */
export function command(options: { namesProgram: boolean }): Kind<string[]> {
  const words = list(text);
  return {
    type: 'list of strings, or a string',
    schema: { anyOf: options.namesProgram ? [{ type: 'string', pattern: '\\S' }, { ...words.schema, minItems: 1 }] : [{ type: 'string' }, words.schema] },
    read(value, field, context) {
      const argv = typeof value === 'string' ? splitCommandLine(value, (problem) => fail(context, field, problem)) : words.read(value, field, context);
      if (options.namesProgram && (argv.length === 0 || argv[0] === '')) fail(context, field, 'must name the program to run');
      return argv;
    },
  };
}

/** One key of a `variants` mapping: its value, the keys that go with it alone (replace's `with`), and its part of the result. */
export interface Variant<T> {
  readonly kind: Kind<unknown>;
  readonly describe: string;
  readonly companions: Fields;
  read(written: { [key: string]: Json }, key: string, field: string, context: ReadContext): T;
}

export function variant<V, T, C extends Fields = Record<never, never>>(spec: { kind: Kind<V>; describe: string; companions?: C; build: (value: V, companions: Output<C>) => T }): Variant<T> {
  const companions: Fields = spec.companions ?? {};
  return {
    kind: spec.kind,
    describe: spec.describe,
    companions,
    read(written, key, field, context) {
      const value = spec.kind.read(written[key]!, joinField(field, key), context);
      return spec.build(value, mapValues(companions, (entry, name) => readField(entry, written[name], joinField(field, name), context)) as Output<C>);
    },
  };
}

type VariantOutput<V> = { [K in keyof V]: V[K] extends Variant<infer T> ? T : never }[keyof V];

/**
 * A mapping of `given` fields and exactly one of the keys of `one` (a
 * readiness probe, a fix-up's edit); `none` and `many` say what is wrong
 * when it names no variant or several.
 */
export function variants<G extends Fields, V extends { readonly [key: string]: Variant<unknown> }>(options: {
  given: G;
  one: V;
  type: string;
  none: string;
  many: (names: string[]) => string;
  hint: string;
}): Kind<Output<G> & VariantOutput<V>> {
  const names = Object.keys(options.one);
  const companionsOf = (name: string): Fields => options.one[name]!.companions;
  // The reference and the schema list each variant after the given fields, its companions right after it.
  const docs: { [key: string]: FieldDocs[string] } = { ...options.given };
  const dependencies: { [key: string]: string[] } = {};
  for (const name of names) {
    const { kind, describe, companions } = options.one[name]!;
    docs[name] = { kind, describe, defaultText: '—' };
    for (const [companion, entry] of Object.entries(companions)) {
      docs[companion] = { kind: entry.kind, describe: entry.describe, defaultText: `${'required' in entry ? 'required' : 'only'} with \`${name}\`` };
      dependencies[companion] = [name];
    }
    const required = requiredKeys(companions).required;
    if (required) dependencies[name] = required;
  }
  return {
    type: options.type,
    schema: {
      type: 'object',
      properties: mapValues(docs, fieldSchema),
      ...requiredKeys(options.given),
      additionalProperties: false,
      oneOf: names.map((name) => ({ required: [name] })),
      ...(Object.keys(dependencies).length > 0 ? { dependencies } : {}),
    },
    inner: { path: '', fields: docs },
    read(value, field, context) {
      const written = readMapping(value, field, context, Object.keys(docs));
      const given = mapValues(options.given, (entry, key) => readField(entry, written[key], joinField(field, key), context));
      const chosen = names.filter((name) => written[name] !== undefined);
      if (chosen.length !== 1) fail(context, field, chosen.length === 0 ? options.none : options.many(chosen), options.hint);
      const name = chosen[0]!;
      for (const other of names.filter((n) => n !== name)) {
        for (const companion of Object.keys(companionsOf(other))) {
          if (written[companion] !== undefined) fail(context, joinField(field, companion), `goes only with ${other}`);
        }
      }
      return { ...given, ...(options.one[name]!.read(written, name, field, context) as object) } as Output<G> & VariantOutput<V>;
    },
  };
}
