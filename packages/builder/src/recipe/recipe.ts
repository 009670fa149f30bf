import type { KernelFeature } from '../kernel-features.js';

/** How the toolstack (and the generated /init) tells that the application is ready. */
export type Readiness =
  | { tcp: { port: number } }
  | { http: { port: number; path: string } }
  | { console: { line: string } };

/** A recipe-specific edit of a file in the image, applied after the files are resolved. */
export type Fixup =
  /** Drop every line of `file` that matches the regular expression. */
  | { file: string; deleteLines: string }
  /** Replace every match of the regular expression in `file`. */
  | { file: string; replace: string; with: string }
  /** Write `file` with exactly this content (creating it if needed). */
  | { file: string; write: string };

export interface DirectorySpec {
  path: string;
  /** An account of the image (from the install root's /etc/passwd); defaults to root. */
  owner: string;
  mode: number;
}

/** A validated, normalized recipe: every field present, defaults filled in. */
export interface Recipe {
  name: string;
  description: string;
  /** Debian packages to install; the entry binary comes from one of them. */
  packages: string[];
  entrypoint: {
    /** argv; argv[0] is an absolute path or a command found on the image's PATH. */
    cmd: string[];
    /** The account the application runs as. */
    user: string;
    env: Record<string, string>;
    /** The directory the app starts in (systemd's WorkingDirectory=); "/" by default. A directory of the image. */
    workdir: string;
    /**
     * The command puts the app in the background and exits (systemd's
     * Type=forking): /init waits for it, then follows the app by `pidFile`
     * (PIDFile=), or without one, by every process the command left running.
     */
    forks: boolean;
    pidFile: string | null;
  };
  /** Further accounts the application switches to (nginx's workers run as www-data). */
  users: string[];
  /** Paths copied from the install root as they are, beyond what the resolver finds (postinst output, data). */
  include: string[];
  /** Directories created empty in the image (run, log, state directories). */
  directories: DirectorySpec[];
  /** Shared objects the application dlopen()s, which no NEEDED entry names; globs allowed in the last component. */
  dlopen: string[];
  readiness: Readiness | null;
  kernel: { features: KernelFeature[] };
  fixups: Fixup[];
  /** A command run inside the assembled root to prove the closure is complete (`nginx -t`). */
  check: string[] | null;
  /** Where the recipe came from: a file path, or a description such as "--package memcached". */
  source: string;
}
