// The corpus benchmark (issue #11): twenty popular Debian services, each built
// with `--package NAME` alone (no recipe, no --cmd: the package's systemd unit,
// the trace and verify), booted under QEMU and asked by a real client of its
// protocol. All of them boot one kernel: the same superset of features for
// every image makes the same configuration, so it is built once.
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { build, isKernelFeature, KERNEL_FEATURES, type KernelFeature, type Manifest, type OutputFormat } from '@tinyx/builder';
import type { Readiness } from '@tinyx/image';
import { freePort, getBackend } from '@tinyx/toolstack';
import { imageSizes, type ImageSizes } from './boot.js';
import { errorCode, errorMessage } from './error-text.js';
import { interrupt } from './interrupt.js';
import type { SectionTimes } from './results.js';

/** What a client sends, and what the answer must look like, per protocol. */
const PROTOCOLS = {
  http: { send: 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n', answer: /^HTTP\/1\.[01] \d{3}/ },
  'http-proxy': { send: 'GET http://localhost/ HTTP/1.0\r\nHost: localhost\r\n\r\n', answer: /^HTTP\/1\.[01] \d{3}/ },
  redis: { send: '*1\r\n$4\r\nPING\r\n', answer: /^\+PONG\r\n/ },
  memcached: { send: 'version\r\n', answer: /^VERSION \d/ },
  ssh: { send: '', answer: /^SSH-2\.0-/ },
  nats: { send: '', answer: /^INFO \{/ },
  // MQTT 3.1.1 CONNECT (client id "t", clean session); CONNACK is 0x20 0x02.
  mqtt: { send: Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x74]), answer: /^\x20\x02/ },
  // DNS over TCP: a query for localhost. A (id 0x7478); any answer with the same id is DNS served.
  dns: { send: Buffer.from('001b7478010000010000000000000' + '9' + Buffer.from('localhost').toString('hex') + '0000010001', 'hex'), answer: /^[\s\S]{2}\x74\x78/ },
  // PostgreSQL's SSLRequest: the server answers one byte, S or N.
  postgres: { send: Buffer.from('0000000804d2162f', 'hex'), answer: /^[SN]$/ },
  // MariaDB greets first: a packet whose payload starts with protocol version 10.
  mysql: { send: '', answer: /^[\s\S]{4}\x0a\d/ },
  // XMPP: a stream header is answered with one.
  xmpp: { send: "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", answer: /<stream:stream/ },
} satisfies Record<string, { send: string | Buffer; answer: RegExp }>;

type Protocol = keyof typeof PROTOCOLS;

/** A service of the corpus: its package, the port its default configuration serves, the protocol its client speaks. */
interface CorpusEntry {
  pkg: string;
  port: number;
  protocol: Protocol;
  kind: string;
  /** Guest memory, when the default is not enough (the table says why). */
  memoryMiB?: number;
}

/** The corpus: package, the port its default configuration serves, the protocol its client speaks. */
export const CORPUS: readonly CorpusEntry[] = [
  { pkg: 'nginx', port: 80, protocol: 'http', kind: 'web server' },
  { pkg: 'lighttpd', port: 80, protocol: 'http', kind: 'web server' },
  { pkg: 'apache2', port: 80, protocol: 'http', kind: 'web server' },
  { pkg: 'caddy', port: 80, protocol: 'http', kind: 'web server (Go)' },
  { pkg: 'varnish', port: 6081, protocol: 'http', kind: 'HTTP cache' },
  { pkg: 'squid', port: 3128, protocol: 'http-proxy', kind: 'proxy' },
  { pkg: 'tinyproxy', port: 8888, protocol: 'http-proxy', kind: 'proxy' },
  { pkg: 'haproxy', port: 80, protocol: 'http', kind: 'load balancer' },
  { pkg: 'apt-cacher-ng', port: 3142, protocol: 'http', kind: 'caching proxy' },
  { pkg: 'redis-server', port: 6379, protocol: 'redis', kind: 'cache' },
  { pkg: 'memcached', port: 11211, protocol: 'memcached', kind: 'cache' },
  { pkg: 'mosquitto', port: 1883, protocol: 'mqtt', kind: 'broker (MQTT)' },
  { pkg: 'nats-server', port: 4222, protocol: 'nats', kind: 'broker (Go)' },
  { pkg: 'dnsmasq', port: 53, protocol: 'dns', kind: 'DNS' },
  { pkg: 'bind9', port: 53, protocol: 'dns', kind: 'DNS' },
  { pkg: 'postgresql', port: 5432, protocol: 'postgres', kind: 'database' },
  { pkg: 'mariadb-server', port: 3306, protocol: 'mysql', kind: 'database' },
  { pkg: 'openssh-server', port: 22, protocol: 'ssh', kind: 'remote shell' },
  { pkg: 'prometheus-node-exporter', port: 9100, protocol: 'http', kind: 'metrics (Go)' },
  { pkg: 'prosody', port: 5222, protocol: 'xmpp', kind: 'XMPP server (Lua)' },
];

/** The guests' memory, unless an entry says otherwise (and the table says why). */
const MEMORY_MIB = 512;

/** Every kernel feature: one configuration for all twenty images. */
const SUPERSET: KernelFeature[] = Object.keys(KERNEL_FEATURES).filter(isKernelFeature);

/** One service of the corpus as measured: what its build made of it, and how it answered. */
export interface CorpusRow {
  package: string;
  kind: string;
  protocol: string;
  built: boolean;
  serves: boolean;
  buildSeconds?: number;
  sizes?: ImageSizes;
  rootFiles?: number;
  /** The unit it was derived from and the settings taken from it. */
  derived?: string;
  readiness?: Readiness | null;
  /** Files the trace added to the image. */
  traced?: number;
  traceOutcome?: string | null;
  kernelSha?: string | undefined;
  error?: string;
  memoryMiB?: number;
  relay?: { port: number; address: string }[];
  readyMs?: number;
  /** The first line of the answer, or why there was none. */
  answer?: string;
  /** The console's last lines, when it did not serve. */
  console?: string;
}

/** The corpus section of bench/results.json. */
export interface CorpusFigures {
  /** The commit measured: HEAD when the run started. */
  commit: string;
  /** The images' root format (the platform's default unless the run asked for one); absent in runs before it was recorded. */
  format?: string;
  rows: CorpusRow[];
  served: number;
  total: number;
}

/** One exchange with a service: ok when the answer has the protocol's shape. */
function ask(host: string, port: number, protocol: Protocol, timeoutMs = 5000): Promise<{ ok: boolean; answer: string }> {
  const { send, answer } = PROTOCOLS[protocol];
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = Buffer.alloc(0);
    const done = (ok: boolean, text: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, answer: text });
    };
    const timer = setTimeout(() => done(false, `no answer in ${timeoutMs} ms${reply.length ? `: ${reply.toString('latin1').slice(0, 60)}` : ''}`), timeoutMs);
    socket.on('connect', () => send.length && socket.write(send));
    socket.on('data', (chunk: Buffer) => {
      reply = Buffer.concat([reply, chunk]);
      const text = reply.toString('latin1');
      if (answer.test(text)) done(true, (text.split(/\r?\n/)[0] ?? '').replace(/[^\x20-\x7e]/g, '.').slice(0, 60));
    });
    socket.on('error', (e) => done(false, e.message));
    socket.on('end', () => done(false, `closed${reply.length ? ` after: ${reply.toString('latin1').slice(0, 60).replace(/[^\x20-\x7e]/g, '.')}` : ''}`));
  });
}

/** Builds, boots and asks each service of the corpus (those named in `only`, when given); one row per package. */
export async function corpus(work: string, only?: readonly string[], format?: OutputFormat): Promise<CorpusFigures> {
  // Read before the builds: the code that runs is the code compiled now, whatever is committed meanwhile.
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const rows: CorpusRow[] = [];
  const formats = new Set<string>();
  for (const entry of CORPUS.filter((e) => !only || only.includes(e.pkg))) {
    const row: CorpusRow = { package: entry.pkg, kind: entry.kind, protocol: entry.protocol, built: false, serves: false };
    rows.push(row);
    const outDir = join(work, format ? `corpus-${format}` : 'corpus', entry.pkg);
    const t0 = performance.now();
    let manifest: Manifest;
    try {
      manifest = await build({ recipe: { fromUnit: { package: entry.pkg } }, outDir, kernelFeatures: SUPERSET, ...(format ? { format } : {}), signal: interrupt.signal });
      row.built = true;
      formats.add(manifest.format);
      row.buildSeconds = Math.round((performance.now() - t0) / 100) / 10;
      row.sizes = await imageSizes(outDir);
      row.rootFiles = manifest.files.length;
      row.derived = derivation(manifest);
      row.readiness = manifest.readiness;
      row.traced = manifest.trace?.added.length ?? 0;
      row.traceOutcome = manifest.trace?.outcome ?? null;
      row.kernelSha = manifest.kernel?.configSha256;
    } catch (error) {
      row.error = `${errorCode(error) ?? 'error'}: ${errorMessage(error).split('\n').slice(0, 4).join(' / ')}`;
      console.log(`${entry.pkg}: not built: ${row.error}`);
      continue;
    }
    const memoryMiB = entry.memoryMiB ?? MEMORY_MIB;
    row.memoryMiB = memoryMiB;
    row.relay = manifest.relay ?? [];
    const vm = await getBackend('qemu')
      .create(outDir, { memoryMiB, publish: [{ host: await freePort(), guest: entry.port }] })
      .catch((e: unknown) => ((row.error = `boot: ${errorMessage(e)}`), undefined));
    if (!vm) continue;
    try {
      const ready = await vm.waitReady(null, { timeoutMs: 90_000 }).catch((e: unknown) => ((row.error = `not ready: ${errorMessage(e).split('\n')[0]}`), undefined));
      if (ready) row.readyMs = Math.round(ready.consoleMs ?? ready.ms);
      const target = vm.endpoint(entry.port);
      let reply = { ok: false, answer: target ? 'not asked' : `no endpoint for guest port ${entry.port}` };
      for (let i = 0; target && i < 10 && !reply.ok; i++) {
        reply = await ask(target.host, target.port, entry.protocol);
        if (!reply.ok) await new Promise((r) => setTimeout(r, 1000));
      }
      row.serves = reply.ok;
      row.answer = reply.answer;
      if (!reply.ok) row.console = (await vm.console()).split('\n').filter(Boolean).slice(-6).join(' / ');
    } finally {
      await vm.destroy();
    }
    console.log(`${entry.pkg}: ${row.serves ? 'serves' : 'does not serve'} (${row.answer})${row.readyMs ? `, ready in ${row.readyMs} ms` : ''}`);
  }
  return { commit, ...(formats.size ? { format: [...formats].join(', ') } : {}), rows, served: rows.filter((r) => r.serves).length, total: rows.length };
}

/** Why a service of the corpus does not serve, in one line, from what the build and the boot said. */
function whyNot(r: CorpusRow): string {
  if (!r.built) return r.error ?? 'not built';
  const outcome = r.traceOutcome ?? '';
  if (r.readiness && 'tcp' in r.readiness && outcome.includes(`${r.readiness.tcp.port} (loopback only)`)) {
    return "Debian's configuration listens on a loopback address only (the build says so); a recipe fixup opens it";
  }
  if (!r.readiness && /no port listened/.test(outcome)) return "Debian's configuration has it listen on no port: it runs, and serves nothing until it is configured";
  if (/VFIL_allocate/.test(r.console ?? '')) {
    return 'it checks for room before it writes its shared-memory log, and the initramfs root (a tmpfs without a size) reports 0 bytes free: it needs a disk root';
  }
  if (/No space left on device/.test(r.console ?? r.error ?? '')) return "out of space: the root is in the guest's RAM, and its data did not fit beside it (No space left on device)";
  return r.error ?? r.answer ?? '';
}

/** What the build took from where, in a few words. */
function derivation(manifest: Manifest): string {
  const d = manifest.derivedFrom;
  if (!d) return '';
  const keys = d.fields.map((f) => f.key).filter((k) => !['ExecStart', 'Description'].includes(k));
  return `${d.unit.split('/').pop()}${keys.length ? `: ${[...new Set(keys)].join(', ')}` : ''}`;
}

export function renderCorpus(c: SectionTimes & CorpusFigures): string[] {
  const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(2)} MiB`;
  const root = c.format ? `, ${c.format} root` : '';
  const out = [`### Any Debian service, no recipe (${c.date.slice(0, 10)}, commit ${c.commit ?? '?'}; \`tinyx build --package NAME\` alone, one superset kernel for all${root}, ${MEMORY_MIB} MiB unless noted, QEMU microvm, TCG)`, ''];
  out.push(`**${c.served} of ${c.total}** serve their protocol to a real client from the host.`, '');
  out.push('| package | kind | serves? | answer | image (root) | ready | derived from the unit (and the trace) |');
  out.push('|---|---|---|---|---:|---:|---|');
  for (const r of c.rows) {
    const size = r.sizes ? `${mib(r.sizes.totalBytes)} (${mib(r.sizes.initrdBytes)})` : '';
    const how = [r.relay?.length ? `relayed to ${r.relay.map((p) => `${p.address}:${p.port}`).join(', ')}` : '', r.memoryMiB && r.memoryMiB !== MEMORY_MIB ? `${r.memoryMiB} MiB` : ''].filter(Boolean).join(', ');
    const why = `${r.serves ? String(r.answer).slice(0, 60) : whyNot(r)}${how ? ` (${how})` : ''}`;
    out.push(`| ${r.package} | ${r.kind} | ${r.serves ? 'yes' : '**no**'} | ${why.replace(/\|/g, '/')} | ${size} | ${r.readyMs ? `${(r.readyMs / 1000).toFixed(2)} s` : ''} | ${r.derived ?? ''} |`);
  }
  return out;
}
