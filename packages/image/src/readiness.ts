/**
 * How the toolstack (and the image's generated /init) tells that the
 * application is ready: the recipe's `readiness`, recorded in the manifest.
 * A TCP probe may hold an exchange: `send` written once connected (none for a
 * server that speaks first), `expect` a text the answer must contain. Without
 * `expect` a connection is enough, which the guest's kernel accepts for a
 * listening socket before the app has read a byte.
 */
export type Readiness = { tcp: TcpProbe } | { http: { port: number; path: string } } | { console: { line: string } };

export interface TcpProbe {
  port: number;
  send?: string;
  expect?: string;
}

/** The console line /init prints once the app listens (or has started, for a console probe). */
export const READY_LINE = 'tinyx: ready';

/** The guest port a probe reaches over the network; undefined for a console probe or none. */
export function probePort(readiness: Readiness | null): number | undefined {
  if (!readiness || 'console' in readiness) return undefined;
  return 'tcp' in readiness ? readiness.tcp.port : readiness.http.port;
}

/** Whether the probe's pass shows the app itself answering (an HTTP status, a TCP exchange's expected text), not only the kernel accepting a connection. */
export function probeSeesApp(readiness: Readiness | null): boolean {
  return readiness !== null && ('http' in readiness || ('tcp' in readiness && readiness.tcp.expect !== undefined));
}
