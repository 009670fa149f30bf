/**
 * Debian version numbers, compared the way dpkg compares them (Debian Policy
 * 5.6.12; dpkg's lib/dpkg/version.c). Written from the specification, checked
 * against `dpkg --compare-versions` by the unit tests.
 */
import { TinyxError } from '../errors.js';

/** A version split into its three parts, as dpkg splits it. */
export interface DebianVersion {
  /** 0 when the version has no `epoch:` prefix. */
  epoch: number;
  upstream: string;
  /** '' when the version has no `-revision` suffix; dpkg treats '' and '0' as equal. */
  revision: string;
}

/** The relation operators of Depends, Pre-Depends, Breaks... */
export type RelationOperator = '<<' | '<=' | '=' | '>=' | '>>';

/**
 * The operators `satisfies` accepts: the five current ones and the obsolete
 * `<` and `>`, which dpkg still reads as `<=` and `>=`.
 */
export type AnyRelationOperator = RelationOperator | '<' | '>';

export interface ParseVersionOptions {
  /**
   * When false, accept what dpkg only warns about and still compares: an
   * upstream part that does not start with a digit, and characters outside
   * Policy's sets. Default true: reject them too.
   */
  strict?: boolean;
}

/** dpkg stores the epoch in an int. */
const MAX_EPOCH = 2147483647;

/**
 * Splits a version into epoch, upstream version and revision, and validates
 * it. Throws a TinyxError (code `E_VERSION`) for the versions dpkg refuses:
 * empty, embedded white space, a bad epoch, nothing after the colon, an empty
 * revision or upstream part; and, unless `strict: false`, for the ones dpkg
 * warns about.
 */
export function parseVersion(version: string, options: ParseVersionOptions = {}): DebianVersion {
  const strict = options.strict ?? true;
  const fail = (problem: string): never => {
    throw new TinyxError('E_VERSION', `invalid Debian version "${version}": ${problem}`, {
      hint: 'a Debian version looks like [epoch:]upstream[-revision], e.g. 1:2.36-9+deb12u4',
    });
  };

  // dpkg ignores white space around the version, not inside it.
  const text = version.trim();
  if (text === '') fail('it is empty');
  if (/\s/.test(text)) fail('it contains white space');

  let epoch = 0;
  let rest = text;
  const colon = text.indexOf(':');
  if (colon >= 0) {
    const epochText = text.slice(0, colon);
    if (!/^\d+$/.test(epochText)) fail(epochText === '' ? 'the epoch is empty' : 'the epoch is not a number');
    epoch = Number(epochText);
    if (epoch > MAX_EPOCH) fail('the epoch is too big');
    rest = text.slice(colon + 1);
    if (rest === '') fail('nothing after the colon');
  }

  // The last hyphen separates the revision, so the upstream part may contain hyphens.
  let upstream = rest;
  let revision = '';
  const hyphen = rest.lastIndexOf('-');
  if (hyphen >= 0) {
    upstream = rest.slice(0, hyphen);
    revision = rest.slice(hyphen + 1);
    if (revision === '') fail('the revision is empty');
  }
  if (upstream === '') fail('the upstream version is empty');

  // Only ASCII: the comparison below orders characters by their code the way
  // dpkg orders bytes, which it cannot do for a multi-byte character.
  if (/[^\x21-\x7e]/.test(text)) fail('it contains a character that is not printable ASCII');
  if (strict) {
    if (!/^\d/.test(upstream)) fail('the upstream version does not start with a digit');
    if (!/^[A-Za-z0-9.+~:-]+$/.test(upstream)) fail('the upstream version contains a character other than A-Za-z0-9.+~:-');
    if (!/^[A-Za-z0-9.+~]*$/.test(revision)) fail('the revision contains a character other than A-Za-z0-9.+~');
  }
  return { epoch, upstream, revision };
}

/**
 * Compares two Debian versions: negative when `a` is older than `b`, 0 when
 * dpkg considers them equal (`1.0` and `1.0-0`, `1.01` and `1.1`), positive
 * when `a` is newer. Like `dpkg --compare-versions`, it accepts the versions
 * dpkg only warns about and throws for the ones dpkg refuses.
 */
export function compareVersions(a: string, b: string): number {
  const left = parseVersion(a, { strict: false });
  const right = parseVersion(b, { strict: false });
  if (left.epoch !== right.epoch) return left.epoch < right.epoch ? -1 : 1;
  return comparePart(left.upstream, right.upstream) || comparePart(left.revision, right.revision);
}

/**
 * Whether an installed version meets a relation, e.g.
 * `satisfies('2.36-9', '>=', '2.34')`. The obsolete `<` and `>` mean `<=` and
 * `>=`, as they do for dpkg.
 */
export function satisfies(installed: string, op: AnyRelationOperator, wanted: string): boolean {
  const order = compareVersions(installed, wanted);
  switch (op) {
    case '<<':
      return order < 0;
    case '<=':
    case '<':
      return order <= 0;
    case '=':
      return order === 0;
    case '>=':
    case '>':
      return order >= 0;
    case '>>':
      return order > 0;
  }
}

const CODE_0 = 0x30;
const CODE_9 = 0x39;

/** The character code at `index`, or undefined past the end (where charCodeAt gives NaN). */
function codeAt(text: string, index: number): number | undefined {
  return index < text.length ? text.charCodeAt(index) : undefined;
}

/** False for undefined and NaN: the end of a string is not a digit. */
function isDigit(code: number | undefined): boolean {
  if (code === undefined) return false;
  return code >= CODE_0 && code <= CODE_9;
}

function isLetter(code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);
}

/**
 * Sort weight of one character of a non-digit run. `~` sorts before
 * everything, even the end of the string (so 1.0~rc1 < 1.0); the end sorts
 * before anything else; letters sort before all other characters.
 * A digit weighs 0 like the end: it ends the non-digit run.
 */
function weight(code: number | undefined): number {
  if (code === undefined || isDigit(code)) return 0;
  if (code === 0x7e) return -1;
  if (isLetter(code)) return code;
  return code + 256;
}

/**
 * Compares upstream versions or revisions: alternating runs of non-digits
 * (compared character by character with `weight`) and digits (compared as
 * numbers, so leading zeros do not count and no run is too long).
 */
function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(codeAt(a, i))) || (j < b.length && !isDigit(codeAt(b, j)))) {
      const wa = weight(codeAt(a, i));
      const wb = weight(codeAt(b, j));
      if (wa !== wb) return wa - wb;
      i++;
      j++;
    }
    while (codeAt(a, i) === CODE_0) i++;
    while (codeAt(b, j) === CODE_0) j++;
    // Equal-length digit runs compare by their first differing digit; a longer run is the larger number.
    let firstDifference = 0;
    while (isDigit(codeAt(a, i)) && isDigit(codeAt(b, j))) {
      if (firstDifference === 0) firstDifference = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(codeAt(a, i))) return 1;
    if (isDigit(codeAt(b, j))) return -1;
    if (firstDifference !== 0) return firstDifference;
  }
  return 0;
}
