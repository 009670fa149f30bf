import { readFile, rename, writeFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, parseDocument, stringify, type Document, type Node, type Scalar } from 'yaml';
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
  if ('tcp' in readiness) return { tcp: readiness.tcp.expect === undefined ? readiness.tcp.port : readiness.tcp };
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
 * Sets kernel.disable in a recipe file. Only the `disable` entry's text
 * changes: the rest of the file (comments, their alignment, flow styles) is
 * left byte for byte. A layout the splice does not read (a flow `kernel`
 * map, say) is rewritten through YAML's document model instead, which keeps
 * comments but not their columns. Either way the result is parsed back and
 * must hold exactly the list; it is written beside the file and renamed over it.
 */
export async function setRecipeKernelDisable(file: string, disable: readonly string[]): Promise<void> {
  const text = await readFile(file, 'utf8');
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new TinyxError('E_RECIPE', `${file}: ${doc.errors[0]!.message}`, { kind: 'user' });
  // What the file must read as afterwards: the same data, kernel.disable set (in its place when it had one) or gone.
  const want = (doc.toJS() ?? {}) as { kernel?: Record<string, unknown> };
  if (disable.length > 0) want.kernel = { ...want.kernel, disable: [...disable] };
  else if (want.kernel) {
    delete want.kernel.disable;
    if (Object.keys(want.kernel).length === 0) delete want.kernel;
  }
  const holdsList = (candidate: string): boolean => {
    const back = parseDocument(candidate);
    return back.errors.length === 0 && JSON.stringify(back.toJS() ?? {}) === JSON.stringify(want);
  };
  let next = spliceKernelDisable(text, doc, disable);
  if (next === undefined || !holdsList(next)) {
    if (disable.length > 0) doc.setIn(['kernel', 'disable'], doc.createNode([...disable], { flow: true }));
    else doc.deleteIn(['kernel', 'disable']);
    next = doc.toString({ lineWidth: 0 });
  }
  const staged = `${file}.tinyx-${process.pid}`;
  await writeFile(staged, next);
  await rename(staged, file);
}

/** The text with kernel.disable replaced, added or removed in place; undefined for a layout it does not read. */
function spliceKernelDisable(text: string, doc: Document, disable: readonly string[]): string | undefined {
  const flow = `[${disable.join(', ')}]`;
  const lineStart = (at: number) => text.lastIndexOf('\n', at - 1) + 1;
  const lineEnd = (at: number) => { const end = text.indexOf('\n', at); return end === -1 ? text.length : end + 1; };
  const kernel = doc.get('kernel', true);
  if (kernel === undefined) {
    if (disable.length === 0) return text;
    return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}kernel:\n  disable: ${flow}\n`;
  }
  if (!isMap(kernel) || kernel.flow) return undefined;
  const pairs = kernel.items;
  const at = pairs.findIndex((p) => isScalar(p.key) && p.key.value === 'disable');
  if (at !== -1) {
    const pair = pairs[at]!;
    const key = pair.key as Scalar;
    const value = pair.value as Node | null;
    if (!key.range || (value && !value.range)) return undefined;
    if (disable.length === 0) {
      if (pairs.length === 1) return undefined;
      const end = value?.range ? value.range[1] : key.range[1];
      return text.slice(0, lineStart(key.range[0])) + text.slice(lineEnd(Math.max(end - 1, key.range[1])));
    }
    if (!value) return `${text.slice(0, key.range[1])}: ${flow}${text.slice(text.indexOf(':', key.range[1]) + 1)}`;
    const [from, to] = value.range!;
    if (isSeq(value) && !value.flow) {
      const indent = ' '.repeat(from - lineStart(from));
      const newline = text.slice(from, to).endsWith('\n') ? '\n' : '';
      return text.slice(0, from) + disable.map((s) => `- ${s}`).join(`\n${indent}`) + newline + text.slice(to);
    }
    return text.slice(0, from) + flow + text.slice(to);
  }
  if (disable.length === 0) return text;
  const first = pairs[0]?.key as Scalar | undefined;
  const last = pairs[pairs.length - 1];
  const lastEnd = (last?.value as Node | null)?.range?.[1] ?? (last?.key as Scalar | undefined)?.range?.[1];
  if (!first?.range || lastEnd === undefined) return undefined;
  const indent = ' '.repeat(first.range[0] - lineStart(first.range[0]));
  const insertAt = lineEnd(Math.max(lastEnd - 1, first.range[0]));
  const newline = insertAt === text.length && !text.endsWith('\n') ? '\n' : '';
  return `${text.slice(0, insertAt)}${newline}${indent}disable: ${flow}\n${text.slice(insertAt)}`;
}
