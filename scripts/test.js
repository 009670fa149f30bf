#!/usr/bin/env node
// `npm test`: every tier, in order (see the README, "Tests"). The unit tier
// runs anywhere; the integration tier needs root, OverlayFS and the build
// tools; the xen tier (Xen booted inside QEMU, test/xen) needs those, the
// kernel's tools and QEMU too. What each tier needs is in the host-tools
// registry (packages/builder/src/host-tools.ts), from which `tinyx doctor
// --fix --tests` installs. A tier is skipped with the reason printed where the
// host lacks what it needs, except under CI, whose host ran that command:
// there a missing capability fails.
import { spawnSync } from 'node:child_process';
import { missingCapability } from '../test/dist/helpers/host-capabilities.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const tiers = [
  ['unit', 'test:unit', () => undefined],
  ['integration', 'test:integration', () => missingCapability('integration')],
  ['xen', 'test:xen', () => missingCapability('xen')],
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
