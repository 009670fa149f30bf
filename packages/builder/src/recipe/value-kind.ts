import { RecipeError } from '../errors.js';

/** A value as the YAML parser gives it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A fragment of JSON Schema (draft-07). */
export type JsonSchema = { [keyword: string]: unknown };

/** What reading a value needs besides the value: the file, for messages, and the name a recipe without `name` takes. */
export interface ReadContext {
  readonly file: string;
  readonly fallbackName: string;
}

/**
 * One kind of value a recipe field holds. The same object checks a value,
 * normalizes it and says what it is, in JSON Schema and in the README's
 * words, so that the validator, schema.json and the README cannot drift apart.
 */
export interface Kind<T> {
  /** Checks a value that is present and returns it normalized; a fault is a RecipeError naming `field`. */
  read(value: Json, field: string, context: ReadContext): T;
  /** The value as it is written, in JSON Schema. */
  readonly schema: JsonSchema;
  /** The value's type as the README's field reference names it. */
  readonly type: string;
  /** Fields inside the value, which the reference lists as rows of their own, their names joined to the field's by `path`. */
  readonly inner?: { readonly path: string; readonly fields: FieldDocs } | undefined;
}

/** One entry of a field table: its kind, what it is for, and either that it is required or what it defaults to. */
export type Field<T = unknown> = { readonly kind: Kind<T>; readonly describe: string } & (
  | { readonly required: true }
  // Defaults are written as in YAML and read like a written value, so they pass the same checks.
  | { readonly default: Json }
  | { readonly default: (context: ReadContext) => Json; readonly defaultText: string }
);

export type Fields = { readonly [key: string]: Field };

/** What the field reference needs of a field; a variant (readiness.tcp) is neither required nor defaulted. */
export type FieldDocs = {
  readonly [key: string]: { readonly kind: Kind<unknown>; readonly describe: string; readonly required?: true; readonly default?: unknown; readonly defaultText?: string };
};

/** The normalized value of a table: every field present. */
export type Output<F extends Fields> = { -readonly [K in keyof F]: F[K]['kind'] extends Kind<infer T> ? T : never };

export function fail(context: ReadContext, field: string, problem: string, hint?: string): never {
  throw new RecipeError(context.file, field || undefined, problem, hint);
}

/** A value as a message shows what was found instead: `must be a list, not the string "nginx"`. */
export function describeValue(value: Json | undefined): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string "${value}"`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

export function joinField(field: string, key: string): string {
  return field ? `${field}.${key}` : key;
}

/** Reads one field of a mapping: the written value, else the default, else "is required". */
export function readField<T>(entry: Field<T>, value: Json | undefined, field: string, context: ReadContext): T {
  if (value !== undefined && !(value === null && 'required' in entry)) return entry.kind.read(value, field, context);
  if ('required' in entry) fail(context, field, 'is required');
  const written = typeof entry.default === 'function' ? entry.default(context) : entry.default;
  return entry.kind.read(written, field, context);
}

/** A field's schema: the kind's, with the field's description and its default when it does not depend on the recipe's file. */
export function fieldSchema(entry: FieldDocs[string]): JsonSchema {
  const fixedDefault = 'default' in entry && typeof entry.default !== 'function' ? { default: entry.default } : {};
  return { description: entry.describe, ...fixedDefault, ...entry.kind.schema };
}
