import test from 'ava';
import { skippingTest } from '../helpers/capabilities.js';

// An integration file on a host without the capability must load and skip,
// not throw at `test.serial` or `test.after.always` (ava 7's test.skip has
// neither). Declared at load time, as an integration file does: a TypeError
// here fails this whole file.
const skipped = skippingTest();
let ran = 0;
const impl = (): void => void ran++;
skipped.after.always(impl);
skipped.before(impl);
skipped.beforeEach(impl);
skipped.serial('a test on a host without the capability (skipped on purpose)', impl);
skipped('another one (skipped on purpose)', impl);

test.serial('the skipping stand-in registered its tests as skipped and ran none of them or its hooks', (t) => {
  t.is(ran, 0);
});
