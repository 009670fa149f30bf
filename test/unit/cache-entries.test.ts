import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cache } from '@tinyx/builder/internals';

// A cache entry is published whole (meta.json last, then a rename) and
// checked on use against the contents recorded then: a damaged one is
// removed and reported, never served. The integration tier damages real
// entries (a kernel, a layer, a compressed archive) and rebuilds them.

async function scratch(t: { teardown(f: () => Promise<void>): void }): Promise<Cache & { discarded: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-cache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const discarded: string[] = [];
  return Object.assign(new Cache(dir, (entry, problem) => discarded.push(`${entry}: ${problem}`)), { discarded });
}

async function publishFiles(cache: Cache, kind: 'kernels' | 'layers', files: Record<string, string>): Promise<string> {
  const temp = await cache.makeTemp(kind);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(temp, name, '..'), { recursive: true });
    await writeFile(join(temp, name), text);
  }
  return cache.publish(kind, 'k1', temp, { made: 'by the test' });
}

test('a kernel entry whose file was truncated is removed, reported and not served', async (t) => {
  const cache = await scratch(t);
  const dir = await publishFiles(cache, 'kernels', { bzImage: 'kernel bytes', config: 'CONFIG_X=y' });
  t.is(await cache.lookup('kernels', 'k1'), dir, 'intact: served');
  await truncate(join(dir, 'bzImage'), 3);
  t.is(await cache.lookup('kernels', 'k1'), undefined);
  t.deepEqual(cache.discarded, ['kernels/k1: bzImage is not what was published (sha256 differs)']);
  t.deepEqual(await readdir(join(cache.dir, 'kernels')), [], 'the damaged entry is gone');
  t.deepEqual(await readdir(join(cache.dir, 'tmp')), []);
});

test('a layer with a file gone or shortened is removed; an intact one is served', async (t) => {
  const cache = await scratch(t);
  const dir = await publishFiles(cache, 'layers', { 'upper/etc/a.conf': 'aaaa', 'upper/usr/bin/app': 'elf' });
  t.is(await cache.lookup('layers', 'k1'), dir);
  await rm(join(dir, 'upper/usr/bin/app'));
  t.is(await cache.lookup('layers', 'k1'), undefined);
  t.regex(cache.discarded[0]!, /^layers\/k1: \d+ entries were published, \d+ are there$/);

  const again = await publishFiles(cache, 'layers', { 'upper/etc/a.conf': 'aaaa' });
  await writeFile(join(again, 'upper/etc/a.conf'), 'a');
  t.is(await cache.lookup('layers', 'k1'), undefined);
  t.regex(cache.discarded[1]!, /its files held 4 bytes, they hold 1/);
});

test('an entry without meta.json (a build killed before it published) is never found', async (t) => {
  const cache = await scratch(t);
  await mkdir(join(cache.dir, 'kernels', 'k1'), { recursive: true });
  await writeFile(join(cache.dir, 'kernels', 'k1', 'bzImage'), 'half');
  t.is(await cache.lookup('kernels', 'k1'), undefined);
});

test('sweepStale removes what dead builds left under tmp/, and nothing of a live one', async (t) => {
  const cache = await scratch(t);
  const live = await cache.makeTemp('install');
  const child = spawn('true');
  const deadPid = await new Promise<number>((resolve) => child.on('exit', () => resolve(child.pid!)));
  await mkdir(join(cache.dir, 'tmp', `kernel-${deadPid}-0badc0de`, 'build'), { recursive: true });
  await mkdir(join(cache.dir, 'tmp', 'not-a-build-dir'));
  t.deepEqual(await cache.sweepStale(), [`kernel-${deadPid}-0badc0de`]);
  t.deepEqual((await readdir(join(cache.dir, 'tmp'))).sort(), [live.split('/').pop()!, 'not-a-build-dir'].sort());
});
