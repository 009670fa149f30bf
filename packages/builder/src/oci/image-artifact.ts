import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { MANIFEST_VERSION, readManifest, type ImageManifest } from '@tinyx/image';
import { checkOutputDir, makeStagingDir, parseMarker, replaceOutputDir, tinyxFileNames } from '../emit/output-dir.js';
import { TinyxError, throwIfAborted } from '../errors.js';
import { removeTree } from '../mounts.js';
import { writeTar } from '../pack/tar.js';
import { registryCredentials } from './credentials.js';
import { formatReference, parseReference, type ImageReference } from './reference.js';
import { MEDIA_TYPES, RegistryClient, sha256Digest, type BlobSource, type Descriptor } from './registry-client.js';

/**
 * How a tinyx image directory lives in an OCI registry. The reference names
 * an image index of up to two manifests:
 *
 * - **The tinyx artifact** (artifactType `application/vnd.tinyx.image.v1`):
 *   manifest.json is its config blob, and every other file of the directory
 *   (kernel, vmlinux, root filesystem, kernel.config, System.map, xl.cfg) a
 *   layer of its own, titled with its file name. `tinyx pull` reads this one;
 *   any OCI client (oras, skopeo) can fetch a single file.
 * - **A kernel-boot container** (platform linux/amd64), for an image with a
 *   kernel and an initramfs: one uncompressed tar layer holding
 *   /boot/vmlinuz and /boot/initrd, which KubeVirt's
 *   `kernelBoot.container` (kernelPath, initrdPath) and any container runtime
 *   read. A runtime picks it by platform; the artifact has none.
 *
 * Everything is made from the directory's bytes alone (no clock: the tar's
 * mtimes are the build's SOURCE_DATE_EPOCH, JSON keys in a fixed order), so
 * the same directory pushes the same digests. The root filesystem and kernel
 * are stored twice (a blob each, and inside the tar): a few MiB.
 */
export const TINYX_ARTIFACT_TYPE = 'application/vnd.tinyx.image.v1';
export const TINYX_MANIFEST_MEDIA_TYPE = 'application/vnd.tinyx.image.manifest.v1+json';
/** Where the kernel-boot container holds the kernel and the initramfs. */
export const KERNEL_BOOT_PATHS = { kernel: '/boot/vmlinuz', initrd: '/boot/initrd' } as const;

const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
const TITLE = 'org.opencontainers.image.title';

/** The media type of each file of an image directory, by what the manifest says it is. */
function fileMediaType(manifest: ImageManifest, name: string): string {
  const a = manifest.artifacts;
  if (name === a.rootfs) return `application/vnd.tinyx.rootfs.${manifest.format}${manifest.compression ? `+${manifest.compression}` : ''}`;
  if (name === a.kernel) return 'application/vnd.tinyx.kernel.bzimage';
  if (name === a.vmlinux) return 'application/vnd.tinyx.kernel.elf';
  if (name === a.kernelConfig) return 'application/vnd.tinyx.kernel.config';
  if (name === a.xlConfig) return 'application/vnd.tinyx.xen.xl-config';
  if (name === 'System.map') return 'application/vnd.tinyx.kernel.system-map';
  throw new TinyxError('E_INTERNAL', `no media type for ${name}`);
}

/** The annotations every manifest of the push carries, from the image's manifest; keys sorted, as Go's JSON writes a map. */
function imageAnnotations(manifest: ImageManifest): Record<string, string> {
  return sortedKeys({
    'org.opencontainers.image.title': manifest.name,
    ...(manifest.recipe.description ? { 'org.opencontainers.image.description': String(manifest.recipe.description) } : {}),
    // The build's SOURCE_DATE_EPOCH, not the clock; none for the default 0, which is no date.
    ...(manifest.build.sourceDateEpoch > 0 ? { 'org.opencontainers.image.created': new Date(manifest.build.sourceDateEpoch * 1000).toISOString() } : {}),
    'io.tinyx.platform': manifest.platform,
    'io.tinyx.format': manifest.format,
    'io.tinyx.tinyx-version': manifest.build.tinyx,
  });
}

function sortedKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : 1)));
}

interface Blob {
  descriptor: Descriptor;
  source: BlobSource;
}

/** What a push is made of: every blob, then the manifests, the index last. */
export interface ImageLayout {
  blobs: Blob[];
  manifests: { descriptor: Descriptor; bytes: Uint8Array }[];
  index: { descriptor: Descriptor; bytes: Uint8Array };
}

function json(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value));
}

async function fileDescriptor(path: string, mediaType: string, annotations?: Record<string, string>): Promise<Descriptor> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { mediaType, digest: `sha256:${hash.digest('hex')}`, size, ...(annotations ? { annotations } : {}) };
}

function bytesDescriptor(bytes: Uint8Array, mediaType: string, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length, ...extra };
}

/** The files of an image directory tinyx pushes: its manifest's artifacts and System.map, each checked to be a regular file. */
async function imageFiles(dir: string, manifest: ImageManifest): Promise<string[]> {
  const a = manifest.artifacts;
  const names = [a.kernel, a.vmlinux, a.rootfs, a.kernelConfig, a.xlConfig].filter((n): n is string => !!n);
  if (await lstat(join(dir, 'System.map')).then((s) => s.isFile(), () => false)) names.push('System.map');
  for (const name of names) {
    const stat = await lstat(join(dir, name)).catch(() => undefined);
    if (!stat?.isFile()) throw new TinyxError('E_IMAGE_FILE', `${join(dir, name)} is missing (the manifest names it)`, { kind: 'user', hint: 'build the image again' });
  }
  return names.sort();
}

/** The blobs and manifests of an image directory, as the comment at the top says. */
export async function imageLayout(dir: string): Promise<ImageLayout> {
  const manifest = await readManifest(dir);
  const annotations = imageAnnotations(manifest);
  const blobs: Blob[] = [];
  const configBytes = await readFile(join(dir, 'manifest.json'));
  const config = bytesDescriptor(configBytes, TINYX_MANIFEST_MEDIA_TYPE);
  blobs.push({ descriptor: config, source: { bytes: configBytes } });
  const layers: Descriptor[] = [];
  for (const name of await imageFiles(dir, manifest)) {
    const descriptor = await fileDescriptor(join(dir, name), fileMediaType(manifest, name), { [TITLE]: name });
    layers.push(descriptor);
    blobs.push({ descriptor, source: { path: join(dir, name) } });
  }
  const artifactBytes = json({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest, artifactType: TINYX_ARTIFACT_TYPE, config, layers, annotations });
  // The index's descriptor of the artifact carries no artifactType (OCI 1.1): Debian 12's skopeo (containers/image
  // 5.23) drops the field it does not know, and so could copy the index only by rewriting it (a new digest).
  const manifests = [{ descriptor: bytesDescriptor(artifactBytes, MEDIA_TYPES.manifest, { annotations }), bytes: artifactBytes }];

  if (manifest.artifacts.kernel && manifest.format === 'initramfs') {
    const tar = await bootTar(dir, manifest);
    const layer = bytesDescriptor(tar, OCI_LAYER_TAR);
    const imageConfig = json({
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: annotations },
      rootfs: { type: 'layers', diff_ids: [layer.digest] },
    });
    const configDescriptor = bytesDescriptor(imageConfig, OCI_CONFIG);
    blobs.push({ descriptor: configDescriptor, source: { bytes: imageConfig } }, { descriptor: layer, source: { bytes: tar } });
    const imageBytes = json({ schemaVersion: 2, mediaType: MEDIA_TYPES.manifest, config: configDescriptor, layers: [layer], annotations });
    manifests.push({ descriptor: bytesDescriptor(imageBytes, MEDIA_TYPES.manifest, { platform: { architecture: 'amd64', os: 'linux' } }), bytes: imageBytes });
  }
  const indexBytes = json({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, manifests: manifests.map((m) => m.descriptor), annotations });
  return { blobs, manifests, index: { descriptor: bytesDescriptor(indexBytes, MEDIA_TYPES.index), bytes: indexBytes } };
}

/** The kernel-boot container's one layer: /boot/vmlinuz and /boot/initrd, owned by root, at the build's time. */
async function bootTar(dir: string, manifest: ImageManifest): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new PassThrough();
  sink.on('data', (c: Buffer) => chunks.push(c));
  await writeTar(
    [
      { type: 'dir', path: '/boot', mode: 0o755 },
      { type: 'file', path: KERNEL_BOOT_PATHS.kernel, mode: 0o644, source: { path: join(dir, manifest.artifacts.kernel!) } },
      { type: 'file', path: KERNEL_BOOT_PATHS.initrd, mode: 0o644, source: { path: join(dir, manifest.artifacts.rootfs) } },
    ],
    sink,
    { mtime: manifest.build.sourceDateEpoch },
  );
  sink.end();
  return Buffer.concat(chunks);
}

export interface RegistryOptions {
  /** Plain HTTP instead of HTTPS (a registry on localhost or one's own network). */
  insecure?: boolean;
  signal?: AbortSignal;
  /** A line per blob sent or fetched. */
  progress?: (line: string) => void;
}

export interface PushResult {
  reference: string;
  /** The index's digest: `REGISTRY/REPOSITORY@DIGEST` names exactly this push. */
  digest: string;
  /** The digest of the tinyx artifact's manifest, and of the kernel-boot container's (null for an image it cannot be made of). */
  artifact: string;
  kernelBoot: string | null;
  /** Blobs sent, and blobs the registry had already. */
  sent: number;
  present: number;
  bytesSent: number;
}

/** Pushes an image directory to `reference`: blobs first, then the manifests, then the index under the tag. */
export async function pushImage(dir: string, reference: string, options: RegistryOptions = {}): Promise<PushResult> {
  const ref = parseReference(reference);
  if (ref.digest) throw new TinyxError('E_REFERENCE', `${reference}: a push names a tag, not a digest (the digest is the result)`, { kind: 'user', hint: `push to ${formatReference({ ...ref, digest: undefined, tag: ref.tag ?? 'latest' })}` });
  const layout = await imageLayout(dir);
  const client = new RegistryClient(ref, { insecure: options.insecure, credentials: await registryCredentials(ref.registry), push: true, signal: options.signal });
  let sent = 0;
  let present = 0;
  let bytesSent = 0;
  for (const { descriptor, source } of layout.blobs) {
    throwIfAborted(options.signal);
    const what = descriptor.annotations?.[TITLE] ?? descriptor.mediaType;
    if (await client.pushBlob(descriptor, source)) {
      sent++;
      bytesSent += descriptor.size;
      options.progress?.(`sent ${what} (${descriptor.size} B)`);
    } else {
      present++;
      options.progress?.(`${what}: the registry has it`);
    }
  }
  for (const m of layout.manifests) await client.putManifest(m.descriptor.digest, m.descriptor.mediaType, m.bytes);
  await client.putManifest(ref.tag!, MEDIA_TYPES.index, layout.index.bytes);
  return {
    reference: formatReference(ref),
    digest: layout.index.descriptor.digest,
    artifact: layout.manifests[0]!.descriptor.digest,
    kernelBoot: layout.manifests[1]?.descriptor.digest ?? null,
    sent,
    present,
    bytesSent,
  };
}

export interface PullResult {
  reference: string;
  digest: string;
  dir: string;
  name: string;
  files: string[];
}

/**
 * Pulls a tinyx image into `out` (default: out/<its name>), replacing it only
 * when it is tinyx's own (see output-dir.ts). Every blob is checked against
 * its digest as it arrives, every file name against those tinyx writes, and
 * manifest.json must be a manifest this tinyx reads and name those files.
 */
export async function pullImage(reference: string, options: RegistryOptions & { out?: string } = {}): Promise<PullResult> {
  const ref = parseReference(reference);
  const client = new RegistryClient(ref, { insecure: options.insecure, credentials: await registryCredentials(ref.registry), signal: options.signal });
  const top = await client.getManifest(ref.digest ?? ref.tag!);
  const artifact = await findArtifact(client, top, reference);
  const document = JSON.parse(artifact.bytes.toString('utf8')) as { config?: Descriptor; layers?: Descriptor[] };
  if (!document.config || !Array.isArray(document.layers)) throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference}: its artifact manifest has no config or no layers`, { kind: 'user' });
  if (document.config.size > 16 * 1024 * 1024) throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference}: its config blob is ${document.config.size} bytes, not a tinyx manifest.json`, { kind: 'user' });
  const configBytes = await client.blobBytes(document.config);
  const manifestText = configBytes.toString('utf8');
  // parseMarker reads it as the emit step's marker (JSON, a name, tinyx's version, artifacts) before anything else does.
  const manifest = parseMarker('image', manifestText) ? (JSON.parse(manifestText) as ImageManifest) : undefined;
  if (manifest?.manifestVersion !== MANIFEST_VERSION) {
    throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference}: its manifest.json is not one this tinyx reads (manifestVersion ${String(manifest?.manifestVersion ?? 'none')}, this tinyx reads ${MANIFEST_VERSION})`, { kind: 'user', hint: 'push it again with this tinyx' });
  }
  const allowed = tinyxFileNames(manifest.name);
  const layers = document.layers;
  const names = layers.map((layer) => layer.annotations?.[TITLE]);
  for (const name of names) {
    // A title is a file name tinyx writes, never a path: nothing from a registry lands outside the directory.
    if (!name || !allowed.has(name) || name === 'manifest.json') throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference}: a layer is titled ${JSON.stringify(name)}, not a file of a tinyx image directory`, { kind: 'user' });
  }
  if (new Set(names).size !== names.length) throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference}: two layers have the same title`, { kind: 'user' });
  const named = Object.values(manifest.artifacts).filter((n): n is string => !!n);
  const missing = named.filter((n) => !names.includes(n));
  if (missing.length > 0) throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference}: the manifest names ${missing.join(', ')}, which the artifact does not hold`, { kind: 'user' });

  const out = options.out ?? join('out', manifest.name);
  await checkOutputDir(out);
  const staging = await makeStagingDir(out, (line) => options.progress?.(line));
  try {
    for (const layer of layers) {
      throwIfAborted(options.signal);
      const name = layer.annotations![TITLE]!;
      await client.fetchBlob(layer, join(staging, name));
      options.progress?.(`fetched ${name} (${layer.size} B)`);
    }
    await writeFile(join(staging, 'manifest.json'), configBytes);
    const { leftBehind } = await replaceOutputDir(staging, out);
    if (leftBehind) options.progress?.(`the earlier image was left at ${leftBehind}: it held a file tinyx did not write`);
  } catch (error) {
    await removeTree(staging).catch(() => {});
    // A blob's stream stopped by Ctrl-C ends in the stream's AbortError: the interruption it is.
    throwIfAborted(options.signal);
    throw error;
  }
  return { reference: formatReference(ref), digest: top.digest, dir: out, name: manifest.name, files: [...names.map((n) => n!), 'manifest.json'].sort() };
}

/**
 * The tinyx artifact's manifest: the reference itself, or the index's entry
 * that is one (its descriptor's artifactType where a client wrote it, else
 * each entry without a platform, fetched and looked at).
 */
async function findArtifact(client: RegistryClient, top: { bytes: Buffer; mediaType: string }, reference: string): Promise<{ bytes: Buffer }> {
  const isArtifact = (bytes: Buffer): boolean => {
    const document = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; artifactType?: string };
    return document.mediaType === MEDIA_TYPES.manifest && document.artifactType === TINYX_ARTIFACT_TYPE;
  };
  if (isArtifact(top.bytes)) return top;
  const document = JSON.parse(top.bytes.toString('utf8')) as { mediaType?: string; manifests?: Descriptor[] };
  if ((document.mediaType ?? top.mediaType) === MEDIA_TYPES.index) {
    const entries = (document.manifests ?? []).filter((m) => m.mediaType === MEDIA_TYPES.manifest && (m.artifactType === TINYX_ARTIFACT_TYPE || (m.artifactType === undefined && !m.platform)));
    for (const entry of entries) {
      const manifest = await client.getManifest(entry.digest);
      if (isArtifact(manifest.bytes)) return manifest;
    }
  }
  throw new TinyxError('E_NOT_TINYX_ARTIFACT', `${reference} is not a tinyx image (no manifest of artifact type ${TINYX_ARTIFACT_TYPE})`, { kind: 'user', hint: 'tinyx pull reads what tinyx push wrote' });
}

export type { ImageReference };
