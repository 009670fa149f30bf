import { bootTimes } from './boot.js';
for (const name of process.argv.slice(2)) {
  const r = await bootTimes('nginx', `/tmp/exp/${name}`);
  console.log(name, 'line', r.readyLineMs.median, 'answer', r.firstAnswerMs.median, JSON.stringify(r.firstAnswerMs.runs));
}
