import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEFAULT_MEMORY_MIB, TinyxError } from '@tinyx/image';
import type { CreateOptions } from '../machine.js';
import { VM_ID, runtimeDir } from '../runtime.js';
import type { XenBackend } from './backend.js';
import type { Hotplug } from './hotplug.js';
import type { XenVm } from './vm.js';

/**
 * The split toolstack (LightVM's idea on stock Xen): the slow part of
 * creating a domain (building it, attaching its devices, running the vif
 * hotplug script) is done ahead of time with `xl create -p`, and a run takes
 * one of those paused domains and only unpauses it: the xen backend's create
 * takes one when one waits ("claim, else create").
 *
 *   <runtime>/.pool/<id>.json         a paused domain waiting (its VM is <runtime>/<id>/ as any other)
 *   <runtime>/.pool/.claimed/<id>.json  taken by a run: rename(2) moves it here, so two runs never take the same one
 *   <runtime>/.pool/.targets/<key>     the size `pool fill` asked for, for the refill after a run
 *   <runtime>/.pool/.filling/<key>/    held by the one `pool fill` of that shape at work (mkdir; its pid inside)
 */
export interface PoolEntry {
  id: string;
  imageDir: string;
  type: 'pvh' | 'pv';
  memoryMiB: number;
  vcpus: number;
  /** The script that plugged its vif (at fill time: a run from the pool runs none). */
  hotplug?: Hotplug;
  createdAtEpochMs: number;
  /** How long its `xl create -p` took. */
  createMs: number;
}

/** What a pooled domain must match to serve a run. */
export interface PoolShape {
  memoryMiB?: number;
  vcpus?: number;
  type?: 'pvh' | 'pv';
}

export class XenPool {
  readonly dir: string;

  constructor(
    private readonly backend: XenBackend,
    dir?: string,
  ) {
    this.dir = dir ?? join(runtimeDir(), '.pool');
  }

  /**
   * Creates paused domains of the image until the pool holds `size` of that
   * shape. Sequential: each `xl create` already keeps dom0 busy. One fill per
   * shape works at a time (two refills after two runs would overfill): a
   * second waits for the first, then counts again. Returns the new entries;
   * the ones made before a failure stay in the pool.
   */
  async fill(
    imageDir: string,
    size: number,
    shape: PoolShape & { hotplug?: Hotplug; vifScript?: string; signal?: AbortSignal; onCreated?: (entry: PoolEntry) => void } = {},
  ): Promise<{ created: PoolEntry[]; total: number }> {
    const full = await this.resolveShape(imageDir, shape);
    await mkdir(this.dir, { recursive: true });
    const release = await this.lockFill(shapeKey(full), shape.signal);
    try {
      return await this.fillLocked(full, size, shape);
    } finally {
      await release();
    }
  }

  private async fillLocked(
    full: Required<PoolShape> & { imageDir: string },
    size: number,
    shape: { hotplug?: Hotplug; vifScript?: string; signal?: AbortSignal; onCreated?: (entry: PoolEntry) => void },
  ): Promise<{ created: PoolEntry[]; total: number }> {
    const created: PoolEntry[] = [];
    const hotplug = shape.hotplug ?? this.backend.hotplug;
    let have = (await this.entries(full)).length;
    while (have < size) {
      const started = performance.now();
      const options: CreateOptions = {
        paused: true,
        memoryMiB: full.memoryMiB,
        vcpus: full.vcpus,
        guest: full.type,
        xen: { hotplug, ...(shape.vifScript ? { vifScript: shape.vifScript } : {}) },
        ...(shape.signal ? { signal: shape.signal } : {}),
      };
      const vm = await this.backend.create(full.imageDir, options);
      const entry: PoolEntry = { id: vm.id, ...full, hotplug, createdAtEpochMs: Date.now(), createMs: Math.round(performance.now() - started) };
      try {
        await vm.update({ pooled: true });
        const temp = join(this.dir, `.${entry.id}.json.tmp`);
        await writeFile(temp, `${JSON.stringify(entry, null, 2)}\n`);
        await rename(temp, join(this.dir, `${entry.id}.json`));
      } catch (error) {
        // A domain no entry names would wait forever: it goes.
        await vm.destroy().catch(() => undefined);
        throw error;
      }
      created.push(entry);
      shape.onCreated?.(entry);
      have++;
    }
    // Remembered for the refill after a run takes one (tinyx run --backend xen).
    await mkdir(join(this.dir, '.targets'), { recursive: true });
    await writeFile(join(this.dir, '.targets', shapeKey(full)), `${JSON.stringify({ ...full, hotplug, size })}\n`);
    return { created, total: have };
  }

  /**
   * The fill lock of one shape: a directory made with mkdir (atomic), with
   * the holder's pid in it. A holder that died (Ctrl-C'd or killed) is
   * detected by its pid and its lock taken over. Waits while another holds it.
   * (Two waiters that find the same dead holder at the same moment can both
   * take over; the worst case is the overfill this lock prevents otherwise.)
   */
  private async lockFill(key: string, signal: AbortSignal | undefined): Promise<() => Promise<void>> {
    const lock = join(this.dir, '.filling', key);
    await mkdir(join(this.dir, '.filling'), { recursive: true });
    for (;;) {
      try {
        await mkdir(lock);
        await writeFile(join(lock, 'pid'), String(process.pid));
        return () => rm(lock, { recursive: true, force: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = Number(await readFile(join(lock, 'pid'), 'utf8').catch(() => ''));
      // No pid yet: the holder is between its mkdir and its write (or died there: then the lock is old).
      const stale = holder > 0 ? !alive(holder) : Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now())) > 10_000;
      if (stale) {
        await rm(lock, { recursive: true, force: true });
        continue;
      }
      if (signal?.aborted) throw new TinyxError('E_INTERRUPTED', 'interrupted while waiting for another pool fill', { kind: 'interrupted' });
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** The waiting domains, oldest first; of one image (and shape) when given. */
  async entries(filter?: { imageDir: string } & PoolShape): Promise<PoolEntry[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const entries: PoolEntry[] = [];
    for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.'))) {
      const entry = await readFile(join(this.dir, name), 'utf8').then((text) => JSON.parse(text) as PoolEntry, () => undefined);
      // An entry is only ever the one `fill` wrote as <id>.json: its id names the VM that claim and drain act on.
      if (!entry || name !== `${entry.id}.json` || !VM_ID.test(entry.id) || entry.id.includes('..')) continue;
      if (!filter || matches(entry, filter)) entries.push(entry);
    }
    return entries.sort((a, b) => a.createdAtEpochMs - b.createdAtEpochMs);
  }

  /**
   * Takes a waiting domain of the image for a run, or undefined when none is
   * there. The rename of its entry is the claim (atomic: a second claimer gets
   * ENOENT and tries the next). Its state is not asked here (one xl call
   * fewer on the way to running): take finds a dead one when it
   * unpauses it.
   */
  async claim(imageDir: string, shape: PoolShape = {}): Promise<XenVm | undefined> {
    const full = await this.resolveShape(imageDir, shape);
    const claimed = join(this.dir, '.claimed');
    await mkdir(claimed, { recursive: true });
    for (const entry of await this.entries(full)) {
      const marker = join(claimed, `${entry.id}.json`);
      try {
        await rename(join(this.dir, `${entry.id}.json`), marker);
      } catch {
        continue; // another run took it
      }
      try {
        const vm = await this.backend.get(entry.id);
        await vm.update({ pooled: false, startedAtEpochMs: Date.now() });
        return vm;
      } catch {
        continue;
      } finally {
        await rm(marker, { force: true });
      }
    }
    return undefined;
  }

  /**
   * A running domain of the image from the pool (unpaused), or undefined when
   * none waits. Its times count from `requested`.
   */
  async take(imageDir: string, shape: PoolShape, requested: number): Promise<XenVm | undefined> {
    for (let pooled = await this.claim(imageDir, shape); pooled; pooled = await this.claim(imageDir, shape)) {
      try {
        await pooled.unpause();
      } catch {
        // It died while waiting (or was destroyed by hand): remove what it left, take the next.
        await pooled.destroy().catch(() => undefined);
        continue;
      }
      pooled.startedAt = requested;
      pooled.origin = { from: 'pool', instantiationMs: Math.round(performance.now() - requested) };
      return pooled;
    }
    return undefined;
  }

  /** The size (and hotplug script) `pool fill` last asked for this image and shape, for a refill; undefined when never filled. */
  async target(imageDir: string, shape: PoolShape = {}): Promise<{ size: number; hotplug: Hotplug | undefined } | undefined> {
    const full = await this.resolveShape(imageDir, shape);
    const text = await readFile(join(this.dir, '.targets', shapeKey(full)), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    const target = JSON.parse(text) as { size: number; hotplug?: Hotplug };
    return { size: target.size, hotplug: target.hotplug };
  }

  /** Destroys the waiting domains (of one image when given); returns their ids. */
  async drain(imageDir?: string): Promise<string[]> {
    const filterDir = imageDir === undefined ? undefined : resolve(imageDir);
    const claimed = join(this.dir, '.claimed');
    await mkdir(claimed, { recursive: true });
    const drained: string[] = [];
    for (const entry of await this.entries()) {
      if (filterDir !== undefined && entry.imageDir !== filterDir) continue;
      const marker = join(claimed, `${entry.id}.json`);
      try {
        await rename(join(this.dir, `${entry.id}.json`), marker);
      } catch {
        continue;
      }
      try {
        const vm = await this.backend.get(entry.id).catch(() => undefined);
        await vm?.destroy();
        drained.push(entry.id);
      } finally {
        await rm(marker, { force: true });
      }
    }
    if (filterDir === undefined) await rm(join(this.dir, '.targets'), { recursive: true, force: true });
    else for (const name of await readdir(join(this.dir, '.targets')).catch(() => [] as string[])) {
      const target = await readFile(join(this.dir, '.targets', name), 'utf8').then((t) => JSON.parse(t) as { imageDir: string }, () => undefined);
      if (target?.imageDir === filterDir) await rm(join(this.dir, '.targets', name), { force: true });
    }
    return drained;
  }

  private async resolveShape(imageDir: string, shape: PoolShape): Promise<Required<PoolShape> & { imageDir: string }> {
    const { image, type } = await this.backend.openImage(imageDir, shape.type);
    return { imageDir: image.dir, type, memoryMiB: shape.memoryMiB ?? DEFAULT_MEMORY_MIB, vcpus: shape.vcpus ?? 1 };
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function matches(entry: PoolEntry, filter: { imageDir: string } & PoolShape): boolean {
  return (
    entry.imageDir === resolve(filter.imageDir) &&
    (filter.type === undefined || entry.type === filter.type) &&
    (filter.memoryMiB === undefined || entry.memoryMiB === filter.memoryMiB) &&
    (filter.vcpus === undefined || entry.vcpus === filter.vcpus)
  );
}

function shapeKey(shape: Required<PoolShape> & { imageDir: string }): string {
  return createHash('sha256').update(JSON.stringify([shape.imageDir, shape.type, shape.memoryMiB, shape.vcpus])).digest('hex').slice(0, 16);
}
