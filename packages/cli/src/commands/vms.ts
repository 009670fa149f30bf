import type { Argv, CommandModule } from 'yargs';
import { findVm, listVms, type Vm } from '@tinyx/toolstack';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { makeOutput, reportError, type Output } from '../output.js';

interface IdArgs extends GlobalArgs {
  id: string;
}

/** One command acting on a VM found by id: pause, unpause, stop, logs. */
function vmCommand(name: string, describe: string, act: (vm: Vm, out: Output) => Promise<unknown>): CommandModule<object, IdArgs> {
  return {
    command: `${name} <id>`,
    describe,
    builder: (yargs) =>
      globalOptions(yargs as Argv<object>)
        .positional('id', { type: 'string', demandOption: true, describe: 'a VM id, as tinyx ps lists them' })
        .example(`$0 ${name} nginx-1a2b3c`, describe) as unknown as Argv<IdArgs>,
    handler: async (args) => {
      const out = makeOutput(args);
      try {
        const vm = await findVm(args.id);
        const result = await act(vm, out);
        if (out.json) out.result({ ok: true, id: vm.id, ...(result && typeof result === 'object' ? result : {}) });
        process.exitCode = 0;
      } catch (error) {
        process.exitCode = reportError(error, out);
      }
    },
  };
}

export const pauseCommand = vmCommand('pause', 'Pause a running VM (QMP stop, xl pause)', async (vm, out) => {
  await vm.pause();
  out.line(`${vm.id}: paused`);
});

export const unpauseCommand = vmCommand('unpause', 'Run a paused VM again (QMP cont, xl unpause)', async (vm, out) => {
  await vm.unpause();
  out.line(`${vm.id}: running`);
});

export const stopCommand = vmCommand('stop', "Stop a VM and remove its socket and files (also a VM whose QEMU died)", async (vm, out) => {
  await vm.destroy();
  out.line(`${vm.id}: stopped`);
});

interface SaveArgs extends IdArgs {
  file: string;
  keep?: boolean;
}

export const saveCommand: CommandModule<object, SaveArgs> = {
  command: 'save <id> <file>',
  describe: "Write a VM's whole state to a file, then stop it (tinyx restore starts it again)",
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('id', { type: 'string', demandOption: true, describe: 'a VM id, as tinyx ps lists them' })
      .positional('file', { type: 'string', demandOption: true, describe: 'the state file to write (FILE.json is written next to it)' })
      .option('keep', { type: 'boolean', describe: 'leave the VM running after the save instead of stopping it' })
      .example('$0 save nginx-1a2b3c nginx.state', 'save, stop; later: tinyx restore nginx.state')
      .example('$0 save nginx-1a2b3c nginx.state --keep', 'a snapshot: the VM runs on') as unknown as Argv<SaveArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      const vm = await findVm(args.id);
      const started = performance.now();
      await vm.save(args.file, { keep: !!args.keep });
      const ms = Math.round(performance.now() - started);
      if (out.json) out.result({ ok: true, id: vm.id, file: args.file, ms, stopped: !args.keep });
      else out.line(`${vm.id}: saved to ${args.file} in ${ms} ms${args.keep ? '' : '; stopped'}`);
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

export const logsCommand = vmCommand('logs', "Print a VM's serial console", async (vm, out) => {
  const console = await vm.console();
  if (!out.json) process.stdout.write(console);
  return { console };
});

export const psCommand: CommandModule<object, GlobalArgs> = {
  command: 'ps',
  describe: 'List the VMs tinyx started, with their state (a VM whose QEMU died shows as stopped)',
  builder: (yargs) => globalOptions(yargs as Argv<object>).example('$0 ps --json', 'the same as JSON') as unknown as Argv<GlobalArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      const rows = [];
      for (const vm of await listVms()) {
        const d = vm.describe();
        rows.push({
          id: d.id,
          backend: d.backend,
          image: d.image,
          state: await vm.state(),
          accel: d.runsAs,
          pid: d.pid,
          address: d.address,
          forwards: d.forwards.map((f) => `127.0.0.1:${f.host}->${f.guest}`),
          pooled: d.pooled,
          started: d.started,
        });
      }
      if (out.json) out.result({ ok: true, vms: rows });
      else if (rows.length === 0) out.line('no VMs');
      else {
        const width = Math.max(...rows.map((r) => r.accel.length));
        for (const r of rows) out.line(`${r.id.padEnd(22)} ${r.state.padEnd(8)} ${r.accel.padEnd(width)} ${(r.address ?? r.forwards.join(',')).padEnd(26)} ${r.image}`);
      }
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};
