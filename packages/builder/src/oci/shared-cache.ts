import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cache } from '../cache.js';
import { InterruptedError, TinyxError, throwIfAborted } from '../errors.js';
import { removeTree } from '../mounts.js';
import { registryCredentials } from './credentials.js';
import { formatReference, parseRepository } from './reference.js';
import { MEDIA_TYPES, RegistryClient, sha256Digest, type Descriptor } from './registry-client.js';

/**
 * The kernel cache shared through a registry (`--cache-from`, `--cache-to`):
 * a CI runner with an empty disk fetches the kernel another runner built
 * instead of compiling it. Two kinds of entry travel, keyed exactly as the
 * local cache keys them: the configuration (by the source's id and the
 * merged fragments: found before any Kconfig runs) and the kernel (by the
 * source's id and that configuration). With both, a build runs no `make` and
 * does not unpack the kernel source.
 *
 * An entry is an OCI artifact (artifactType `application/vnd.tinyx.cache.v1`)
 * tagged `<kind>-<key>` in the repository given: its meta.json is the config
 * blob, each file a layer titled with its name. A fetched entry must be what
 * its tag says (kind and key in its annotations), hold exactly the files of
 * its kind, and every file must have the digest its meta.json recorded when
 * it was published; it then goes through the local cache's own publish (in
 * tmp/ first, renamed into place), so it is never seen half-written.
 *
 * Whoever can push to the repository decides what kernel a `--cache-from`
 * build boots: give it a repository only your CI writes.
 */
export const CACHE_ARTIFACT_TYPE = 'application/vnd.tinyx.cache.v1';
const META_MEDIA_TYPE = 'application/vnd.tinyx.cache.meta.v1+json';
const FILE_MEDIA_TYPE = 'application/vnd.tinyx.cache.file';
const TITLE = 'org.opencontainers.image.title';
const KIND = 'io.tinyx.cache.kind';
const KEY = 'io.tinyx.cache.key';

/** The kinds of entry that travel, and the files each holds. */
const SHARED_FILES = {
  'kernel-configs': ['config'],
  kernels: ['System.map', 'bzImage', 'config', 'vmlinux'],
} as const;
export type SharedKind = keyof typeof SHARED_FILES;

export interface SharedCacheOptions {
  /** Repositories to fetch entries from, in order (`--cache-from`). */
  from?: readonly string[] | undefined;
  /** The repository entries are sent to (`--cache-to`). */
  to?: string | undefined;
  /** Plain HTTP (a registry on localhost or one's own network). */
  insecure?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /** What the build should tell: an entry fetched or sent, a registry that could not serve one. */
  note?: ((line: string) => void) | undefined;
}

interface Repository {
  name: string;
  client: RegistryClient;
}

export class SharedCache {
  private constructor(
    private readonly from: Repository[],
    private readonly to: Repository | undefined,
    private readonly options: SharedCacheOptions,
  ) {}

  /** The shared cache the options name, or undefined when they name none. References are checked here, before the build starts. */
  static async open(options: SharedCacheOptions): Promise<SharedCache | undefined> {
    const repository = async (text: string, option: string, push: boolean): Promise<Repository> => {
      const ref = parseRepository(text, option);
      const credentials = await registryCredentials(ref.registry);
      return { name: formatReference(ref), client: new RegistryClient(ref, { insecure: options.insecure, credentials, push, signal: options.signal }) };
    };
    const from = await Promise.all((options.from ?? []).map((text) => repository(text, '--cache-from', false)));
    const to = options.to ? await repository(options.to, '--cache-to', true) : undefined;
    return from.length > 0 || to ? new SharedCache(from, to, options) : undefined;
  }

  /**
   * The entry fetched from the first --cache-from repository that holds it,
   * now in the local cache; undefined when none does. A registry that cannot
   * be reached or serves a damaged entry is told of and passed over: the
   * entry is then made here, as without a shared cache.
   */
  async fetch(cache: Cache, kind: SharedKind, key: string): Promise<{ dir: string; from: string } | undefined> {
    for (const repo of this.from) {
      try {
        const manifest = await repo.client.findManifest(tagOf(kind, key));
        if (!manifest) continue;
        const dir = await this.download(cache, repo, kind, key, manifest.bytes);
        this.options.note?.(`${describe(kind)} fetched from ${repo.name}`);
        return { dir, from: repo.name };
      } catch (error) {
        if (error instanceof InterruptedError) throw error;
        throwIfAborted(this.options.signal);
        this.options.note?.(`--cache-from ${repo.name}: ${(error as Error).message.split('\n')[0]}; making ${describe(kind)} here`);
      }
    }
    return undefined;
  }

  /**
   * Sends a local entry to the --cache-to repository unless it holds it
   * already (one HEAD). A failure is the build's: a CI job asked to fill the
   * cache should not pass without doing it.
   */
  async offer(cache: Cache, kind: SharedKind, key: string): Promise<void> {
    const repo = this.to;
    if (!repo) return;
    const tag = tagOf(kind, key);
    if (await repo.client.hasManifest(tag)) return;
    // Looked up again: checked against the digests its meta.json recorded, which the layers then name.
    const dir = await cache.lookup(kind, key);
    if (!dir) throw new TinyxError('E_INTERNAL', `the ${kind} entry ${key} is not in the local cache to be sent`);
    const metaBytes = await readFile(join(dir, 'meta.json'));
    const recorded = (JSON.parse(metaBytes.toString('utf8')) as { contents?: { sha256?: Record<string, string> } }).contents?.sha256 ?? {};
    const config: Descriptor = { mediaType: META_MEDIA_TYPE, digest: sha256Digest(metaBytes), size: metaBytes.length };
    await repo.client.pushBlob(config, { bytes: metaBytes });
    const layers: Descriptor[] = [];
    for (const name of SHARED_FILES[kind]) {
      throwIfAborted(this.options.signal);
      const path = join(dir, name);
      if (!recorded[name]) throw new TinyxError('E_INTERNAL', `the ${kind} entry ${key} records no digest for ${name}`);
      const layer: Descriptor = { mediaType: FILE_MEDIA_TYPE, digest: `sha256:${recorded[name]}`, size: (await stat(path)).size, annotations: { [TITLE]: name } };
      await repo.client.pushBlob(layer, { path });
      layers.push(layer);
    }
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest, artifactType: CACHE_ARTIFACT_TYPE, config, layers, annotations: { [KEY]: key, [KIND]: kind } }));
    await repo.client.putManifest(tag, MEDIA_TYPES.manifest, manifest);
    this.options.note?.(`${describe(kind)} sent to ${repo.name}`);
  }

  /** An entry's files into tmp/, checked, then published into the local cache. */
  private async download(cache: Cache, repo: Repository, kind: SharedKind, key: string, manifestBytes: Buffer): Promise<string> {
    const refuse = (problem: string): never => {
      throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${repo.name}:${tagOf(kind, key)} is not a tinyx cache entry: ${problem}`, { kind: 'failure' });
    };
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as { artifactType?: string; config?: Descriptor; layers?: Descriptor[]; annotations?: Record<string, string> };
    if (manifest.artifactType !== CACHE_ARTIFACT_TYPE) refuse(`its artifactType is ${String(manifest.artifactType)}`);
    if (manifest.annotations?.[KIND] !== kind || manifest.annotations?.[KEY] !== key) refuse('its annotations name another entry');
    const { config, layers } = manifest;
    if (!config || config.mediaType !== META_MEDIA_TYPE || config.size > 1024 * 1024 || !Array.isArray(layers)) refuse('no meta.json config, or no layers');
    const titles = layers!.map((layer) => layer.annotations?.[TITLE] ?? '');
    const wanted: readonly string[] = SHARED_FILES[kind];
    if (titles.length !== wanted.length || [...titles].sort().join('\0') !== wanted.join('\0')) refuse(`it holds ${titles.join(', ')}, not ${wanted.join(', ')}`);
    const meta = JSON.parse((await repo.client.blobBytes(config!)).toString('utf8')) as { contents?: { sha256?: Record<string, string> } } & Record<string, unknown>;
    for (const [i, layer] of layers!.entries()) {
      // The digest the entry's files had when it was published, in the registry's copy as in a local one.
      if (meta.contents?.sha256?.[titles[i]!] === undefined || `sha256:${meta.contents.sha256[titles[i]!]}` !== layer.digest) refuse(`${titles[i]} is not the file its meta.json recorded`);
    }
    const temp = await cache.makeTemp(`fetched-${kind}`);
    try {
      for (const [i, layer] of layers!.entries()) {
        throwIfAborted(this.options.signal);
        await repo.client.fetchBlob(layer, join(temp, titles[i]!));
      }
      const { contents: _published, ...rest } = meta;
      return await cache.publish(kind, key, temp, { ...rest, fetchedFrom: repo.name });
    } finally {
      await removeTree(temp);
    }
  }
}

/**
 * A cache entry from the local cache, else from the shared one's registries
 * (then `from` names the registry); offered to its --cache-to either way.
 */
export async function lookupShared(cache: Cache, kind: SharedKind, key: string, shared: SharedCache | undefined): Promise<{ dir: string; from?: string | undefined } | undefined> {
  const found = (await cache.lookup(kind, key).then((dir) => (dir ? { dir } : undefined))) ?? (await shared?.fetch(cache, kind, key));
  if (found) await shared?.offer(cache, kind, key);
  return found;
}

/** The tag of an entry in the shared repository. */
export function tagOf(kind: SharedKind, key: string): string {
  return `${kind}-${key}`;
}

function describe(kind: SharedKind): string {
  return kind === 'kernels' ? 'the kernel' : "the kernel's configuration";
}

