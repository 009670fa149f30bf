/** The parsed lines of an ld.so.conf: library directories and `include` globs. */
export interface LdSoConf {
  dirs: string[];
  includes: string[];
}

export function parseLdSoConf(text: string): LdSoConf {
  const conf: LdSoConf = { dirs: [], includes: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const include = line.match(/^include\s+(.+)$/);
    if (include) conf.includes.push(...include[1]!.split(/\s+/));
    else if (line.startsWith('hwcap ')) continue;
    else conf.dirs.push(...line.split(/[\s:,]+/).filter((d) => d.startsWith('/')));
  }
  return conf;
}

/**
 * The directories ld.so searches when neither RPATH, LD_LIBRARY_PATH, RUNPATH
 * nor ld.so.cache found a library. Debian's glibc puts the multiarch
 * directories first (`ld.so --help` lists them as the system search path).
 */
export function defaultLibraryDirs(multiarch: string): string[] {
  return [`/lib/${multiarch}`, `/usr/lib/${multiarch}`, '/lib', '/usr/lib'];
}
