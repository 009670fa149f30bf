import { TinyxError, run, type ErrorCode, type RunResult } from '@tinyx/image';

/** xl through the project's subprocess wrapper; the caller reads the exit code. */
export async function xl(args: string[], signal?: AbortSignal): Promise<RunResult> {
  return run('xl', args, { allowFailure: true, signal });
}

export async function domainExists(name: string): Promise<boolean> {
  return (await xl(['domid', name])).exitCode === 0;
}

export async function domainId(name: string): Promise<number | undefined> {
  const result = await xl(['domid', name]);
  const domid = Number(result.stdout.trim());
  return result.exitCode === 0 && Number.isInteger(domid) ? domid : undefined;
}

/** The lines of the hypervisor's log (`xl dmesg`) about one domain, the last 16 (a register dump is 15). */
export async function hypervisorLines(domid: number): Promise<string[]> {
  const result = await xl(['dmesg']);
  return result.exitCode === 0 ? linesAboutDomain(result.stdout, domid).slice(-16) : [];
}

/**
 * Xen names a domain `d5`, `d5v0` (its vcpu 0) or `Dom5` / `Domain 5`; a
 * register dump that follows a line about it (a triple fault's) is about it too.
 */
export function linesAboutDomain(log: string, domid: number): string[] {
  const about = new RegExp(`\\b(d${domid}(v\\d+)?|dom(ain)? ?${domid})\\b`, 'i');
  const lines: string[] = [];
  let dump = false;
  for (const line of log.split('\n')) {
    if (about.test(line)) {
      lines.push(line.trimEnd());
      dump = true;
    } else if (dump && /^\(XEN\)\s+(\S+:\s|----|CPU:|RIP:|RFLAGS:)/.test(line)) {
      lines.push(line.trimEnd());
    } else dump = false;
  }
  return lines;
}

/**
 * xl's failure as a TinyxError with xl's own words: a configuration xl
 * cannot parse is the user's (E_XL_CONFIG), a toolstack that cannot reach
 * the hypervisor or xenstore is the host's, anything else a failure.
 */
export function xlFailure(verb: string, what: string, result: RunResult, config?: string, code: ErrorCode = 'E_XL'): TinyxError {
  const said = `${result.stderr}\n${result.stdout}`
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line !== '' && !/^Parsing config from /.test(line));
  const message = said.slice(-12).join('\n') || `exit status ${result.exitCode}`;
  if (/config parsing error|Failed to parse config|unknown .* in config|syntax error/i.test(message)) {
    return new TinyxError('E_XL_CONFIG', `xl could not use the configuration of ${what}${config ? ` (${config})` : ''}:\n${message}`, {
      kind: 'user',
      hint: 'the lines added with extraLines (or the image) are not valid xl.cfg(5)',
    });
  }
  if (/xenstore|libxl_ctx_alloc|cannot init xl context|Permission denied|privcmd/i.test(message)) {
    return new TinyxError('E_NOT_DOM0', `xl ${verb} ${what}: xl cannot reach Xen:\n${message}`, { kind: 'host', hint: 'run as root in dom0, with xenstored and xenconsoled started (/etc/init.d/xen start)' });
  }
  return new TinyxError(code, `xl ${verb} ${what} failed:\n${message}`, { hint: config ? `the configuration: ${config}` : undefined });
}
