import { posix } from 'node:path';
import { RecipeError, TinyxError } from '../errors.js';
import type { Recipe } from './recipe.js';
import { environmentFiles, expandSpecifiers, parseEnvironment, parseEnvironmentFile, parseExecLine, unitValue, unitValues, type SystemdUnit } from './systemd-unit.js';
import { validateRecipe } from './validate-recipe.js';

/** What a recipe derived from a unit took from it: the manifest's `derivedFrom`. */
export interface DerivedFrom {
  /** The unit file, as a path of the image's install root. */
  unit: string;
  /** Each setting used, and what it became in the recipe. */
  fields: { key: string; value: string; became: string }[];
  /** Settings read but not carried over, and why. */
  notCarried: { key: string; value: string; why: string }[];
}

export interface UnitRecipeOptions {
  package: string;
  unit: SystemdUnit;
  /** The texts of the unit's EnvironmentFile= files, by path; null for a file the install root lacks. */
  environmentFiles: Record<string, string | null>;
  /** `--port`: a TCP probe (a unit names no port). */
  port?: number | undefined;
  /** `--user`: wins over the unit's User=. */
  user?: string | undefined;
  name?: string | undefined;
}

/**
 * Daemons that fork unless told otherwise, and how to tell them: a Type=forking
 * unit is made to run in the foreground only by one of these rules, never by
 * guessing. Each rule rewrites argv, or returns undefined when it does not apply.
 */
const FOREGROUND_RULES: { describe: string; apply(argv: string[]): string[] | undefined }[] = [
  {
    // nginx: -g 'daemon on; ...' (Debian's unit)
    describe: "-g 'daemon on;' -> 'daemon off;'",
    apply: (argv) => {
      const i = argv.findIndex((a, j) => argv[j - 1] === '-g' && /\bdaemon\s+on\s*;/.test(a));
      if (i < 0) return undefined;
      return argv.map((a, j) => (j === i ? a.replace(/\bdaemon\s+on\s*;/, 'daemon off;') : a));
    },
  },
  {
    // redis-server, and programs with the same convention
    describe: '--daemonize yes -> --daemonize no',
    apply: (argv) => {
      const i = argv.findIndex((a, j) => argv[j - 1] === '--daemonize' && a === 'yes');
      return i < 0 ? undefined : argv.map((a, j) => (j === i ? 'no' : a));
    },
  },
];

/**
 * What an ExecStartPre= line that only makes directories makes: `mkdir [-p]
 * [-m MODE] DIR...` (mode 0755 by default) or `chown USER[:GROUP] DIR...`;
 * undefined for anything else.
 */
function directoriesMadeBy(argv: readonly string[]): { mkdir: { path: string; mode: number }[]; chown?: { owner: string; paths: string[] } } | undefined {
  const program = posix.basename(argv[0] ?? '');
  if (program === 'mkdir') {
    let mode = 0o755;
    const paths: string[] = [];
    for (let i = 1; i < argv.length; i++) {
      const word = argv[i]!;
      if (word === '-p' || word === '--parents') continue;
      if (word === '-m' || word === '--mode') {
        if (!/^[0-7]{3,4}$/.test(argv[i + 1] ?? '')) return undefined;
        mode = parseInt(argv[++i]!, 8);
      } else if (/^-m[0-7]{3,4}$/.test(word)) mode = parseInt(word.slice(2), 8);
      else if (word.startsWith('/') && !word.includes('..')) paths.push(posix.normalize(word));
      else return undefined;
    }
    return paths.length > 0 ? { mkdir: paths.map((path) => ({ path, mode })) } : undefined;
  }
  if (program === 'chown' && argv.length >= 3 && /^[a-z_][\w.-]*(:[a-z_][\w.-]*)?$/.test(argv[1]!)) {
    const paths = argv.slice(2);
    if (!paths.every((p) => p.startsWith('/') && !p.includes('..'))) return undefined;
    return { mkdir: [], chown: { owner: argv[1]!.split(':')[0]!, paths: paths.map((p) => posix.normalize(p)) } };
  }
  return undefined;
}

/** Flags by which a program checks its configuration and exits (nginx -t, haproxy -c, lighttpd -tt). */
const CONFIG_TEST_FLAGS = new Set(['-t', '-tt', '-T', '-c', '--test', '--configtest', '--test-config', '--config-test', '--check', '-n', 'configtest', 'checkconfig']);

const DIRECTORY_SETTINGS: { key: string; base: string; defaultMode: number }[] = [
  { key: 'RuntimeDirectory', base: '/run', defaultMode: 0o755 },
  { key: 'StateDirectory', base: '/var/lib', defaultMode: 0o755 },
  { key: 'CacheDirectory', base: '/var/cache', defaultMode: 0o755 },
  { key: 'LogsDirectory', base: '/var/log', defaultMode: 0o755 },
];

/**
 * The recipe a package's systemd unit amounts to: ExecStart (in the
 * foreground), User, the environment (EnvironmentFile= then Environment=, as
 * systemd.exec(5) orders them), WorkingDirectory, the *Directory= settings,
 * ExecStartPre (or ExecReload) as the check when it tests the configuration.
 * The packages' tmpfiles.d directories need no recipe: every build makes
 * those of the kept packages (see planInstallMade). What cannot be carried
 * into an image is listed in `derivedFrom.notCarried`, never dropped silently.
 */
export function recipeFromUnit(options: UnitRecipeOptions): { recipe: Recipe; derivedFrom: DerivedFrom } {
  try {
    return deriveRecipe(options);
  } catch (error) {
    // A line of the unit tinyx cannot read (a quote left open, a specifier of the running system): the user's to fix, not a bug.
    if (error instanceof TinyxError) throw error;
    throw new RecipeError(`--package ${options.package} (${options.unit.path})`, undefined, (error as Error).message, `give the command line: --cmd "..."`);
  }
}

function deriveRecipe(options: UnitRecipeOptions): { recipe: Recipe; derivedFrom: DerivedFrom } {
  const { unit } = options;
  const source = `--package ${options.package} (${unit.path})`;
  const fields: DerivedFrom['fields'] = [];
  const notCarried: DerivedFrom['notCarried'] = [];
  const fail = (field: string, problem: string, hint?: string): never => {
    throw new RecipeError(source, field, problem, hint);
  };
  const expand = (text: string, key: string): string => expandSpecifiers(text, unit, key);

  // The environment: the files first, then Environment= (later assignments win).
  const env: Record<string, string> = {};
  for (const file of environmentFiles(unit)) {
    const text = options.environmentFiles[file.path];
    if (text === null || text === undefined) {
      if (!file.optional) fail('EnvironmentFile', `${file.path} is not in the install root`);
      continue;
    }
    const vars = parseEnvironmentFile(text);
    Object.assign(env, vars);
    fields.push({ key: 'EnvironmentFile', value: file.path, became: Object.keys(vars).length ? `entrypoint.env ${Object.keys(vars).join(', ')}` : 'nothing (no variable set)' });
  }
  const environment = unitValues(unit, 'Service', 'Environment');
  const fromUnit = parseEnvironment(environment, unit);
  Object.assign(env, fromUnit);
  if (environment.length > 0) fields.push({ key: 'Environment', value: environment.map((a) => a.value).join(' '), became: `entrypoint.env ${Object.keys(fromUnit).join(', ')}` });

  const starts = unitValues(unit, 'Service', 'ExecStart');
  if (starts.length === 0) fail('ExecStart', `${unit.name} has no ExecStart`, `give the command line: --cmd "..."`);
  if (starts.length > 1) fail('ExecStart', `${unit.name} has ${starts.length} ExecStart lines (Type=oneshot)`, 'give the command line of the long-running program: --cmd "..."');
  const start = parseExecLine(starts[0]!, unit, env);
  let cmd = start.argv;
  let forks = false;
  let pidFile: string | null = null;
  const type = unitValue(unit, 'Service', 'Type')?.value ?? 'simple';
  if (type === 'forking') {
    const rule = FOREGROUND_RULES.map((r) => ({ r, argv: r.apply(cmd) })).find((x) => x.argv !== undefined);
    if (rule) {
      cmd = rule.argv!;
      fields.push({ key: 'Type', value: 'forking', became: `the foreground form: ${rule.r.describe}` });
    } else {
      // No known foreground flag: /init does what systemd does, and follows the app the command leaves behind.
      forks = true;
      const pid = unitValue(unit, 'Service', 'PIDFile');
      if (pid) pidFile = posix.resolve('/run', expand(pid.value, 'PIDFile'));
      fields.push({ key: 'Type', value: 'forking', became: 'entrypoint.forks: /init follows what the command leaves running' });
      if (pid) fields.push({ key: 'PIDFile', value: pid.value, became: `entrypoint.pidFile ${pidFile}` });
    }
  } else if (type === 'oneshot') {
    fail('Type', `${unit.name} is Type=oneshot: it runs a task and exits, there is no service to run`, 'give the command line: --cmd "..."');
  }
  if (!posix.isAbsolute(cmd[0] ?? '')) fail('ExecStart', `"${cmd[0]}" is not an absolute path`);
  fields.push({ key: 'ExecStart', value: starts[0]!.value, became: `entrypoint.cmd ${JSON.stringify(cmd)}` });

  const user = options.user ?? (unitValue(unit, 'Service', 'User')?.value ? expand(unitValue(unit, 'Service', 'User')!.value, 'User') : 'root');
  if (unitValue(unit, 'Service', 'User')) fields.push({ key: 'User', value: unitValue(unit, 'Service', 'User')!.value, became: options.user ? `nothing: --user ${options.user} wins` : 'entrypoint.user' });
  const group = unitValue(unit, 'Service', 'Group');
  if (group) {
    // /init runs the app with its account's own group (start-stop-daemon -c uid:gid).
    if (group.value === user) fields.push({ key: 'Group', value: group.value, became: "the entrypoint account's own group" });
    else notCarried.push({ key: 'Group', value: group.value, why: `the app runs with the group of its account (${user})` });
  }
  if (unitValue(unit, 'Service', 'DynamicUser')?.value.match(/^(yes|true|1|on)$/)) {
    notCarried.push({ key: 'DynamicUser', value: 'yes', why: `no account is made at boot: the app runs as ${user}` });
  }

  const directories = new Map<string, { path: string; owner: string; mode: number }>();
  for (const setting of DIRECTORY_SETTINGS) {
    const modeSetting = unitValue(unit, 'Service', `${setting.key}Mode`);
    const mode = modeSetting ? parseInt(modeSetting.value, 8) : setting.defaultMode;
    if (modeSetting && !(mode >= 0 && mode <= 0o7777)) fail(`${setting.key}Mode`, `"${modeSetting.value}" is not an octal mode`);
    for (const a of unitValues(unit, 'Service', setting.key)) {
      for (const word of a.value.split(/\s+/)) {
        // "name:link" (systemd 250) makes a link too; the directory is what the app needs.
        const name = expand(word.replace(/:.*$/, ''), setting.key);
        const path = posix.join(setting.base, name);
        if (!path.startsWith(`${setting.base}/`)) fail(setting.key, `"${word}" leaves ${setting.base}`);
        directories.set(path, { path, owner: user, mode });
        fields.push({ key: setting.key, value: word, became: `directories ${path} (${user}, ${mode.toString(8).padStart(4, '0')})` });
      }
    }
  }

  // WorkingDirectory=: "-" makes a missing one harmless to systemd; "~" is the user's home, which the image may not have.
  let workdir = '/';
  const workingDirectory = unitValue(unit, 'Service', 'WorkingDirectory');
  if (workingDirectory) {
    const dir = expand(workingDirectory.value.replace(/^-/, ''), 'WorkingDirectory');
    if (dir.startsWith('/')) {
      workdir = dir;
      fields.push({ key: 'WorkingDirectory', value: workingDirectory.value, became: `entrypoint.workdir ${dir}` });
    } else notCarried.push({ key: 'WorkingDirectory', value: workingDirectory.value, why: 'the app starts in /' });
  }
  for (const key of ['AmbientCapabilities', 'CapabilityBoundingSet']) {
    const caps = unitValues(unit, 'Service', key);
    const words = caps.flatMap((a) => a.value.split(/\s+/)).filter(Boolean);
    if (key === 'AmbientCapabilities' && words.length > 0 && words.every((w) => w === 'CAP_NET_BIND_SERVICE')) {
      // What it grants, every account has in a tinyx VM: /init lets all bind ports below 1024.
      fields.push({ key, value: words.join(' '), became: 'nothing to carry: /init sets net.ipv4.ip_unprivileged_port_start=0 (as Docker does), so any account binds ports below 1024' });
      continue;
    }
    if (caps.length > 0) notCarried.push({ key, value: caps.map((a) => a.value).join(' '), why: 'recorded only: /init starts the app with the full capabilities of its account' });
  }

  // ExecStartPre: a configuration test of the same program becomes the check; anything else would have to run at boot.
  let check: string[] | null = null;
  for (const a of unitValues(unit, 'Service', 'ExecStartPre')) {
    const pre = parseExecLine(a, unit, env);
    const isTest = pre.argv[0] === start.argv[0] && pre.argv.slice(1).some((w) => CONFIG_TEST_FLAGS.has(w));
    const made = directoriesMadeBy(pre.argv);
    if (isTest && check === null) {
      check = pre.argv;
      fields.push({ key: 'ExecStartPre', value: a.value, became: `check ${JSON.stringify(pre.argv)}` });
    } else if (made) {
      // mkdir and chown before the start (mosquitto's /run/mosquitto): directories the image has from the start.
      for (const dir of made.mkdir) directories.set(dir.path, { path: dir.path, owner: directories.get(dir.path)?.owner ?? 'root', mode: dir.mode });
      for (const path of made.chown?.paths ?? []) {
        const known = directories.get(path);
        if (known) directories.set(path, { ...known, owner: made.chown!.owner });
      }
      const touched = [...made.mkdir.map((d) => d.path), ...(made.chown?.paths ?? [])].filter((p) => directories.has(p));
      fields.push({ key: 'ExecStartPre', value: a.value, became: `directories ${[...new Set(touched)].map((p) => { const d = directories.get(p)!; return `${p} (${d.owner}, ${d.mode.toString(8).padStart(4, '0')})`; }).join(', ')}` });
    } else {
      notCarried.push({ key: 'ExecStartPre', value: a.value, why: 'not a configuration test of the program: /init runs only the app' });
    }
  }

  // No test before the start: a reload that tests the configuration first (haproxy's `-c`) is one too.
  if (check === null) {
    for (const a of unitValues(unit, 'Service', 'ExecReload')) {
      const reload = parseExecLine(a, unit, env);
      if (reload.argv[0] === start.argv[0] && reload.argv.slice(1).some((w) => CONFIG_TEST_FLAGS.has(w))) {
        check = reload.argv;
        fields.push({ key: 'ExecReload', value: a.value, became: `check ${JSON.stringify(reload.argv)} (it tests the configuration)` });
        break;
      }
    }
  }

  const data: Record<string, unknown> = {
    name: options.name ?? options.package.replace(/:.*$/, ''),
    description: unitValue(unit, 'Unit', 'Description')?.value ?? '',
    packages: [options.package],
    entrypoint: { cmd, user, env, workdir, forks, pidFile },
    directories: [...directories.values()].map((d) => ({ ...d, mode: d.mode.toString(8).padStart(4, '0') })),
    kernel: { features: ['net', 'unix', 'epoll', 'eventfd', 'futex', 'file-locking', 'shmem'] },
    check,
  };
  if (options.port !== undefined) data.readiness = { tcp: options.port };
  const recipe: Recipe = validateRecipe(data, source, options.package);
  return { recipe, derivedFrom: { unit: unit.path, fields, notCarried } };
}
