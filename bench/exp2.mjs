import { getBackend } from '@tinyx/toolstack';
const q = getBackend('qemu');
for (let i = 0; i < 4; i++) for (const name of process.argv.slice(2)) {
  const vm = await q.create(`/tmp/exp/${name}`);
  const r = await vm.waitReady();
  const c = await vm.console();
  await vm.destroy();
  console.log(name, r.consoleMs, r.ms, c.split('\n').filter((l) => l.startsWith('T ')).map((l) => l.trim()).join(' | '));
}
