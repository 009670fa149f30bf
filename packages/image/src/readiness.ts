/**
 * How the toolstack (and the image's generated /init) tells that the
 * application is ready: the recipe's `readiness`, recorded in the manifest.
 */
export type Readiness = { tcp: { port: number } } | { http: { port: number; path: string } } | { console: { line: string } };

/** The console line /init prints once the app listens (or has started, for a console probe). */
export const READY_LINE = 'tinyx: ready';

/** The guest port a probe reaches over the network; undefined for a console probe or none. */
export function probePort(readiness: Readiness | null): number | undefined {
  if (!readiness || 'console' in readiness) return undefined;
  return 'tcp' in readiness ? readiness.tcp.port : readiness.http.port;
}
