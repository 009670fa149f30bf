/** The dynamic-linking facts of one ELF object, as `objdump -p` prints them. */
export interface DynamicSection {
  needed: string[];
  rpath: string[];
  runpath: string[];
  soname: string | undefined;
  /** False for a static executable (no dynamic section at all). */
  dynamic: boolean;
}

/**
 * Parses `objdump -p` output. The "Dynamic Section:" block lists NEEDED,
 * RPATH, RUNPATH and SONAME one per line; RPATH and RUNPATH hold a
 * colon-separated list of directories.
 */
export function parseObjdumpPrivateHeaders(text: string): DynamicSection {
  const result: DynamicSection = { needed: [], rpath: [], runpath: [], soname: undefined, dynamic: false };
  let inDynamic = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('Dynamic Section:')) {
      inDynamic = true;
      result.dynamic = true;
      continue;
    }
    if (!inDynamic) continue;
    if (line.trim() === '') {
      inDynamic = false;
      continue;
    }
    const match = line.match(/^\s+([A-Z_0-9]+)\s+(.*?)\s*$/);
    if (!match) continue;
    const [, tag, value = ''] = match;
    if (tag === 'NEEDED') result.needed.push(value);
    else if (tag === 'RPATH') result.rpath.push(...value.split(':').filter(Boolean));
    else if (tag === 'RUNPATH') result.runpath.push(...value.split(':').filter(Boolean));
    else if (tag === 'SONAME') result.soname = value;
  }
  return result;
}

/** Expands $ORIGIN, $LIB and $PLATFORM in an RPATH/RUNPATH entry, as ld.so does. */
export function expandDynamicStringTokens(entry: string, origin: string, multiarch: string): string {
  return entry
    .replace(/\$(\{ORIGIN\}|ORIGIN)/g, origin)
    .replace(/\$(\{LIB\}|LIB)/g, `lib/${multiarch}`)
    .replace(/\$(\{PLATFORM\}|PLATFORM)/g, multiarch.split('-')[0] ?? 'x86_64');
}
