/**
 * Aborted by the bench's Ctrl-C or SIGTERM handler (run.ts). Every build the
 * bench runs takes its signal, so that an interrupted build stops and cleans
 * up as `tinyx build` does (its root unmounted, its temporary trees removed)
 * before the bench exits.
 */
export const interrupt = new AbortController();
