import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TinyxError } from '../errors.js';

export interface Credentials {
  username: string;
  password: string;
}

/**
 * The files `docker login` and `podman login` write, in the order tinyx reads
 * them: Docker's config.json ($DOCKER_CONFIG, else ~/.docker), then the
 * containers auth file ($REGISTRY_AUTH_FILE, else
 * $XDG_RUNTIME_DIR/containers/auth.json).
 */
export function credentialFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  return [
    join(env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker'), 'config.json'),
    ...(env.REGISTRY_AUTH_FILE ? [env.REGISTRY_AUTH_FILE] : env.XDG_RUNTIME_DIR ? [join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json')] : []),
  ];
}

/** The keys a registry's entry may have in `auths`: the host, or the URL forms older clients wrote. */
function keysFor(registry: string): string[] {
  const hosts = registry === 'docker.io' ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [registry];
  return hosts.flatMap((host) => [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`]);
}

/**
 * The user name and password for `registry` from the first file that has an
 * entry for it, or undefined for none (an anonymous registry). An entry kept
 * by a credential helper (credsStore, credHelpers) is refused with a named
 * error: tinyx does not run helpers.
 */
export async function registryCredentials(registry: string, files = credentialFiles()): Promise<Credentials | undefined> {
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    let config: { auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>; credsStore?: string; credHelpers?: Record<string, string> };
    try {
      config = JSON.parse(text) as typeof config;
    } catch (error) {
      throw new TinyxError('E_REGISTRY_AUTH', `${file} is not valid JSON: ${(error as Error).message}`, { kind: 'user', hint: 'fix the file, or log in again (docker login / podman login)' });
    }
    const keys = keysFor(registry);
    const key = keys.find((k) => config.auths?.[k] !== undefined);
    const entry = key === undefined ? undefined : config.auths![key]!;
    const helper = keys.map((k) => config.credHelpers?.[k]).find((h) => h !== undefined) ?? (entry && !entry.auth && !entry.username ? config.credsStore : undefined);
    if (helper) {
      throw new TinyxError('E_REGISTRY_AUTH', `${file} keeps the credentials of ${registry} in the credential helper docker-credential-${helper}, which tinyx does not run`, {
        kind: 'user',
        hint: `give tinyx a file of its own: DOCKER_CONFIG=<dir> docker login ${registry}, with no credsStore in <dir>/config.json`,
      });
    }
    if (!entry) continue;
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    throw new TinyxError('E_REGISTRY_AUTH', `${file}: the entry for ${registry} holds no user name and password${entry.identitytoken ? ' (only an identity token, which tinyx does not use)' : ''}`, {
      kind: 'user',
      hint: `log in again: docker login ${registry}`,
    });
  }
  return undefined;
}
