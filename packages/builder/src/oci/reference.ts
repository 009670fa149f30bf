import { TinyxError } from '../errors.js';

/**
 * An image reference as Docker, Podman and skopeo read one:
 * `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`. The first component names the
 * registry when it holds a "." or a ":" or is `localhost`; otherwise the
 * registry is Docker Hub, and a one-component repository is under `library/`.
 */
export interface ImageReference {
  /** As written and as credentials are keyed: `localhost:5000`, `ghcr.io`, `docker.io`. */
  registry: string;
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

/** Components of a repository path (the distribution spec's grammar). */
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function parseReference(text: string): ImageReference {
  const bad = (problem: string): never => {
    throw new TinyxError('E_REFERENCE', `"${text}" is not an image reference: ${problem}`, {
      kind: 'user',
      hint: 'write it as REGISTRY/REPOSITORY[:TAG], e.g. localhost:5000/tinyx/nginx:1.0 or ghcr.io/you/nginx',
    });
  };
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) bad(`the digest "${digest}" is not sha256:<64 hex digits>`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`the tag "${tag}" is not a tag (letters, digits, "_", "." and "-", at most 128)`);
  }
  const parts = rest.split('/');
  const first = parts[0]!;
  const hasRegistry = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = hasRegistry ? first : 'docker.io';
  const path = hasRegistry ? parts.slice(1) : parts;
  if (path.length === 0 || path.some((p) => p === '')) bad('it names no repository');
  for (const component of path) if (!COMPONENT.test(component)) bad(`"${component}" is not a repository name component (lower-case letters, digits, ".", "_", "-")`);
  if (registry === 'docker.io' && path.length === 1) path.unshift('library');
  if (!tag && !digest) tag = 'latest';
  return { registry, repository: path.join('/'), tag, digest };
}

/**
 * A repository alone, `[REGISTRY/]REPOSITORY`, where tinyx writes tags of
 * its own (the shared kernel cache): a tag or digest in it is refused.
 */
export function parseRepository(text: string, option: string): ImageReference {
  const ref = parseReference(text);
  const named = text.includes('@') || text.slice(text.lastIndexOf('/') + 1).includes(':');
  if (named) {
    throw new TinyxError('E_REFERENCE', `${option} ${text}: name a repository without a tag or digest (tinyx tags each cache entry with its key)`, {
      kind: 'user',
      hint: `${option} ${formatReference({ ...ref, tag: undefined, digest: undefined })}`,
    });
  }
  return { ...ref, tag: undefined };
}

/** The reference written back, registry and tag included: what push and pull print. */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The host the distribution API is served from (Docker Hub's is not docker.io). */
export function apiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}
