import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseControlText } from '../dpkg/control.js';
import { TinyxError } from '../errors.js';

/** One `deb` source of the host's apt configuration. */
export interface AptSource {
  uri: string;
  suite: string;
  components: string[];
  /** The keyring file from Signed-By, when it names a file. */
  keyring?: string;
  /** The file it was read from, for messages. */
  file: string;
}

/**
 * Reads the host's apt sources, in the order apt reads them: sources.list, then
 * sources.list.d/*.list and *.sources by name. Both the one-line format and
 * deb822 are understood; disabled entries (Enabled: no) are skipped.
 */
export async function readAptSources(etcApt = '/etc/apt'): Promise<AptSource[]> {
  const sources: AptSource[] = [];
  const main = join(etcApt, 'sources.list');
  sources.push(...parseOneLineSources(await readFile(main, 'utf8').catch(() => ''), main));
  const dir = join(etcApt, 'sources.list.d');
  const names = (await readdir(dir).catch(() => [] as string[])).sort();
  for (const name of names) {
    const file = join(dir, name);
    if (name.endsWith('.list')) sources.push(...parseOneLineSources(await readFile(file, 'utf8'), file));
    else if (name.endsWith('.sources')) sources.push(...(await parseDeb822Sources(await readFile(file, 'utf8'), file)));
  }
  return sources;
}

export function parseOneLineSources(text: string, file: string): AptSource[] {
  const sources: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line.startsWith('deb ') && !line.startsWith('deb\t')) continue;
    const words = line.split(/\s+/).slice(1);
    let keyring: string | undefined;
    if (words[0]?.startsWith('[')) {
      // Options such as [arch=amd64 signed-by=/usr/share/keyrings/x.gpg]
      const options: string[] = [];
      while (words.length > 0) {
        const word = words.shift()!;
        options.push(word);
        if (word.endsWith(']')) break;
      }
      const signedBy = options.join(' ').match(/signed-by=([^\s\]]+)/);
      if (signedBy?.[1]?.startsWith('/')) keyring = signedBy[1];
    }
    const [uri, suite, ...components] = words;
    if (uri && suite) sources.push({ uri, suite, components, file, ...(keyring ? { keyring } : {}) });
  }
  return sources;
}

export async function parseDeb822Sources(text: string, file: string): Promise<AptSource[]> {
  const sources: AptSource[] = [];
  for (const paragraph of await parseControlText(text)) {
    const types = (paragraph.get('types') ?? '').split(/\s+/);
    if (!types.includes('deb') || paragraph.get('enabled')?.trim() === 'no') continue;
    const signedBy = paragraph.get('signed-by')?.trim();
    const keyring = signedBy && signedBy.startsWith('/') && !signedBy.includes('\n') ? signedBy : undefined;
    const components = (paragraph.get('components') ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (paragraph.get('uris') ?? '').split(/\s+/).filter(Boolean)) {
      for (const suite of (paragraph.get('suites') ?? '').split(/\s+/).filter(Boolean)) {
        sources.push({ uri, suite, components, file, ...(keyring ? { keyring } : {}) });
      }
    }
  }
  return sources;
}

/**
 * The mirror and suite the base is bootstrapped from when the user gives
 * none: the host's first plain release suite (not -updates, -security or
 * -backports) that has the main component. Nothing is hard-coded, so a build
 * uses whatever mirror the host already trusts and reaches.
 */
export function pickBaseSource(sources: readonly AptSource[]): AptSource {
  const pick = sources.find(
    (s) => /^(https?|file):/.test(s.uri) && /^[a-z]+$/.test(s.suite) && s.components.includes('main') && !/security/.test(s.uri),
  );
  if (!pick) {
    throw new TinyxError('E_NO_MIRROR', 'found no Debian release suite with "main" in the host\'s apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)', {
      kind: 'user',
      hint: 'name one: tinyx build nginx --mirror http://deb.debian.org/debian --suite bookworm',
    });
  }
  return pick;
}
