import { suggest } from './suggest.js';
import { describeValue, fail, type Json, type Kind, type ReadContext } from './value-kind.js';

function readString(value: Json, field: string, context: ReadContext): string {
  if (typeof value !== 'string') fail(context, field, `must be a string, not ${describeValue(value)}`);
  return value;
}

export const text: Kind<string> = { type: 'string', schema: { type: 'string' }, read: readString };

export const nonEmptyText: Kind<string> = {
  type: 'non-empty string',
  schema: { type: 'string', minLength: 1 },
  read(value, field, context) {
    const line = readString(value, field, context);
    if (!line) fail(context, field, 'must not be empty');
    return line;
  },
};

/** A string matching `pattern`; `problem` says what is wrong with one that does not. */
export function matching(options: { pattern: RegExp; type: string; problem: (value: string) => string; hint?: string }): Kind<string> {
  return {
    type: options.type,
    schema: { type: 'string', pattern: options.pattern.source },
    read(value, field, context) {
      const string = readString(value, field, context);
      if (!options.pattern.test(string)) fail(context, field, options.problem(string), options.hint);
      return string;
    },
  };
}

/** A path of the image, with trailing slashes dropped; ".." could climb out of the install root. */
export const absolutePath: Kind<string> = {
  type: 'absolute path',
  schema: { type: 'string', pattern: '^/(?!(?:.*/)?\\.\\.(?:/|$))' },
  read(value, field, context) {
    const path = readString(value, field, context);
    if (!path.startsWith('/')) fail(context, field, `"${path}" must be an absolute path`);
    if (path.split('/').includes('..')) fail(context, field, `"${path}" must not contain ".."`);
    return path.length > 1 ? path.replace(/\/+$/, '') : path;
  },
};

export const flag: Kind<boolean> = {
  type: 'true or false',
  schema: { type: 'boolean' },
  read(value, field, context) {
    if (typeof value !== 'boolean') fail(context, field, `must be true or false, not ${describeValue(value)}`);
    return value;
  },
};

export const port: Kind<number> = {
  type: 'port 1-65535',
  schema: { type: 'integer', minimum: 1, maximum: 65535 },
  read(value, field, context) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
      fail(context, field, `must be a port number 1-65535, not ${describeValue(value)}`);
    }
    return value;
  },
};

/** A regular expression as the fix-ups apply it (JavaScript's, multi-line). */
export const regex: Kind<string> = {
  type: 'regular expression',
  schema: { type: 'string', format: 'regex' },
  read(value, field, context) {
    const source = readString(value, field, context);
    try {
      new RegExp(source, 'm');
    } catch (error) {
      fail(context, field, `is not a valid regular expression: ${(error as Error).message}`);
    }
    return source;
  },
};

/**
 * A file mode, as octal text. YAML reads 0750 as the decimal 750 and "0750" as
 * text: both are taken as octal digits. JSON Schema cannot look at a number's
 * digits, so there it is only an integer up to 7777.
 */
export const octalMode: Kind<number> = {
  type: 'octal mode',
  schema: { anyOf: [{ type: 'string', pattern: '^0?[0-7]{3,4}$' }, { type: 'integer', minimum: 0, maximum: 7777 }] },
  read(value, field, context) {
    const digits = typeof value === 'number' ? String(value) : readString(value, field, context);
    if (!/^0?[0-7]{3,4}$/.test(digits)) fail(context, field, `"${digits}" is not an octal mode`, 'write it as a string, for example "0750"');
    return parseInt(digits, 8);
  },
};

/** An environment value: YAML reads PORT: 8080 as a number, which the environment holds as text. */
export const envValue: Kind<string> = {
  type: 'string or number',
  schema: { type: ['string', 'number'] },
  read: (value, field, context) => (typeof value === 'number' ? String(value) : readString(value, field, context)),
};

/** One name of a closed list (a kernel feature), with the list and a close match in the hint. */
export function oneOf<V extends string>(values: readonly V[], noun: string): Kind<V> {
  return {
    type: `${noun} name`,
    schema: { type: 'string', enum: values },
    read(value, field, context) {
      const name = readString(value, field, context);
      if (!(values as readonly string[]).includes(name)) fail(context, field, `unknown ${noun} "${name}"`, `known ${noun}s: ${values.join(', ')}${suggest(name, values)}`);
      return name as V;
    },
  };
}
