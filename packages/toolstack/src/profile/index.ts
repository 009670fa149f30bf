import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SYSTEM_MAP } from '@tinyx/image';
import type { CreateOptions, Vm } from '../machine.js';
import { PROFILE_CMDLINE, profileBoot, type BootProfile } from './boot-profile.js';
import { recordConsole, type StampedLine } from './console-clock.js';
import { SystemMap } from './system-map.js';

export { PHASE_TITLES, PROFILE_CMDLINE, profileBoot, type BootPhase, type BootProfile, type BootStep, type PhaseId } from './boot-profile.js';
export { recordConsole, type StampedLine } from './console-clock.js';
export { SystemMap } from './system-map.js';
export { checkTimelineFile, timelineSvg, writeTimeline } from './timeline-svg.js';

/**
 * A profiled boot, in two halves around the caller's own create and
 * waitReady: `options` are the create options with the profile's kernel
 * command line and a console watched from the VMM's start; `finish` turns
 * what was seen into the profile once the VM is ready. `dispose` stops the
 * watching on every other path.
 */
export function profiledBoot(options: CreateOptions): {
  options: CreateOptions;
  finish(vm: Vm, readyMs: number): Promise<BootProfile>;
  dispose(): Promise<void>;
} {
  let recording: ReturnType<typeof recordConsole> | undefined;
  const stop = async (): Promise<StampedLine[]> => {
    const lines = (await recording?.stop()) ?? [];
    recording = undefined;
    return lines;
  };
  return {
    options: {
      ...options,
      kernelArgs: [...(options.kernelArgs ?? []), ...PROFILE_CMDLINE],
      onStarted: (started) => {
        options.onStarted?.(started);
        void recording?.stop();
        recording = recordConsole(started.consoleFile, started.startedAt);
      },
    },
    finish: async (vm, readyMs) => {
      const lines = await stop();
      return profileBoot(lines, readyMs, await imageSystemMap(vm.image.dir));
    },
    dispose: async () => {
      await stop();
    },
  };
}

/** The image's System.map, or undefined for an image built before tinyx kept one. */
export async function imageSystemMap(imageDir: string): Promise<SystemMap | undefined> {
  const text = await readFile(join(imageDir, SYSTEM_MAP), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : SystemMap.parse(text);
}
