import test, { type TestFn } from 'ava';
import { missingCapability, type ExtraNeeds } from './host-capabilities.js';

/**
 * `test` when the host can run the real thing (the integration tier's needs,
 * plus `extra`); otherwise a stand-in whose tests are all registered as
 * skipped, with the reason printed. Under CI a missing capability is a
 * failure, never a skip: CI's host has every one of them, because `tinyx
 * doctor --fix --tests` installed them.
 */
export function integrationTest(extra: ExtraNeeds = {}): TestFn {
  const missing = missingCapability('integration', extra);
  if (!missing) return test;
  if (process.env.CI) {
    test('the host has what the integration tests need', (t) => t.fail(`CI host cannot run integration tests: ${missing}`));
  } else {
    console.log(`skipping integration tests: ${missing}`);
  }
  return skippingTest();
}

/**
 * ava's `test.skip` has no `.serial`, `.before` or `.after`: a file written
 * against `test` would throw a TypeError at load instead of skipping. This
 * has the shape the integration files use, every test skipped and every
 * hook a no-op (the hooks set up what only the skipped tests use).
 */
export function skippingTest(): TestFn {
  const skip = ((title: string, ...rest: unknown[]) => (test.skip as (title: string, ...rest: unknown[]) => void)(title, ...rest)) as unknown as Record<string, unknown>;
  const hook = Object.assign(() => undefined, { always: () => undefined, skip: () => undefined });
  Object.assign(skip, {
    serial: skip,
    skip,
    only: skip,
    failing: skip,
    before: hook,
    beforeEach: hook,
    after: hook,
    afterEach: hook,
    todo: test.todo,
    meta: test.meta,
  });
  return skip as unknown as TestFn;
}
