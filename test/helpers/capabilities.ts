import test, { type TestFn } from 'ava';
import { missingCapability } from './host-capabilities.js';

/**
 * `test` when the host can run the real thing; otherwise `test.skip`, with the
 * reason printed. Under CI a missing capability is a failure, never a skip:
 * CI's host has every one of them.
 */
export function integrationTest(tools?: string[]): TestFn {
  const missing = missingCapability(tools);
  if (!missing) return test;
  if (process.env.CI) {
    test('the host has what the integration tests need', (t) => t.fail(`CI host cannot run integration tests: ${missing}`));
    return test.skip as unknown as TestFn;
  }
  console.log(`skipping integration tests: ${missing}`);
  return test.skip as unknown as TestFn;
}
