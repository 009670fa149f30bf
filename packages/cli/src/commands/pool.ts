import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_MEMORY_MIB } from '@tinyx/image';
import { HOTPLUGS, getBackend } from '@tinyx/toolstack';
import { globalOptions, type GlobalArgs } from '../global-options.js';
import { interruptSignal } from '../interrupt.js';
import { makeOutput, reportError } from '../output.js';

interface FillArgs extends GlobalArgs {
  image: string;
  size: number;
  memory: number;
  vcpus: number;
  type?: 'pvh' | 'pv';
  hotplug?: 'xen' | 'lean';
}

interface DrainArgs extends GlobalArgs {
  image?: string;
}

const fill: CommandModule<object, FillArgs> = {
  command: 'fill <image>',
  describe: 'Pre-create paused domains of an image (xl create -p) until the pool holds --size of them',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>)
      .positional('image', { type: 'string', demandOption: true, describe: 'a xen-pvh or xen-pv image directory' })
      .option('size', { type: 'number', demandOption: true, describe: 'how many paused domains the pool should hold for this image' })
      .option('memory', { type: 'number', default: DEFAULT_MEMORY_MIB, describe: 'guest memory in MiB (a run takes a pooled domain only of its own memory)' })
      .option('vcpus', { type: 'number', default: 1 })
      .option('type', { choices: ['pvh', 'pv'] as const, describe: "the guest type (default: the image's platform)" })
      .option('hotplug', { choices: HOTPLUGS, describe: "the scripts that plug each vif and erofs root disk: Xen's own (default) or tinyx's lean ones (see tinyx run --help)" })
      .check((args) => {
        if (!Number.isInteger(args.size) || args.size < 0) throw new Error(`--size ${args.size}: give a whole number, 0 or more`);
        return true;
      })
      .example('$0 pool fill out/nginx-pvh --size 3', 'three paused nginx domains; tinyx run --backend xen out/nginx-pvh unpauses one')
      .example('$0 pool fill out/nginx-pv --size 10 --hotplug lean', 'ten PV domains, their vifs plugged by the lean script') as unknown as Argv<FillArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    const interrupt = interruptSignal();
    try {
      const { pool } = getBackend('xen');
      const result = await pool.fill(args.image, args.size, {
        memoryMiB: args.memory,
        vcpus: args.vcpus,
        signal: interrupt.signal,
        ...(args.type ? { type: args.type } : {}),
        ...(args.hotplug ? { hotplug: args.hotplug } : {}),
        onCreated: (entry) => out.note(`${entry.id}: created paused in ${entry.createMs} ms`),
      });
      if (out.json) out.result({ ok: true, created: result.created, total: result.total });
      else out.line(`${args.image}: ${result.total} paused domain${result.total === 1 ? '' : 's'} in the pool (${result.created.length} created now)`);
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    } finally {
      interrupt.dispose();
    }
  },
};

const ls: CommandModule<object, GlobalArgs> = {
  command: 'ls',
  describe: 'List the paused domains waiting in the pool',
  builder: (yargs) => globalOptions(yargs as Argv<object>) as unknown as Argv<GlobalArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      const { pool } = getBackend('xen');
      const rows = [];
      for (const entry of await pool.entries()) {
        const vm = await getBackend('xen').get(entry.id).catch(() => undefined);
        rows.push({ ...entry, state: vm ? await vm.state() : 'stopped', address: vm?.address ?? null });
      }
      if (out.json) out.result({ ok: true, pool: rows });
      else if (rows.length === 0) out.line('the pool is empty');
      else for (const r of rows) out.line(`${r.id.padEnd(22)} ${r.state.padEnd(8)} ${r.type.padEnd(4)} ${`${r.memoryMiB} MiB`.padEnd(8)} ${(r.address ?? '').padEnd(14)} ${r.imageDir}`);
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

const drain: CommandModule<object, DrainArgs> = {
  command: 'drain [image]',
  describe: 'Destroy the waiting domains (of one image, or all)',
  builder: (yargs) =>
    globalOptions(yargs as Argv<object>).positional('image', { type: 'string', describe: 'only the domains of this image directory' }) as unknown as Argv<DrainArgs>,
  handler: async (args) => {
    const out = makeOutput(args);
    try {
      const drained = await getBackend('xen').pool.drain(args.image);
      if (out.json) out.result({ ok: true, destroyed: drained });
      else out.line(`${drained.length} pooled domain${drained.length === 1 ? '' : 's'} destroyed`);
      process.exitCode = 0;
    } catch (error) {
      process.exitCode = reportError(error, out);
    }
  },
};

/** `tinyx pool fill|ls|drain`: the split toolstack's pool of paused Xen domains. */
export const poolCommand: CommandModule<object, object> = {
  command: 'pool <command>',
  describe: 'Paused Xen domains made ahead of time, so that tinyx run --backend xen only unpauses one',
  builder: (yargs) =>
    yargs
      .command(fill)
      .command(ls)
      .command(drain)
      .demandCommand(1, 'name one: fill, ls or drain') as unknown as Argv<object>,
  handler: () => undefined,
};
