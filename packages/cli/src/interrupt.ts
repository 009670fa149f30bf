/**
 * Turns Ctrl-C and SIGTERM into an AbortSignal, so that the running step stops
 * and cleanup (unmounting, removing temporary trees) runs before we exit. A
 * second Ctrl-C while cleaning up is ignored: leaving mounts behind is worse
 * than waiting a second longer.
 */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!controller.signal.aborted) {
      process.stderr.write(`\ntinyx: ${sig === 'SIGINT' ? 'interrupted' : 'terminated'}, cleaning up...\n`);
      controller.abort(`interrupted by ${sig}`);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onSignal);
    },
  };
}
