import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TinyxError, run } from '@tinyx/image';

/**
 * Bridged networking, for root: each VM gets a tap device on one host bridge
 * and an address of its own, so that the host (and other VMs) reach it
 * directly, with no port forwards. The bridge is made on first use and left
 * in place; taps and address leases go with their VM.
 *
 *   tinyx0            the bridge, 10.213.0.1/16 (the guests' gateway)
 *   tx-<vm suffix>    one tap per VM, enslaved to the bridge
 *   <runtime>/.leases/10.213.x.y   the address held by a VM (contains its id)
 */
export interface BridgeConfig {
  bridge: string;
  /** The bridge's own address: the first three parts are shared by the guests. */
  gateway: string;
  prefixLength: number;
}

export const DEFAULT_BRIDGE: BridgeConfig = { bridge: 'tinyx0', gateway: '10.213.0.1', prefixLength: 16 };

export interface BridgedNic {
  bridge: string;
  tap: string;
  address: string;
  prefixLength: number;
  gateway: string;
  mac: string;
}

/** The tap's name for a VM id: interface names have at most 15 bytes, so it keeps the id's random suffix. */
export function tapName(vmId: string): string {
  return `tx-${vmId.slice(vmId.lastIndexOf('-') + 1)}`.slice(0, 15);
}

/** QEMU's MAC prefix (52:54:00, what QEMU itself gives out) and Xen's (00:16:3e, Xen's OUI, what xl gives out). */
export const MAC_PREFIX = { qemu: '52:54:00', xen: '00:16:3e' } as const;

/** A MAC address derived from the VM id (stable for the VM, different between VMs), under a hypervisor's prefix. */
export function macFor(vmId: string, prefix: string = MAC_PREFIX.qemu): string {
  const suffix = vmId.slice(vmId.lastIndexOf('-') + 1).padStart(6, '0').slice(-6);
  return `${prefix}:${suffix.slice(0, 2)}:${suffix.slice(2, 4)}:${suffix.slice(4, 6)}`;
}

/** The guest addresses of a /16 behind the gateway, in order (x.y.0.2 onwards, skipping the gateway and broadcasts). */
export function* guestAddresses(config: BridgeConfig): Generator<string> {
  const [a, b] = config.gateway.split('.');
  const size = 2 ** (32 - config.prefixLength);
  for (let n = 2; n < size - 1; n++) {
    const address = `${a}.${b}.${n >> 8}.${n & 255}`;
    if (address !== config.gateway && (n & 255) !== 0 && (n & 255) !== 255) yield address;
  }
}

/** Makes the bridge when it does not exist (another tinyx process may make it at the same moment). */
export async function ensureBridge(config: BridgeConfig = DEFAULT_BRIDGE): Promise<void> {
  if (await interfaceExists(config.bridge)) return;
  requireRootFor('a bridged network');
  const made = await run('ip', ['link', 'add', config.bridge, 'type', 'bridge'], { allowFailure: true });
  if (made.exitCode !== 0 && !/exists/i.test(made.stderr)) {
    throw new TinyxError('E_NETWORK', `could not create the bridge ${config.bridge}: ${made.stderr.trim()}`, { kind: 'host' });
  }
  await run('ip', ['addr', 'replace', `${config.gateway}/${config.prefixLength}`, 'dev', config.bridge]);
  await run('ip', ['link', 'set', config.bridge, 'up']);
}

/**
 * A tap on the bridge and a leased address for the VM. Undone by
 * releaseNic, also when this throws halfway.
 */
export async function attachNic(vmId: string, runtime: string, config: BridgeConfig = DEFAULT_BRIDGE, restore?: { address: string; mac: string }): Promise<BridgedNic> {
  requireRootFor('a bridged network');
  await ensureBridge(config);
  const address = await leaseAddress(vmId, runtime, config, restore?.address);
  const nic: BridgedNic = { bridge: config.bridge, tap: tapName(vmId), address, prefixLength: config.prefixLength, gateway: config.gateway, mac: restore?.mac ?? macFor(vmId) };
  try {
    await run('ip', ['tuntap', 'add', 'dev', nic.tap, 'mode', 'tap']);
    await run('ip', ['link', 'set', nic.tap, 'master', config.bridge]);
    await run('ip', ['link', 'set', nic.tap, 'up']);
  } catch (error) {
    await releaseNic(nic, runtime);
    throw new TinyxError('E_NETWORK', `could not plug ${vmId} into ${config.bridge}: ${(error as Error).message}`, { kind: 'host', cause: error });
  }
  return nic;
}

/** Removes the tap and gives the address back. Safe to call twice, and for a tap that was never made. */
export async function releaseNic(nic: BridgedNic, runtime: string): Promise<void> {
  if (await interfaceExists(nic.tap)) await run('ip', ['link', 'del', nic.tap], { allowFailure: true });
  await releaseLease(nic.address, runtime);
}

/** Gives an address back (leaseAddress). Safe to call twice. */
export async function releaseLease(address: string, runtime: string): Promise<void> {
  await rm(join(runtime, '.leases', address), { recursive: true, force: true });
}

/**
 * The lowest free address: a lease is a directory made with mkdir (atomic,
 * so two VMs started at once never share one). A lease whose VM has no
 * runtime directory any more was left by a crash, and is taken over.
 */
export async function leaseAddress(vmId: string, runtime: string, config: BridgeConfig, only?: string): Promise<string> {
  const leases = join(runtime, '.leases');
  await mkdir(leases, { recursive: true });
  const taken = new Set(await readdir(leases));
  for (const address of only ? [only] : guestAddresses(config)) {
    const lease = join(leases, address);
    if (taken.has(address)) {
      const owner = await readFile(join(lease, 'owner'), 'utf8').catch(() => undefined);
      if (owner === undefined || (await stat(join(runtime, owner)).then(() => true, () => false))) continue;
      await rm(lease, { recursive: true, force: true });
    }
    try {
      await mkdir(lease);
    } catch {
      continue;
    }
    await writeFile(join(lease, 'owner'), vmId);
    return address;
  }
  if (only) {
    throw new TinyxError('E_NETWORK', `the saved VM had the address ${only}, and another VM holds it now`, { kind: 'user', hint: 'stop that VM first (tinyx ps shows addresses)' });
  }
  throw new TinyxError('E_NETWORK', `no free address left on ${config.bridge} (${config.gateway}/${config.prefixLength})`, { kind: 'host', hint: 'stop VMs you no longer need: tinyx ps, tinyx stop <id>' });
}

export async function interfaceExists(name: string): Promise<boolean> {
  return stat(`/sys/class/net/${name}`).then(() => true, () => false);
}

function requireRootFor(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new TinyxError('E_NOT_ROOT', `${what} needs root (it creates a bridge and tap devices)`, { kind: 'host', hint: 'run as root, or use the default user-mode network (--network user) with --publish' });
  }
}
