import test from 'ava';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyPatch, kernelPatches, patchedId, removeTree } from '@tinyx/builder/internals';

// tinyx's kernel patches: found in name order, named in the source id (so in
// every cache key and the manifest), applied with the real patch(1) exactly
// or refused by name.

const work = await mkdtemp(join(tmpdir(), 'tinyx-unit-patches-'));
test.after.always(() => removeTree(work));

const PATCH = `a description the patch tool ignores

--- a/lds.S
+++ b/lds.S
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
`;

async function tree(name: string, text: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'lds.S'), text);
  return dir;
}

test('the patches of a directory, in name order, each with its hash; the id names them and changes with any byte', async (t) => {
  const dir = join(work, 'patches');
  await mkdir(dir);
  await writeFile(join(dir, '0002-second.patch'), PATCH);
  await writeFile(join(dir, '0001-first.patch'), PATCH);
  await writeFile(join(dir, 'README'), 'not a patch');
  const patches = await kernelPatches(dir);
  t.deepEqual(patches.map((p) => p.name), ['0001-first.patch', '0002-second.patch']);
  t.regex(patches[0]!.sha256, /^[0-9a-f]{64}$/);
  const id = patchedId('debian:linux-source-6.1 6.1.192-3', patches);
  t.regex(id, /^debian:linux-source-6\.1 6\.1\.192-3 \+ 0001-first\.patch, 0002-second\.patch \([0-9a-f]{12}\)$/);
  await writeFile(join(dir, '0002-second.patch'), PATCH.replace('TWO', 'Two'));
  t.not(patchedId('debian:linux-source-6.1 6.1.192-3', await kernelPatches(dir)), id, 'an edited patch is another tree');
  t.is(patchedId('tarball:abc', []), 'tarball:abc', 'no patches: the id as it was');
  t.deepEqual(await kernelPatches(join(work, 'none')), [], 'no directory: no patches');
});

test('the bundled patches are found and each says what it is for', async (t) => {
  const patches = await kernelPatches();
  t.true(patches.length > 0);
  for (const patch of patches) {
    const text = await readFile(patch.path, 'utf8');
    t.regex(text.split('\n')[0]!, /\S/, `${patch.name} starts with its subject`);
    t.regex(text, /^--- a\//m, `${patch.name} is a -p1 diff`);
  }
});

test('a patch applies to the tree; one that does not apply exactly is refused by name and leaves the tree as it was', async (t) => {
  const dir = join(work, 'p');
  await mkdir(dir);
  await writeFile(join(dir, '0001-x.patch'), PATCH);
  const [patch] = await kernelPatches(dir);
  const good = await tree('good', 'one\ntwo\nthree\n');
  await applyPatch(patch!, good, 'linux 6.1.192');
  t.is(await readFile(join(good, 'lds.S'), 'utf8'), 'one\nTWO\nthree\n');
  const error = await t.throwsAsync(applyPatch(patch!, good, 'linux 6.1.192'), { message: /the kernel patch 0001-x\.patch does not apply to linux 6\.1\.192/ });
  t.is((error as { code?: string }).code, 'E_KERNEL_PATCH', 'applied twice: refused (--forward), not reversed');
  t.is(await readFile(join(good, 'lds.S'), 'utf8'), 'one\nTWO\nthree\n');
  const moved = await tree('moved', 'one\ntwo changed\nthree\n');
  await t.throwsAsync(applyPatch(patch!, moved, 'linux 6.1.200'), { message: /0001-x\.patch does not apply to linux 6\.1\.200/ });
  t.is(await readFile(join(moved, 'lds.S'), 'utf8'), 'one\ntwo changed\nthree\n', 'nothing half-applied');
});
