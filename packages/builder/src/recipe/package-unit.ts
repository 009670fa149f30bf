import { TinyxError } from '../errors.js';
import { resolveInRoot } from '../resolve/root-path.js';
import type { RootView } from '../resolve/root-view.js';
import { recipeFromUnit, type DerivedFrom } from './recipe-from-unit.js';
import type { Recipe } from './recipe.js';
import { parseUnit, type SystemdUnit } from './systemd-unit.js';

/** The system unit directories, most specific first (systemd.unit(5), "Unit File Load Path"). */
export const UNIT_DIRS = ['/etc/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'] as const;

/** `tinyx build --package P` without --cmd: what the package's unit says. */
export interface UnitRecipeRequest {
  package: string;
  port?: number | undefined;
  user?: string | undefined;
  name?: string | undefined;
}

/**
 * Which unit is the package's service: `<package>.service` in a unit
 * directory, else the only non-template .service file the package's own file
 * list names. Pure; an error lists the candidates when there is no single one.
 */
export function chooseServiceUnit(pkg: string, byName: readonly string[], listed: readonly string[]): string {
  if (byName.length > 0) return byName[0]!;
  const services = [...new Set(listed.filter((p) => UNIT_DIRS.some((d) => p.startsWith(`${d}/`)) && p.endsWith('.service') && !p.endsWith('@.service')))];
  if (services.length === 1) return services[0]!;
  const bare = pkg.replace(/:.*$/, '');
  if (services.length === 0) {
    throw new TinyxError('E_NO_UNIT', `${bare} ships no systemd service unit: nothing says how to start it`, {
      kind: 'user',
      hint: `give the command line: tinyx build --package ${bare} --cmd "/usr/bin/${bare} ..."`,
    });
  }
  throw new TinyxError('E_NO_UNIT', `${bare} ships ${services.length} service units and none is named ${bare}.service: ${services.join(', ')}`, {
    kind: 'user',
    hint: `give the command line with --cmd (the ExecStart= of the one you want), or write a recipe`,
  });
}

/**
 * An umbrella unit: Type=oneshot that runs nothing of its own (ExecStart=
 * /bin/true, or none), only there to pull in the real services: Debian's
 * postgresql.service, whose generator makes it want postgresql@15-main.
 */
export function isUmbrella(unit: SystemdUnit): boolean {
  const service = unit.sections.get('Service') ?? [];
  const type = service.filter((a) => a.key === 'Type').at(-1)?.value;
  const starts = service.filter((a) => a.key === 'ExecStart').map((a) => a.value.replace(/^[-@+!:]+/, '').trim());
  return type === 'oneshot' && starts.every((s) => /^(\/usr)?\/bin\/true$/.test(s));
}

/** The unit an umbrella stands for: the one instance of a template it wants. */
export function umbrellaInstance(umbrella: string, wanted: readonly string[]): string {
  const instances = [...new Set(wanted.filter((w) => /^[^@]+@[^@]+\.service$/.test(w)))].sort();
  if (instances.length === 1) return instances[0]!;
  throw new TinyxError(
    'E_NO_UNIT',
    instances.length === 0
      ? `${umbrella} runs nothing itself (Type=oneshot, ExecStart=/bin/true) and wants no instance of a service: nothing says what to start`
      : `${umbrella} runs nothing itself and wants ${instances.length} services: ${instances.join(', ')}`,
    { kind: 'user', hint: 'give the command line of the one to run: --cmd "..." (the ExecStart= of its unit)' },
  );
}

/**
 * Derives the recipe from the unit found in the install root (`view`): the
 * unit and its EnvironmentFile= files. An umbrella unit (isUmbrella) stands
 * for the one instance of a template it wants, which `wantedBy` lists (the
 * `.wants` directories, and what the packages' generators say).
 */
export async function recipeFromInstalledUnit(
  view: RootView,
  request: UnitRecipeRequest,
  packageFiles: readonly string[],
  wantedBy: (unit: string) => Promise<string[]> = async () => [],
): Promise<{ recipe: Recipe; derivedFrom: DerivedFrom }> {
  const bare = request.package.replace(/:.*$/, '');
  const byName: string[] = [];
  for (const dir of UNIT_DIRS) if ((await resolveInRoot(view, `${dir}/${bare}.service`)).node?.kind === 'file') byName.push(`${dir}/${bare}.service`);
  // An alias is the same unit (mariadb-server lists mysql.service and mysqld.service, links to mariadb.service): each counts once, by its real file.
  const listed: string[] = [];
  for (const path of packageFiles) {
    if (!path.endsWith('.service')) continue;
    const resolved = await resolveInRoot(view, path);
    if (resolved.node?.kind === 'file' && UNIT_DIRS.some((d) => resolved.path.startsWith(`${d}/`) || resolved.path.startsWith(`/usr${d}/`))) listed.push(resolved.path);
    else if (resolved.node?.kind === 'file') listed.push(path);
  }
  const unitPath = chooseServiceUnit(request.package, byName, [...new Set(listed)]);
  const text = await readText(view, unitPath);
  let unit: SystemdUnit;
  try {
    unit = parseUnit(text, unitPath);
  } catch (error) {
    throw new TinyxError('E_RECIPE', `--package ${bare}: ${(error as Error).message}`, { kind: 'user', hint: 'give the command line: --cmd "..."' });
  }

  let umbrella: { unit: string; wanted: string } | undefined;
  if (isUmbrella(unit)) {
    const wanted = umbrellaInstance(unit.name, await wantedBy(unit.name));
    const template = wanted.replace(/@[^@]+\.service$/, '@.service');
    const templatePath = await findUnit(view, template);
    if (!templatePath) throw new TinyxError('E_NO_UNIT', `${unit.name} wants ${wanted}, but no unit directory has ${template}`, { kind: 'user', hint: 'give the command line: --cmd "..."' });
    umbrella = { unit: unit.name, wanted };
    // The template, named as the instance: its %i is the instance (15-main).
    unit = parseUnit(await readText(view, templatePath), templatePath, wanted);
  }

  const environmentFiles: Record<string, string | null> = {};
  for (const a of unit.sections.get('Service') ?? []) {
    if (a.key !== 'EnvironmentFile') continue;
    const path = a.value.replace(/^-/, '');
    const resolved = await resolveInRoot(view, path);
    environmentFiles[path] = resolved.node?.kind === 'file' ? await readText(view, resolved.path) : null;
  }

  const derived = recipeFromUnit({ package: request.package, unit, environmentFiles, port: request.port, user: request.user, name: request.name });
  if (umbrella) {
    derived.derivedFrom.unit = `${derived.derivedFrom.unit} (${umbrella.wanted})`;
    derived.derivedFrom.fields.unshift({ key: 'Wants', value: umbrella.wanted, became: `the service ${umbrella.unit} stands for (it runs nothing itself)` });
  }
  return derived;
}

/** The unit file of that name in the first unit directory that has it. */
async function findUnit(view: RootView, name: string): Promise<string | undefined> {
  for (const dir of UNIT_DIRS) if ((await resolveInRoot(view, `${dir}/${name}`)).node?.kind === 'file') return `${dir}/${name}`;
  return undefined;
}

async function readText(view: RootView, path: string): Promise<string> {
  const resolved = await resolveInRoot(view, path);
  const node = resolved.node;
  if (node?.kind !== 'file') throw new TinyxError('E_NO_UNIT', `${path} is not a file of the install root`);
  return Buffer.from(await view.read(resolved.path, 0, node.size)).toString('utf8');
}
