import test from 'ava';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TinyxError, credentialFiles, formatReference, parseReference, registryCredentials } from '@tinyx/builder';
import { isLoopback, parseRepository, tagOf } from '@tinyx/builder/internals';

test('image references as Docker, Podman and skopeo read them', (t) => {
  t.deepEqual(parseReference('localhost:5000/tinyx/nginx:1.0'), { registry: 'localhost:5000', repository: 'tinyx/nginx', tag: '1.0', digest: undefined });
  t.deepEqual(parseReference('ghcr.io/you/nginx'), { registry: 'ghcr.io', repository: 'you/nginx', tag: 'latest', digest: undefined });
  t.deepEqual(parseReference('nginx'), { registry: 'docker.io', repository: 'library/nginx', tag: 'latest', digest: undefined }, "Docker Hub's library/");
  t.deepEqual(parseReference('you/nginx:2'), { registry: 'docker.io', repository: 'you/nginx', tag: '2', digest: undefined }, 'a first component without "." or ":" is a repository, not a registry');
  t.deepEqual(parseReference('localhost/nginx'), { registry: 'localhost', repository: 'nginx', tag: 'latest', digest: undefined });
  const digest = `sha256:${'a'.repeat(64)}`;
  t.deepEqual(parseReference(`127.0.0.1:5000/x@${digest}`), { registry: '127.0.0.1:5000', repository: 'x', tag: undefined, digest });
  t.is(formatReference(parseReference('nginx')), 'docker.io/library/nginx:latest');
});

test('a shared cache names a repository: a tag or a digest in it is refused, with the reference to give instead', (t) => {
  t.deepEqual(parseRepository('localhost:5000/tinyx-cache', '--cache-from'), { registry: 'localhost:5000', repository: 'tinyx-cache', tag: undefined, digest: undefined });
  t.deepEqual(parseRepository('ghcr.io/you/cache', '--cache-to'), { registry: 'ghcr.io', repository: 'you/cache', tag: undefined, digest: undefined });
  const tagged = t.throws(() => parseRepository('ghcr.io/you/cache:main', '--cache-to'), { instanceOf: TinyxError });
  t.is(tagged?.code, 'E_REFERENCE');
  t.regex(tagged!.message, /^--cache-to ghcr\.io\/you\/cache:main: name a repository without a tag or digest/);
  t.is(tagged?.hint, '--cache-to ghcr.io/you/cache');
  t.throws(() => parseRepository(`ghcr.io/you/cache@sha256:${'a'.repeat(64)}`, '--cache-from'), { message: /without a tag or digest/ });
  t.is(tagOf('kernels', '0123456789abcdef01234567'), 'kernels-0123456789abcdef01234567');
});

test('registries on this machine, which are asked in plain HTTP when they do not speak TLS', (t) => {
  for (const yes of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.9.8.7', '[::1]:5000']) t.true(isLoopback(yes), yes);
  for (const no of ['ghcr.io', '10.0.0.1:5000', 'localhost.example.com', '128.0.0.1', 'docker.io', '[::2]:5000']) t.false(isLoopback(no), no);
});

test('a bad reference names what is wrong in it', (t) => {
  const bad = (text: string, message: RegExp): void => {
    const error = t.throws(() => parseReference(text), { instanceOf: TinyxError });
    t.is(error?.code, 'E_REFERENCE');
    t.is(error?.kind, 'user');
    t.regex(error?.message ?? '', message, text);
  };
  bad('localhost:5000/Tinyx/nginx', /"Tinyx" is not a repository name component/);
  bad('localhost:5000/nginx:bad tag', /the tag "bad tag" is not a tag/);
  bad('localhost:5000/nginx@sha256:abc', /the digest "sha256:abc" is not sha256:<64 hex digits>/);
  bad('localhost:5000/', /names no repository/);
  bad('localhost:5000//x', /names no repository/);
});

test('credentials from docker login and podman login files; a credential helper is named, not run', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tinyx-unit-creds-'));
  const docker = join(dir, 'config.json');
  const podman = join(dir, 'auth.json');
  t.deepEqual(credentialFiles({ DOCKER_CONFIG: dir, REGISTRY_AUTH_FILE: podman }), [docker, podman]);
  t.deepEqual(credentialFiles({ HOME: '/home/u', XDG_RUNTIME_DIR: '/run/user/1' }), ['/home/u/.docker/config.json', '/run/user/1/containers/auth.json']);
  await writeFile(docker, JSON.stringify({ auths: { 'ghcr.io': { auth: Buffer.from('me:s3:cret').toString('base64') }, 'https://index.docker.io/v1/': { username: 'hub', password: 'pw' } }, credHelpers: { 'gcr.io': 'gcloud' } }));
  await writeFile(podman, JSON.stringify({ auths: { 'quay.io': { auth: Buffer.from('q:pw').toString('base64') } } }));
  t.deepEqual(await registryCredentials('ghcr.io', [docker, podman]), { username: 'me', password: 's3:cret' }, 'a password may hold ":"');
  t.deepEqual(await registryCredentials('docker.io', [docker, podman]), { username: 'hub', password: 'pw' }, "Docker Hub's entry under its v1 URL");
  t.deepEqual(await registryCredentials('quay.io', [docker, podman]), { username: 'q', password: 'pw' }, 'from the second file');
  t.is(await registryCredentials('localhost:5000', [docker, podman]), undefined, 'none: anonymous');
  t.is(await registryCredentials('ghcr.io', [join(dir, 'absent.json')]), undefined);
  const helper = await t.throwsAsync(registryCredentials('gcr.io', [docker]), { instanceOf: TinyxError });
  t.regex(helper?.message ?? '', /keeps the credentials of gcr\.io in the credential helper docker-credential-gcloud/);
  await writeFile(docker, '{ not json');
  const broken = await t.throwsAsync(registryCredentials('ghcr.io', [docker]), { instanceOf: TinyxError });
  t.regex(broken?.message ?? '', /config\.json is not valid JSON/);
});
