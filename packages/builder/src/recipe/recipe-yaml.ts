import { readFile, rename, writeFile } from 'node:fs/promises';
import { parseDocument, stringify } from 'yaml';
import { TinyxError } from '../errors.js';
import type { DerivedFrom } from './recipe-from-unit.js';
import type { Recipe } from './recipe.js';

/**
 * A recipe as the YAML of a recipe file (what parseRecipe reads back to the
 * same recipe), headed by comments that say where each setting came from;
 * with `schema` (a path or URL of recipes/schema.json), first the comment
 * that points editors at it.
 */
export function recipeToYaml(recipe: Recipe, derivedFrom?: DerivedFrom, options: { schema?: string } = {}): string {
  const data: Record<string, unknown> = {
    name: recipe.name,
    ...(recipe.description ? { description: recipe.description } : {}),
    packages: recipe.packages,
    entrypoint: {
      cmd: recipe.entrypoint.cmd,
      user: recipe.entrypoint.user,
      ...(Object.keys(recipe.entrypoint.env).length > 0 ? { env: recipe.entrypoint.env } : {}),
      ...(recipe.entrypoint.workdir !== '/' ? { workdir: recipe.entrypoint.workdir } : {}),
      ...(recipe.entrypoint.forks ? { forks: true } : {}),
      ...(recipe.entrypoint.pidFile ? { pidFile: recipe.entrypoint.pidFile } : {}),
    },
    ...(recipe.users.length > 0 ? { users: recipe.users } : {}),
    ...(recipe.include.length > 0 ? { include: recipe.include } : {}),
    ...(recipe.directories.length > 0 ? { directories: recipe.directories.map((d) => ({ path: d.path, owner: d.owner, mode: d.mode.toString(8).padStart(4, '0') })) } : {}),
    ...(recipe.dlopen.length > 0 ? { dlopen: recipe.dlopen } : {}),
    readiness: recipe.readiness ? readinessYaml(recipe.readiness) : null,
    kernel: { features: recipe.kernel.features, ...(recipe.kernel.disable.length > 0 ? { disable: recipe.kernel.disable } : {}) },
    ...(recipe.fixups.length > 0 ? { fixups: recipe.fixups } : {}),
    ...(recipe.check ? { check: recipe.check } : {}),
  };
  const header: string[] = options.schema ? [`yaml-language-server: $schema=${options.schema}`] : [];
  if (derivedFrom) {
    header.push(`Derived by tinyx from ${derivedFrom.unit}: edit freely.`);
    for (const f of derivedFrom.fields) header.push(`  ${f.key}=${f.value} -> ${f.became}`);
    for (const n of derivedFrom.notCarried) header.push(`  not carried over: ${n.key}=${n.value} (${n.why})`);
  }
  if (!recipe.readiness) header.push('readiness: null: /init says "ready" once the app has started; give a port (readiness: { tcp: PORT }) to wait until it listens.');
  const comments = header.map((line) => `# ${line}`.trimEnd()).join('\n');
  return `${comments}${comments ? '\n' : ''}${stringify(data, { lineWidth: 0 })}`;
}

function readinessYaml(readiness: NonNullable<Recipe['readiness']>): unknown {
  if ('tcp' in readiness) return { tcp: readiness.tcp.port };
  if ('http' in readiness) return { http: readiness.http };
  return { console: readiness.console.line };
}

/** Writes a new file; one that exists is never overwritten (tinyx did not write it). */
export async function writeNewFile(path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    throw new TinyxError('E_EXISTS', `${path} exists: tinyx does not overwrite a file it did not write`, { kind: 'user', hint: 'remove it, or give another path with --out' });
  }
}

/**
 * Sets kernel.disable in a recipe file, keeping its comments and the rest of
 * its text (YAML's document model); written beside it and renamed over it.
 */
export async function setRecipeKernelDisable(file: string, disable: readonly string[]): Promise<void> {
  const doc = parseDocument(await readFile(file, 'utf8'));
  if (doc.errors.length > 0) throw new TinyxError('E_RECIPE', `${file}: ${doc.errors[0]!.message}`, { kind: 'user' });
  if (disable.length > 0) doc.setIn(['kernel', 'disable'], doc.createNode([...disable], { flow: true }));
  else doc.deleteIn(['kernel', 'disable']);
  const staged = `${file}.tinyx-${process.pid}`;
  await writeFile(staged, doc.toString({ lineWidth: 0, flowCollectionPadding: false }));
  await rename(staged, file);
}
