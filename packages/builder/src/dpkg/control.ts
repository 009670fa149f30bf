/**
 * Debian control files (deb822: dpkg's status file, Packages, control):
 * the one adapter over the `debian-control` package. Everything else in
 * tinyx reads control data through this file and never sees that package's
 * quirks: one paragraph per parse(), multi-line values as arrays, field names
 * in their original case, and a paragraph splitter that must be fed strings.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import debianControl from 'debian-control';
import { TinyxError } from '../errors.js';

/**
 * One paragraph of a control file: a read-only map from field name to value.
 * Lookups ignore case (`get('Package')` and `get('package')` are the same
 * field, as in dpkg); iteration yields the names in lower case. A multi-line
 * value has its lines joined with '\n', each continuation line without its
 * leading white space (so a Description loses its indentation), and without
 * the empty first line of a value that starts on the next line (Conffiles).
 */
export class ControlParagraph implements ReadonlyMap<string, string> {
  readonly #fields: Map<string, string>;

  /** Field names are folded to lower case; a name given twice (in any case) keeps the last value. */
  constructor(fields: Iterable<readonly [string, string]> = []) {
    this.#fields = new Map();
    for (const [name, value] of fields) this.#fields.set(name.toLowerCase(), value);
  }

  get size(): number {
    return this.#fields.size;
  }

  /** The value of a field, whatever the case of `name`; undefined when the paragraph lacks it. */
  get(name: string): string | undefined {
    return this.#fields.get(name.toLowerCase());
  }

  has(name: string): boolean {
    return this.#fields.has(name.toLowerCase());
  }

  forEach(callback: (value: string, name: string, paragraph: ReadonlyMap<string, string>) => void, thisArg?: unknown): void {
    for (const [name, value] of this.#fields) callback.call(thisArg, value, name, this);
  }

  keys(): MapIterator<string> {
    return this.#fields.keys();
  }

  values(): MapIterator<string> {
    return this.#fields.values();
  }

  entries(): MapIterator<[string, string]> {
    return this.#fields.entries();
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.#fields.entries();
  }
}

/**
 * All paragraphs of a control file, streamed so that a large status or
 * Packages file is never held twice in memory. Throws a TinyxError naming the
 * file when it cannot be read (`E_CONTROL_READ`) or a line is malformed
 * (`E_CONTROL_SYNTAX`).
 */
export async function readControlFile(path: string): Promise<ControlParagraph[]> {
  // encoding: the read stream decodes UTF-8 across its 64 KiB chunks, which ParagraphStream cannot.
  const input = createReadStream(path, { encoding: 'utf8' });
  try {
    return await collectParagraphs(input, path);
  } catch (error) {
    if (error instanceof TinyxError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new TinyxError('E_CONTROL_READ', `${path}: cannot read the control file: ${reason}`, { cause: error });
  }
}

/**
 * All paragraphs of control text held in memory, through the same splitter as
 * `readControlFile`. `source` names the text in error messages.
 */
export async function parseControlText(text: string, source = 'control text'): Promise<ControlParagraph[]> {
  return collectParagraphs(Readable.from(text), source);
}

async function collectParagraphs(input: Readable, source: string): Promise<ControlParagraph[]> {
  const splitter = new debianControl.ParagraphStream({
    // Strings stay strings: the splitter decodes each chunk on its own, so it must never see raw bytes.
    decodeStrings: false,
    // One string per paragraph out: a byte-mode reader may merge pushed chunks.
    readableObjectMode: true,
  });
  const paragraphs: ControlParagraph[] = [];
  let number = 0;
  await pipeline(input, splitter, async (texts: AsyncIterable<string>) => {
    for await (const text of texts) {
      const paragraph = toParagraph(text, `${source}: paragraph ${++number}`);
      if (paragraph !== undefined) paragraphs.push(paragraph);
    }
  });
  return paragraphs;
}

/**
 * Checks every line before handing the paragraph to `parse`, which silently
 * drops lines it does not understand: a CRLF file or a PGP-signed one would
 * otherwise come back with fields missing. Comment lines (`#` in column 1,
 * deb822(5), as in apt's .sources files) are removed first, because `parse`
 * would read `#Key: value` as a field. Undefined for a paragraph of comments.
 */
function toParagraph(text: string, where: string): ControlParagraph | undefined {
  const lines = (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n').filter((line) => !line.startsWith('#'));
  if (lines.length === 0) return undefined;
  // Duplicates are checked here because parse() keeps only the last of them.
  const names = new Set<string>();
  lines.forEach((line, index) => {
    if (debianControl.isFieldLine(line)) {
      const name = line.slice(0, line.indexOf(':'));
      if (names.has(name.toLowerCase())) throw new TinyxError('E_CONTROL_SYNTAX', `${where}: field ${name} appears twice`);
      names.add(name.toLowerCase());
      return;
    }
    if (index > 0 && debianControl.isContinueLine(line)) return;
    const hint = line.endsWith('\r')
      ? 'the file has CRLF line endings; convert it to LF'
      : line.startsWith('-----BEGIN PGP')
        ? 'PGP-signed files (InRelease, .dsc) are not supported; strip the signature first'
        : 'each line must be "Field: value" or a continuation line starting with a space';
    throw new TinyxError('E_CONTROL_SYNTAX', `${where}: malformed line ${JSON.stringify(line)}`, { hint });
  });

  const fields = Object.entries(debianControl.parse(lines.join('\n'))).map(([name, raw]) => [name, joinValue(raw)] as const);
  return new ControlParagraph(fields);
}

function joinValue(raw: string | string[]): string {
  if (!Array.isArray(raw)) return raw.trimEnd();
  const [first = '', ...rest] = raw;
  const lines = first.trim() === '' ? rest : [first.trimEnd(), ...rest];
  return lines.join('\n');
}
