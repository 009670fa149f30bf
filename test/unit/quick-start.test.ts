import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/cli.js';

// CI must run what a new user runs: .ci/run is the README's Quick start, its
// two commands as written, and installs nothing by hand (a missing install
// step then fails CI instead of failing a user).

/** The command lines of the README's Quick start: its first ```sh block. */
function quickStart(): string[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Quick start'));
  const block = section.match(/```sh\n([\s\S]*?)```/)?.[1];
  if (!block) throw new Error('README.md: no ```sh block under "## Quick start"');
  return block.split('\n').filter((line) => line.trim() !== '');
}

/** .ci/run's lines that are neither comments, blank, nor its own set-up (strict mode, cd to the checkout, CI=true). */
function ciCommands(): { setup: string[]; commands: string[] } {
  const lines = readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8').split('\n').map((line) => line.trim());
  const code = lines.filter((line) => line !== '' && !line.startsWith('#'));
  const isSetup = (line: string): boolean => line === 'set -euo pipefail' || line === 'cd "$(dirname "$0")/.."' || line === 'export CI=true';
  return { setup: code.filter(isSetup), commands: code.filter((line) => !isSetup(line)) };
}

test(".ci/run runs exactly the README's two Quick start commands, in order", (t) => {
  const readme = quickStart();
  t.is(readme.length, 2, 'the Quick start is two commands');
  t.deepEqual(ciCommands().commands, readme);
});

test('.ci/run sets CI=true, so that a tier the host cannot run fails instead of being skipped', (t) => {
  t.deepEqual(ciCommands().setup, ['set -euo pipefail', 'cd "$(dirname "$0")/.."', 'export CI=true']);
});

test("the README's first command installs what the tests need, builds and boots nginx; the second runs every tier", (t) => {
  const [first, second] = quickStart();
  t.regex(first!, /^npm ci && npx tinyx doctor --fix --tests && npx tinyx build nginx && npx tinyx run out\/nginx --check$/);
  t.is(second, 'npm test');
  t.notRegex(readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8').replace(/^#.*$/gm, ''), /apt-get|apt |dpkg -i/, '.ci/run installs nothing by hand');
});
