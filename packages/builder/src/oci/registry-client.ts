import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InterruptedError, TinyxError } from '../errors.js';
import type { Credentials } from './credentials.js';
import { apiHost, type ImageReference } from './reference.js';

/** An OCI descriptor: what a manifest says of a blob or of another manifest. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

/** Where a blob's bytes come from when it is pushed: a file, or bytes tinyx made. */
export type BlobSource = { path: string } | { bytes: Uint8Array };

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
} as const;

/**
 * The distribution API (the OCI distribution spec, v2) for one repository:
 * what push and pull need of it and no more. Authentication follows the
 * registry's challenge: none, Basic with the stored credentials, or a Bearer
 * token from the realm it names (asked with those credentials, if any).
 */
export class RegistryClient {
  private scheme: 'https' | 'http';
  private authorization: string | undefined;

  constructor(
    readonly ref: ImageReference,
    private readonly options: { insecure?: boolean | undefined; credentials?: Credentials | undefined; push?: boolean; signal?: AbortSignal | undefined } = {},
  ) {
    this.scheme = options.insecure ? 'http' : 'https';
  }

  private get base(): string {
    return `${this.scheme}://${apiHost(this.ref.registry)}/v2/${this.ref.repository}`;
  }

  /** Whether the repository holds the blob already (pushed earlier, or by another image). */
  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.request('HEAD', `/blobs/${digest}`, { ok: [200, 404] });
    return res.status === 200;
  }

  /** Uploads a blob in one request (POST, then PUT with its digest), unless the repository has it. Returns whether it was sent. */
  async pushBlob(descriptor: Descriptor, source: BlobSource): Promise<boolean> {
    if (await this.hasBlob(descriptor.digest)) return false;
    const started = await this.request('POST', '/blobs/uploads/', { ok: [202] });
    const location = started.headers.get('location');
    if (!location) throw this.protocolError('POST /blobs/uploads/ answered 202 without a Location');
    const url = new URL(location, `${this.base}/`);
    url.searchParams.set('digest', descriptor.digest);
    await this.request('PUT', url, {
      ok: [201],
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(descriptor.size) },
      body: () => ('bytes' in source ? source.bytes : (Readable.toWeb(createReadStream(source.path)) as ReadableStream<Uint8Array>)),
    });
    return true;
  }

  /** Whether the repository has a manifest under this tag or digest (HEAD: nothing is fetched). */
  async hasManifest(reference: string): Promise<boolean> {
    const res = await this.request('HEAD', `/manifests/${reference}`, { ok: [200, 404], headers: { accept: [MEDIA_TYPES.index, MEDIA_TYPES.manifest].join(', ') } });
    return res.status === 200;
  }

  /** A manifest as getManifest gives it, or undefined when the repository has none under this tag or digest (one GET). */
  async findManifest(reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string } | undefined> {
    return this.manifest(reference, [200, 404]);
  }

  async putManifest(reference: string, mediaType: string, bytes: Uint8Array): Promise<void> {
    await this.request('PUT', `/manifests/${reference}`, { ok: [201], headers: { 'content-type': mediaType }, body: () => bytes });
  }

  /** A manifest or index by tag or digest: its bytes, media type and digest (checked against a digest reference). */
  async getManifest(reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    return (await this.manifest(reference, [200]))!;
  }

  /** GET of a manifest; undefined on a 404 when `ok` allows one. */
  private async manifest(reference: string, ok: number[]): Promise<{ bytes: Buffer; mediaType: string; digest: string } | undefined> {
    const res = await this.request('GET', `/manifests/${reference}`, { ok, headers: { accept: [MEDIA_TYPES.index, MEDIA_TYPES.manifest].join(', ') } });
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    const digest = sha256Digest(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) throw new TinyxError('E_DIGEST', `${this.where()}: the manifest asked for as ${reference} has the digest ${digest}`, { kind: 'failure' });
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    return { bytes, mediaType, digest };
  }

  /** A small blob (a config) in memory, checked against its descriptor. */
  async blobBytes(descriptor: Descriptor): Promise<Buffer> {
    const res = await this.request('GET', `/blobs/${descriptor.digest}`, { ok: [200] });
    const bytes = Buffer.from(await res.arrayBuffer());
    const digest = sha256Digest(bytes);
    if (bytes.length !== descriptor.size || digest !== descriptor.digest) {
      throw new TinyxError('E_DIGEST', `${this.where()}: the blob ${descriptor.digest} arrived as ${bytes.length} bytes with the digest ${digest}`, { kind: 'failure', hint: 'the registry or something between holds damaged data; push the image again' });
    }
    return bytes;
  }

  /** A blob written to `path` as it arrives; its size and digest must be the descriptor's, or the file is refused. */
  async fetchBlob(descriptor: Descriptor, path: string): Promise<void> {
    const res = await this.request('GET', `/blobs/${descriptor.digest}`, { ok: [200] });
    const hash = createHash('sha256');
    let size = 0;
    const counted = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>).map((chunk: Buffer) => {
      hash.update(chunk);
      size += chunk.length;
      if (size > descriptor.size) throw new TinyxError('E_DIGEST', `${this.where()}: the blob ${descriptor.digest} is larger than the ${descriptor.size} bytes its manifest says`, { kind: 'failure' });
      return chunk;
    });
    await pipeline(counted, createWriteStream(path, { mode: 0o644 }), { signal: this.options.signal });
    const digest = `sha256:${hash.digest('hex')}`;
    if (size !== descriptor.size || digest !== descriptor.digest) {
      throw new TinyxError('E_DIGEST', `${this.where()}: the blob ${descriptor.digest} arrived as ${size} bytes with the digest ${digest}`, { kind: 'failure', hint: 'the registry or something between holds damaged data; push the image again' });
    }
  }

  private where(): string {
    return `${this.ref.registry}/${this.ref.repository}`;
  }

  private protocolError(what: string): TinyxError {
    return new TinyxError('E_REGISTRY', `${this.where()}: ${what}`, { kind: 'failure' });
  }

  /**
   * One API request, with the authorization the registry asked for: on a 401
   * the challenge is answered and the request sent once more (a body is
   * made again for that, hence a function).
   */
  private async request(method: string, path: string | URL, init: { ok: number[]; headers?: Record<string, string>; body?: () => Uint8Array | ReadableStream<Uint8Array> }): Promise<Response> {
    const url = typeof path === 'string' ? `${this.base}${path}` : path.toString();
    for (let attempt = 0; ; attempt++) {
      const body = init.body?.();
      let res: Response;
      try {
        res = await fetch(url, {
          method,
          headers: { ...init.headers, ...(this.authorization ? { authorization: this.authorization } : {}) },
          ...(body ? { body, duplex: 'half' } : {}),
          signal: this.options.signal,
        } as RequestInit);
      } catch (error) {
        // As Docker does for 127.0.0.0/8: a registry on this machine that does not speak TLS is asked again in plain HTTP.
        if (this.scheme === 'https' && typeof path === 'string' && isLoopback(this.ref.registry) && isTlsMismatch(error)) {
          this.scheme = 'http';
          return this.request(method, path, init);
        }
        throw this.unreachable(error);
      }
      if (res.status === 401 && attempt === 0) {
        await res.body?.cancel();
        this.authorization = await this.answerChallenge(res.headers.get('www-authenticate'));
        continue;
      }
      if (init.ok.includes(res.status)) return res;
      throw await this.failed(method, res);
    }
  }

  private unreachable(error: unknown): TinyxError {
    if ((error as Error).name === 'AbortError') return new InterruptedError();
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message ?? (error as Error).message;
    const tls = isTlsMismatch(error);
    return new TinyxError('E_REGISTRY', `${this.ref.registry}: the registry could not be reached (${detail})`, {
      kind: 'failure',
      cause: error,
      hint: tls && !this.options.insecure ? 'it may speak plain HTTP: add --insecure (for a registry on localhost or your own network)' : `check the address, and that a registry listens at ${this.ref.registry}`,
    });
  }

  private async failed(method: string, res: Response): Promise<TinyxError> {
    const text = await res.text().catch(() => '');
    let detail = text.trim().slice(0, 300);
    try {
      const errors = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors;
      if (errors?.length) detail = errors.map((e) => `${e.code ?? ''} ${e.message ?? ''}`.trim()).join('; ');
    } catch {
      // Not the spec's JSON error body: its text as it came.
    }
    const what = `${method} ${new URL(res.url).pathname} answered ${res.status}${detail ? `: ${detail}` : ''}`;
    if (res.status === 401 || res.status === 403) {
      return new TinyxError('E_REGISTRY_AUTH', `${this.where()}: ${what}`, {
        kind: 'user',
        hint: this.options.credentials ? `the stored credentials for ${this.ref.registry} were refused: log in again (docker login ${this.ref.registry})` : `log in first: docker login ${this.ref.registry} (tinyx reads ~/.docker/config.json)`,
      });
    }
    if (res.status === 404 && method === 'GET') {
      return new TinyxError('E_REGISTRY', `${this.where()}: no such image (${what})`, { kind: 'user', hint: 'check the repository and tag (tinyx push writes them)' });
    }
    return this.protocolError(what);
  }

  /** The Authorization header value a 401's WWW-Authenticate asks for. */
  private async answerChallenge(header: string | null): Promise<string> {
    const challenge = parseChallenge(header ?? '');
    const basic = this.options.credentials ? `Basic ${Buffer.from(`${this.options.credentials.username}:${this.options.credentials.password}`).toString('base64')}` : undefined;
    if (challenge?.scheme === 'basic') {
      if (!basic) throw new TinyxError('E_REGISTRY_AUTH', `${this.where()}: the registry asks for a user name and password, and none is stored for ${this.ref.registry}`, { kind: 'user', hint: `log in first: docker login ${this.ref.registry}` });
      return basic;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) throw this.protocolError(`answered 401 with a challenge tinyx does not read: ${header ?? '(none)'}`);
    const realm = new URL(challenge.params.realm);
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    // The scope the challenge names, widened to pull,push for a push to this repository: one token for the whole push,
    // not one for the first HEAD (pull) and another for the upload (as Docker asks).
    const ours = `repository:${this.ref.repository}:${this.options.push ? 'pull,push' : 'pull'}`;
    const named = challenge.params.scope;
    realm.searchParams.set('scope', !named || named.startsWith(`repository:${this.ref.repository}:`) ? ours : named);
    let res: Response;
    try {
      res = await fetch(realm, { headers: basic ? { authorization: basic } : {}, signal: this.options.signal });
    } catch (error) {
      throw this.unreachable(error);
    }
    if (!res.ok) throw await this.failed('GET', res);
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw this.protocolError(`the token service ${realm.origin} gave no token`);
    return `Bearer ${token}`;
  }
}

/** A registry on this machine (localhost, 127.0.0.0/8, ::1), with or without a port. */
export function isLoopback(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A fetch that failed because the other end does not speak TLS (an HTTPS request to a plain-HTTP server). */
function isTlsMismatch(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return /EPROTO|SSL|TLS|wrong version number|ERR_SSL/i.test(`${cause?.code} ${cause?.message}`);
}

/** `Bearer realm="https://auth.example/token",service="registry",scope="..."`: the scheme (lower case) and its parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } | undefined {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
