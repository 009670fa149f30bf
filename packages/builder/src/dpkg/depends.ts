/**
 * Relationship fields of binary packages (Debian Policy 7.1): Depends and
 * Pre-Depends, a comma-separated list of groups of `|`-separated
 * alternatives, and Provides.
 */
import { TinyxError } from '../errors.js';
import { parseVersion, type RelationOperator } from './version.js';

/** A version constraint such as `(>= 2.34)`. */
export interface VersionRelation {
  op: RelationOperator;
  version: string;
}

/** One alternative of a dependency group: `python3:any (>= 3.9~)`. */
export interface Dependency {
  /** The package name without its architecture qualifier. */
  name: string;
  /** The qualifier after the colon: `any`, `native`, or an architecture such as `amd64`. */
  arch?: string;
  relation?: VersionRelation;
}

/** Alternatives, in the order written: any one of them satisfies the group. */
export type DependencyGroup = Dependency[];

/** A name a package Provides, with the version only a versioned Provides gives. */
export interface ProvidedName {
  name: string;
  version?: string;
}

// Policy 5.6.1: lower case, starting with a letter or digit. Single-character
// names are outside Policy but dpkg accepts them, so this does too.
const NAME = '[a-z0-9][a-z0-9+.-]*';
const ARCH = '[a-z0-9][a-z0-9-]*';
// The version excludes the operator characters so that `(>= )` cannot be
// read as operator `>` and version `=`.
const ALTERNATIVE = new RegExp(
  `^(${NAME})(?::(${ARCH}))?(?:\\s*\\(\\s*(<<|<=|>=|>>|=|<|>)\\s*([^\\s()<=>]+)\\s*\\))?$`,
);

/**
 * Parses a Depends or Pre-Depends value, e.g.
 * `libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any`. White space,
 * including the newlines of a folded field, may appear around every item.
 * The obsolete operators `<` and `>` come back as `<=` and `>=`, their
 * meaning for dpkg. An empty value gives no groups. Throws a TinyxError
 * (`E_DEPENDS`) that quotes the text and the item at fault; `context` (e.g.
 * `libc6: Depends`) prefixes the message.
 */
export function parseDepends(text: string, context?: string): DependencyGroup[] {
  if (text.trim() === '') return [];
  return text.split(',').map((group) => group.split('|').map((item) => parseAlternative(item, text, context)));
}

/**
 * Parses a Provides value, e.g. `libgcc1 (= 1:12.2.0-14), libz1`. Only `=`
 * relations and no alternatives are allowed there. Throws like `parseDepends`.
 */
export function parseProvides(text: string, context?: string): ProvidedName[] {
  if (text.trim() === '') return [];
  return text.split(',').map((item) => {
    if (item.includes('|')) fail(text, context, `alternatives ("|") are not allowed in Provides`);
    const provided = parseAlternative(item, text, context);
    if (provided.arch !== undefined) fail(text, context, `"${item.trim()}": Provides takes no architecture qualifier`);
    if (provided.relation === undefined) return { name: provided.name };
    if (provided.relation.op !== '=') fail(text, context, `"${item.trim()}": Provides allows only "=" relations`);
    return { name: provided.name, version: provided.relation.version };
  });
}

/** Writes a group back in control-file syntax, e.g. for a message. */
export function formatDependencyGroup(group: DependencyGroup): string {
  return group
    .map((dep) => {
      const name = dep.arch === undefined ? dep.name : `${dep.name}:${dep.arch}`;
      return dep.relation === undefined ? name : `${name} (${dep.relation.op} ${dep.relation.version})`;
    })
    .join(' | ');
}

function parseAlternative(item: string, text: string, context: string | undefined): Dependency {
  const trimmed = item.trim();
  if (trimmed === '') fail(text, context, 'empty item (a doubled or trailing "," or "|")');
  const match = ALTERNATIVE.exec(trimmed);
  if (!match) {
    const problem = /(\[[^\]]*\]|<[^>]*>)$/.test(trimmed.replace(/\(.*?\)/, '').trim())
      ? 'architecture and build-profile restrictions belong only in Build-Depends'
      : 'expected "name[:arch] [(op version)]"';
    fail(text, context, `"${trimmed}": ${problem}`);
  }
  const [, name = '', arch, rawOp, version] = match;
  const dependency: Dependency = { name };
  if (arch !== undefined) dependency.arch = arch;
  if (rawOp !== undefined && version !== undefined) {
    try {
      // Lenient like dpkg, which only warns about versions outside Policy.
      parseVersion(version, { strict: false });
    } catch (error) {
      fail(text, context, `"${trimmed}": ${error instanceof Error ? error.message : String(error)}`);
    }
    dependency.relation = { op: normaliseOperator(rawOp), version };
  }
  return dependency;
}

function normaliseOperator(op: string): RelationOperator {
  if (op === '<') return '<=';
  if (op === '>') return '>=';
  return op as RelationOperator;
}

function fail(text: string, context: string | undefined, problem: string): never {
  const field = JSON.stringify(text.replace(/\s+/g, ' ').trim());
  throw new TinyxError('E_DEPENDS', `${context ? `${context}: ` : ''}cannot parse relationship field ${field}: ${problem}`);
}
