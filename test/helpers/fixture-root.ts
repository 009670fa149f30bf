import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { RootNode, RootView } from '@tinyx/builder/internals';

/** A path under test/fixtures/, from the compiled test's place in test/dist/. */
export function fixturePath(relative: string): string {
  return fileURLToPath(new URL(`../../fixtures/${relative}`, import.meta.url));
}

interface Recording {
  lstat: Record<string, RootNode | null>;
  readDir: Record<string, string[]>;
  read: Record<string, Record<string, string>>;
  objdump: Record<string, string>;
}

/**
 * A RootView that replays what the real planner read from a real nginx
 * install root (recorded by scripts/capture-plan-fixture.js): lstat results,
 * the bytes it read, and real `objdump -p` texts. A question the recording
 * cannot answer throws, so a planner that starts reading new paths shows up
 * here instead of silently seeing "no such file" (unless `lenient`).
 */
export async function recordedRoot(options: { lenient?: boolean } = {}, dir = 'resolve'): Promise<RootView & { overlay(path: string, node: RootNode | null): void }> {
  const recording = JSON.parse(await readFile(fixturePath(`${dir}/root.json`), 'utf8')) as Recording;
  const overrides = new Map<string, RootNode | null>();
  return {
    overlay(path, node) {
      overrides.set(path, node);
    },
    async lstat(path) {
      if (overrides.has(path)) return overrides.get(path) ?? undefined;
      if (!(path in recording.lstat)) {
        // Lenient: a path the real run never asked about is taken as absent (for tests that remove files).
        if (options.lenient) return undefined;
        throw new Error(`fixture: lstat(${path}) was not recorded`);
      }
      return recording.lstat[path] ?? undefined;
    },
    async readDir(path) {
      const names = recording.readDir[path];
      if (!names) throw new Error(`fixture: readDir(${path}) was not recorded`);
      return names;
    },
    async read(path, offset, length) {
      const chunk = recording.read[path]?.[`${offset}+${length}`];
      if (chunk === undefined) throw new Error(`fixture: read(${path}, ${offset}, ${length}) was not recorded`);
      return Buffer.from(chunk, 'base64');
    },
    async objdump(path) {
      const file = recording.objdump[path];
      if (!file) throw new Error(`fixture: objdump -p ${path} was not recorded`);
      return readFile(fixturePath(`${dir}/${file}`), 'utf8');
    },
  };
}

export async function recordedPackages(dir = 'resolve'): Promise<{ statusFile: string; fileLists: Map<string, string[]> }> {
  const lists = JSON.parse(await readFile(fixturePath(`${dir}/lists.json`), 'utf8')) as Record<string, string[]>;
  return { statusFile: fixturePath(`${dir}/status`), fileLists: new Map(Object.entries(lists)) };
}
