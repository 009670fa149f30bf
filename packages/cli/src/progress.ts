import { Listr, PRESET_TIMER } from 'listr2';
import type { Build, BuildEvent } from '@tinyx/builder';
import type { Output } from './output.js';

export type ProgressMode = 'tasks' | 'lines' | 'silent';

/** The one place that picks how progress is shown: a task list on a terminal, plain lines elsewhere, nothing under --json. */
export function progressMode(out: Output): ProgressMode {
  if (out.json) return 'silent';
  if (process.stderr.isTTY && !process.env.CI && process.env.TERM !== 'dumb') return 'tasks';
  return 'lines';
}

/** A listener for build events that prints plain lines (CI logs, pipes, tests). */
export function lineProgress(out: Output): (event: BuildEvent) => void {
  return (event) => {
    if (event.type === 'step-start') out.note(`[${event.step}] ${event.title}...`);
    else if (event.type === 'step-end') {
      const how = event.cached ? 'cache hit' : `done (${event.seconds.toFixed(2)} s)`;
      out.note(`[${event.step}] ${how}${event.summary ? `: ${event.summary}` : ''}`);
    } else if (event.type === 'progress') {
      // One line per 10%, or per 100 files when the total is not known: a log, not a spinner.
      const step = event.total ? Math.max(1, Math.round(event.total / 10)) : 100;
      if (event.done % step === 0) out.note(`[${event.step}] ${event.done}${event.total ? ` of ~${event.total}` : ''} ${event.unit}`);
    } else if (event.type === 'notice') out.note(`[${event.step}] ${event.line}`);
    else if (out.verbose) out.note(`  ${event.line}`);
  };
}

/**
 * Runs a build's steps: as a listr2 task list (one task per step, cache hits
 * marked, the running command's last line under the task), or in a plain
 * loop. Cleanup always runs, also when a step fails or the user interrupts.
 */
export async function runSteps(build: Build, mode: ProgressMode, events: { current?: (event: BuildEvent) => void }): Promise<void> {
  if (mode !== 'tasks') {
    try {
      for (const step of build.steps) await build.runStep(step);
    } finally {
      await build.cleanup();
    }
    return;
  }
  const tasks = new Listr(
    build.steps.map((step) => ({
      title: step.title,
      task: async (_ctx: unknown, task: { title: string; output: string }) => {
        events.current = (event) => {
          if ((event.type === 'output' || event.type === 'notice') && event.line.trim()) task.output = event.line.trim();
          if (event.type === 'progress') task.output = `${event.done}${event.total ? ` of ~${event.total}` : ''} ${event.unit}`;
        };
        const result = await build.runStep(step);
        task.title = `${step.title}${result.cached ? ' (cache hit)' : ''}${result.summary ? `: ${result.summary}` : ''}`;
      },
    })),
    {
      concurrent: false,
      exitOnError: true,
      // The error is printed once, by the CLI, with its hint; the task list only marks the step that failed.
      rendererOptions: { showErrorMessage: false, timer: PRESET_TIMER },
    },
  );
  try {
    await tasks.run();
  } finally {
    events.current = undefined;
    await build.cleanup();
  }
}
