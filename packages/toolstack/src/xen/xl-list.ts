import type { VmState } from '../machine.js';

/**
 * What `xl list -l` says of one domain: the domain configuration libxl keeps
 * for it (libxl_domain_config as JSON), reduced to what the toolstack reads.
 * It has no run state (running, paused): that is only in the table of plain
 * `xl list` (parseXlListTable).
 */
export interface XlDomain {
  domid: number;
  name: string;
  /** pvh, pv or hvm (c_info.type). */
  type: string | undefined;
  uuid: string | undefined;
  /** b_info.max_memkb in MiB. */
  memoryMiB: number | undefined;
  vcpus: number | undefined;
  kernel: string | undefined;
  cmdline: string | undefined;
  nics: { devid: number | undefined; mac: string | undefined; bridge: string | undefined; script: string | undefined }[];
}

interface RawDomain {
  domid?: number;
  config?: {
    c_info?: { type?: string; name?: string; uuid?: string };
    b_info?: { max_memkb?: number; max_vcpus?: number; kernel?: string; cmdline?: string };
    nics?: { devid?: number; mac?: string; bridge?: string; script?: string }[];
  };
}

/**
 * Parses `xl list -l` (JSON, xl's default output format): an array of
 * `{ "domid": N, "config": {...} }`. Domains whose configuration libxl cannot
 * give back (dom0 under some versions) are simply absent from xl's output.
 * An empty output (no domain at all) is an empty list.
 */
export function parseXlListLong(text: string): XlDomain[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(trimmed);
  } catch (error) {
    throw new Error(`xl list -l did not print JSON (${(error as Error).message}): ${trimmed.slice(0, 200)}`);
  }
  if (!Array.isArray(raw)) throw new Error('xl list -l printed JSON that is not an array of domains');
  return (raw as RawDomain[]).map((entry) => {
    const config = entry.config ?? {};
    const info = config.c_info ?? {};
    const build = config.b_info ?? {};
    return {
      domid: Number(entry.domid),
      name: info.name ?? '',
      type: info.type,
      uuid: info.uuid,
      memoryMiB: build.max_memkb === undefined ? undefined : Math.round(build.max_memkb / 1024),
      vcpus: build.max_vcpus,
      kernel: build.kernel,
      cmdline: build.cmdline,
      nics: (config.nics ?? []).map((nic) => ({ devid: nic.devid, mac: nic.mac, bridge: nic.bridge, script: nic.script })),
    };
  });
}

/** One row of plain `xl list`. */
export interface XlListRow {
  name: string;
  domid: number;
  memoryMiB: number;
  vcpus: number;
  /** xl's six state letters, `r-----` (running), `-b----` (blocked), `--p---` (paused), `---s--`, `----c-`, `-----d`. */
  flags: string;
  cpuSeconds: number;
}

/**
 * Parses the table of `xl list [name]`:
 *
 *     Name                                        ID   Mem VCPUs	State	Time(s)
 *     Domain-0                                     0  1536     2     r-----      30.1
 *
 * The name is everything before the last five columns, so a name with spaces
 * would still parse (xl allows none, but nothing is lost by being tolerant).
 */
export function parseXlListTable(text: string): XlListRow[] {
  const rows: XlListRow[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || /^Name\s+ID\s+Mem/.test(line)) continue;
    const match = line.match(/^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([-a-z]{6})\s+([\d.]+)\s*$/);
    if (!match) throw new Error(`xl list printed a line that is not a domain: ${JSON.stringify(line)}`);
    rows.push({ name: match[1]!, domid: Number(match[2]), memoryMiB: Number(match[3]), vcpus: Number(match[4]), flags: match[5]!, cpuSeconds: Number(match[6]) });
  }
  return rows;
}

/**
 * The toolstack's state of a domain from xl's letters: paused wins (a paused
 * domain is also blocked or running underneath), a crashed domain (preserved
 * by on_crash) is crashed, shut down or dying is stopped, and running or
 * blocked (idle, waiting for an event) is running.
 */
export function domainState(flags: string): VmState {
  if (flags[2] === 'p') return 'paused';
  if (flags[4] === 'c') return 'crashed';
  if (flags[3] === 's' || flags[5] === 'd') return 'stopped';
  return 'running';
}
