import { KERNEL_FEATURES, type KernelFeature } from '../kernel-features.js';
import { command, list, mapping, nullable, record, shorthand, variant, variants } from './compound-kinds.js';
import { absolutePath, envValue, flag, matching, nonEmptyText, octalMode, oneOf, port, regex, text } from './scalar-kinds.js';
import { fail, type Fields } from './value-kind.js';

/** A Debian package name (Debian Policy 5.6.1), optionally with an architecture qualifier. */
const packageName = matching({ pattern: /^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$/, type: 'Debian package name', problem: (name) => `"${name}" is not a Debian package name` });

const imageName = matching({
  pattern: /^[a-z0-9][a-z0-9._-]*$/,
  type: 'image name',
  problem: (name) => `"${name}" is not a valid image name`,
  hint: 'use lower-case letters, digits, ".", "_" and "-"',
});

/** A Kconfig symbol as a .config names it after CONFIG_. */
export const KCONFIG_SYMBOL = /^(?!CONFIG_)[A-Z0-9_]+$/;

const kconfigSymbol = matching({
  pattern: KCONFIG_SYMBOL,
  type: 'Kconfig symbol',
  problem: (symbol) => `"${symbol}" is not a Kconfig symbol`,
  hint: 'write it as in a .config without CONFIG_: upper-case letters, digits and "_" (TMPFS, not CONFIG_TMPFS or tmpfs)',
});

const account = matching({ pattern: /^[a-z_][a-z0-9_-]*\$?$/, type: 'account name', problem: (name) => `"${name}" is not a user name` });

const urlPath = matching({ pattern: /^\//, type: 'URL path', problem: (path) => `"${path}" must start with "/"` });

const ENTRYPOINT = mapping(
  {
    cmd: {
      kind: command({ namesProgram: true }),
      required: true,
      describe: "The command: argv as a list, or one string split as a shell would (quotes, no expansion). argv[0] is an absolute path or a command found on the image's PATH.",
    },
    user: { kind: account, default: 'root', describe: 'The account the application starts as.' },
    env: { kind: record({ pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, type: 'variable name', problem: 'is not a valid environment variable name' }, envValue), default: {}, describe: 'Its environment, NAME: value.' },
    workdir: { kind: absolutePath, default: '/', describe: "The directory it starts in (systemd's WorkingDirectory=): a directory of the image." },
    forks: {
      kind: flag,
      default: false,
      describe: "The command puts the app in the background and exits (systemd's Type=forking): /init waits for it, then follows the app by `pidFile` or, without one, by every process the command left running.",
    },
    pidFile: { kind: nullable(absolutePath), default: null, describe: "The file the forked app writes its pid to (systemd's PIDFile=); only with `forks`." },
  },
  {
    rule: {
      check(entrypoint, field, context) {
        if (entrypoint.pidFile && !entrypoint.forks) fail(context, `${field}.pidFile`, 'is only for an app whose command forks', 'set forks: true, or drop pidFile');
      },
      schema: { if: { properties: { pidFile: { type: 'string' } }, required: ['pidFile'] }, then: { properties: { forks: { const: true } }, required: ['forks'] } },
    },
  },
);

const DIRECTORY = mapping({
  path: { kind: absolutePath, required: true, describe: 'The directory.' },
  owner: { kind: account, default: 'root', describe: "Its owner: an account of the image (from the install root's /etc/passwd)." },
  mode: { kind: octalMode, default: '0755', describe: 'Its mode, in octal; write it as a string ("0750"), though YAML\'s number 0750 is taken as octal too.' },
});

const TCP_PROBE = mapping(
  {
    port: { kind: port, required: true, describe: 'The port the app listens on.' },
    send: {
      kind: nullable(nonEmptyText),
      default: null,
      describe: 'Written once connected, as it stands (YAML\'s double quotes write "PING\\r\\n"); leave it out for a server that speaks first (a banner).',
    },
    expect: {
      kind: nullable(nonEmptyText),
      default: null,
      describe: "A text the app's answer must contain (`+PONG`). Without it a connection is enough, which the guest's kernel accepts before the app reads a byte.",
    },
  },
  {
    rule: {
      check(tcp, field, context) {
        if (tcp.send !== null && tcp.expect === null) fail(context, `${field}.send`, 'needs `expect`: the text the answer must contain', 'add expect: TEXT (for Redis, send: "PING\\r\\n" and expect: "+PONG")');
      },
      schema: { dependencies: { send: ['expect'] } },
    },
  },
);

const READINESS = variants({
  type: 'mapping',
  given: {},
  one: {
    tcp: variant({
      kind: shorthand('port', TCP_PROBE, 'port, or a mapping'),
      describe: 'Ready when the app accepts a TCP connection on this port; as a mapping of `port`, `send` and `expect`, when it also answers `send` with a text that contains `expect`.',
      build: ({ port, send, expect }) => ({ tcp: { port, ...(send !== null ? { send } : {}), ...(expect !== null ? { expect } : {}) } }),
    }),
    http: variant({
      kind: mapping({
        port: { kind: port, required: true, describe: 'The port of the HTTP server.' },
        path: { kind: urlPath, default: '/', describe: 'The path the probe gets.' },
      }),
      describe: 'Ready when the app answers an HTTP GET of `path` on `port`.',
      build: (http) => ({ http }),
    }),
    console: variant({ kind: nonEmptyText, describe: 'Ready when the app prints a line that contains this text on the console.', build: (line) => ({ console: { line } }) }),
  },
  none: 'names no probe',
  many: (names) => `names ${names.length} probes (${names.join(', ')})`,
  hint: 'give exactly one of: tcp: PORT (or tcp: { port: PORT, send: TEXT, expect: TEXT }), http: { port: PORT, path: /PATH }, console: "a line the app prints"',
});

const FIXUP = variants({
  type: 'mapping',
  given: { file: { kind: absolutePath, required: true, describe: 'The file of the image to edit.' } },
  one: {
    'delete-lines': variant({ kind: regex, describe: 'Drops every line of the file that matches this regular expression.', build: (deleteLines) => ({ deleteLines }) }),
    replace: variant({
      kind: regex,
      describe: 'Replaces every match of this regular expression in the file by `with`.',
      companions: { with: { kind: text, required: true, describe: 'The text that replaces each match of `replace`.' } },
      build: (replace, { with: withText }) => ({ replace, with: withText }),
    }),
    write: variant({ kind: text, describe: 'Writes the file with exactly this content, creating it if needed.', build: (write) => ({ write }) }),
  },
  none: 'names no edit',
  many: (names) => `names ${names.join(' and ')} at once`,
  hint: 'give exactly one of: delete-lines: REGEX, replace: REGEX with: TEXT, write: TEXT',
});

/**
 * Every field of a recipe, one entry each: the validator, the `Recipe` type,
 * the defaults, recipes/schema.json and the README's field reference all
 * come from this table (scripts/recipe-schema.js writes the last two).
 */
export const RECIPE_FIELDS = {
  name: {
    kind: imageName,
    default: (context) => context.fallbackName,
    defaultText: "the file's name (nginx.yaml: `nginx`)",
    describe: 'The name of the image: lower-case letters, digits, ".", "_" and "-".',
  },
  description: { kind: text, default: '', describe: 'One line about the image.' },
  packages: {
    kind: list(packageName, { min: { count: 1, problem: 'must name at least one Debian package' } }),
    required: true,
    describe: 'The Debian packages to install; the entry binary comes from one of them.',
  },
  entrypoint: { kind: ENTRYPOINT, required: true, describe: 'How the application starts.' },
  users: { kind: list(account), default: [], describe: "Further accounts the application switches to (nginx's workers run as www-data)." },
  include: { kind: list(absolutePath), default: [], describe: 'Paths copied from the install root as they are, beyond what the resolver finds (postinst output, data).' },
  directories: {
    kind: list(shorthand('path', DIRECTORY, 'absolute path, or a mapping'), { type: 'list of absolute paths or mappings' }),
    default: [],
    describe: 'Directories created empty in the image (run, log, state directories): a path, or a mapping of path, owner and mode.',
  },
  dlopen: {
    kind: list(absolutePath),
    default: [],
    describe: 'Shared objects the application dlopen()s, which no NEEDED entry names; globs allowed in the last component.',
  },
  readiness: {
    kind: nullable(READINESS),
    default: null,
    describe: 'How the toolstack and /init tell that the application is ready: exactly one of `tcp`, `http`, `console`. Null: ready once the app has started.',
  },
  kernel: {
    kind: mapping({
      features: {
        kind: list(oneOf(Object.keys(KERNEL_FEATURES) as KernelFeature[], 'feature'), { distinctSorted: true }),
        default: [],
        describe: `The kernel features the application needs, by name: ${Object.keys(KERNEL_FEATURES).join(', ')}.`,
      },
      disable: {
        kind: list(kconfigSymbol, { distinctSorted: true }),
        default: [],
        describe:
          "Kconfig options this app's kernel leaves out, by symbol without CONFIG_ (TMPFS, SIGNALFD): applied after every fragment and feature, so what the app needs must not be among them (its readiness probe then fails).",
      },
    }),
    default: {},
    describe: 'The kernel the image boots.',
  },
  fixups: {
    kind: list(FIXUP, { type: 'list of mappings' }),
    default: [],
    describe: 'Edits of files of the image, applied after the files are resolved: each names a `file` and exactly one of `delete-lines`, `replace` (with `with`), `write`.',
  },
  check: {
    kind: nullable(command({ namesProgram: false })),
    default: null,
    describe: "A command run in the image's root by the verify step to prove the closure is complete (`nginx -t`); a list, or a string split as `cmd` is.",
  },
} as const satisfies Fields;

/** A recipe's mapping. The packages are read first: a name made from a bad package name (--package Bad_Name) is the package's fault. */
export const RECIPE = mapping(RECIPE_FIELDS, { readFirst: ['packages'] });
