import test from 'ava';
import { resolveInRoot } from '@tinyx/builder/internals';
import { memoryRoot } from '../helpers/memory-root.js';

// How a path resolves inside an install root, as the kernel would resolve it in a chroot there.
const root = memoryRoot({
  '/usr/lib/x86_64-linux-gnu/liblua5.4-filesystem.so.0.0.0': 'ELF',
  // lua-filesystem's module link: two levels up from the link's own directory.
  '/usr/lib/x86_64-linux-gnu/lua/5.4/lfs.so': { link: '../../liblua5.4-filesystem.so.0.0.0' },
  '/lib': { link: 'usr/lib' },
  '/etc/localtime': { link: '/usr/share/zoneinfo/Etc/UTC' },
  '/usr/share/zoneinfo/Etc/UTC': 'TZif',
  '/escape': { link: '../../../../usr/lib/x86_64-linux-gnu/liblua5.4-filesystem.so.0.0.0' },
});

test('a relative link climbs from its own directory with ".."', async (t) => {
  const resolved = await resolveInRoot(root, '/usr/lib/x86_64-linux-gnu/lua/5.4/lfs.so');
  t.is(resolved.path, '/usr/lib/x86_64-linux-gnu/liblua5.4-filesystem.so.0.0.0');
  t.is(resolved.node?.kind, 'file');
  t.deepEqual(resolved.links, [{ path: '/usr/lib/x86_64-linux-gnu/lua/5.4/lfs.so', target: '../../liblua5.4-filesystem.so.0.0.0' }]);
  // Through a linked directory too (/lib -> usr/lib).
  t.is((await resolveInRoot(root, '/lib/x86_64-linux-gnu/lua/5.4/lfs.so')).path, '/usr/lib/x86_64-linux-gnu/liblua5.4-filesystem.so.0.0.0');
});

test('an absolute link starts again at the root; ".." stops at the root', async (t) => {
  t.is((await resolveInRoot(root, '/etc/localtime')).path, '/usr/share/zoneinfo/Etc/UTC');
  t.is((await resolveInRoot(root, '/escape')).path, '/usr/lib/x86_64-linux-gnu/liblua5.4-filesystem.so.0.0.0');
});
