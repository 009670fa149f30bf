#!/usr/bin/env node
// `npm test`: every tier, in order (see ../DESIGN.md, "Tests"). The unit tier
// runs anywhere; the integration tier needs root, OverlayFS and debootstrap;
// the xen tier (Xen booted inside QEMU, test/xen) needs root, QEMU and
// debootstrap too. A tier is skipped with the reason printed where the host
// lacks what it needs, except under CI, whose host has it all: there a
// missing capability fails.
import { spawnSync } from 'node:child_process';
import { missingCapability } from '../test/dist/helpers/host-capabilities.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const tiers = [
  ['unit', 'test:unit', () => undefined],
  ['integration', 'test:integration', () => missingCapability()],
  ['xen', 'test:xen', () => missingCapability(['debootstrap', 'qemu-system-x86_64', 'cpio', 'objdump', 'depmod', 'dpkg-deb'])],
];

const results = [];
for (const [name, script, missing] of tiers) {
  const reason = missing();
  if (reason && !process.env.CI) {
    console.log(`\n== ${name}: skipped (${reason})`);
    results.push([name, 'skipped']);
    continue;
  }
  console.log(`\n== ${name} tests (npm run ${script})`);
  const { status } = spawnSync(npm, ['run', '--silent', script], { stdio: 'inherit' });
  results.push([name, status === 0 ? 'passed' : 'failed']);
  if (status !== 0) break;
}
const failed = results.filter(([, r]) => r === 'failed').length;
console.log(`\ntiers: ${results.map(([n, r]) => `${n} ${r}`).join(', ')}`);
process.exitCode = failed > 0 ? 1 : 0;
