// SnapStart: a function's VM snapshotted right after its code initialised, so that waking it restores that
// VM instead of running the initialisation again. One snapshot per function (of its current deployment),
// on this host's disk under a byte budget: the least recently used go first. Each snapshot has a small JSON
// file beside it, so snapshots outlive the server; one that no longer fits this host (new guest images, a
// new kernel command line, another accelerator, a package image that is gone) is dropped when it is found.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Snapshot, Vm, VmDriver } from './driver.js';
import type { BootFiles } from './qemu-args.js';

export interface FunctionSnapshot {
  functionId: string;
  /** Which deployment the VM held (version and shape): it only serves that one. */
  deployment: string;
  /** How long the code took to initialise when it was loaded. */
  initMs: number;
  snapshot: Snapshot;
  createdAt: string;
  /** When it was taken or last restored (ms since the epoch): the least recent is evicted first. */
  usedAt: number;
}

export interface FunctionSnapshotsOptions {
  dir: string;
  driver: Pick<VmDriver, 'restore' | 'kernelCmdline' | 'accel'>;
  /** The guest files VMs boot from now: a snapshot of other ones is stale. */
  boot: BootFiles;
  /** Disk all function snapshots may use together. */
  budgetBytes: number;
  /** What a restore of a base snapshot takes here (ms), until function snapshots' own restores are timed. */
  baseRestoreMs: () => number | null;
  log: (message: string) => void;
}

/** Weight of the newest restore in the running estimate of a restore's duration. */
const restoreWeight = 0.3;
/**
 * A function's snapshot holds all its memory, so it restores slower than a base snapshot (whose RAM file is
 * mapped, not read); and an initialisation must be clearly slower than a restore to be worth a snapshot's disk.
 */
const functionRestoreFactor = 1.5;
const margin = 1.25;

export class FunctionSnapshots {
  private readonly entries = new Map<string, FunctionSnapshot>();
  /** Functions deleted: a capture still writing for one of them throws its files away. */
  private readonly removed = new Set<string>();
  private restoreMsEstimate: number | null = null;
  private lastUse = 0;

  private constructor(private readonly options: FunctionSnapshotsOptions) {}

  /** Reads the snapshots kept on disk; those of other images, kernel settings or accelerators are deleted. */
  static async open(options: FunctionSnapshotsOptions): Promise<FunctionSnapshots> {
    const snapshots = new FunctionSnapshots(options);
    await mkdir(options.dir, { recursive: true });
    const names = await readdir(options.dir);
    const kept = new Set<string>();
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const entry = await readEntry(join(options.dir, name));
      if (entry && snapshots.fits(entry)) {
        snapshots.entries.set(entry.functionId, entry);
        snapshots.lastUse = Math.max(snapshots.lastUse, entry.usedAt);
        kept.add(entry.snapshot.path);
      } else {
        await rm(join(options.dir, name), { force: true });
      }
    }
    // Files no entry names: partial writes of a crashed server, or snapshots whose entry was dropped above.
    for (const name of names.filter((n) => !n.endsWith('.json'))) {
      if (!kept.has(join(options.dir, name))) await rm(join(options.dir, name), { force: true });
    }
    return snapshots;
  }

  /** The function's snapshot of `deployment`, if it has one. */
  find(functionId: string, deployment: string): FunctionSnapshot | null {
    const entry = this.entries.get(functionId);
    return entry && entry.deployment === deployment ? entry : null;
  }

  /** Bytes the function's snapshot takes on disk (0 without one). */
  bytes(functionId: string): number {
    return this.entries.get(functionId)?.snapshot.bytes ?? 0;
  }

  get totalBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.snapshot.bytes;
    return total;
  }

  /** The initialisation time beyond which a function is snapshotted; null until a restore was timed here. */
  minInitMs(): number | null {
    const base = this.options.baseRestoreMs();
    const restoreMs = this.restoreMsEstimate ?? (base === null ? null : base * functionRestoreFactor);
    return restoreMs === null ? null : margin * restoreMs;
  }

  /** Whether a restore is expected to clearly beat an initialisation that took `initMs` (unknown: no). */
  beats(initMs: number): boolean {
    const min = this.minInitMs();
    return min !== null && initMs > min;
  }

  /**
   * Snapshots `vm` (which has just initialised `deployment`) and resumes it: the VM goes on serving, renewed
   * like every restored VM. Replaces the function's older snapshot; evicts the least recently used others
   * while over budget. Returns null if the snapshot alone is over budget or the function was deleted.
   */
  async capture(functionId: string, deployment: string, vm: Vm, initMs: number): Promise<FunctionSnapshot | null> {
    const base = join(this.options.dir, `${functionId}-${randomUUID().slice(0, 8)}`);
    let snapshot: Snapshot;
    try {
      const partial = await vm.snapshot(`${base}.partial`);
      snapshot = { ...partial, path: `${base}.vmstate` };
      await rename(partial.path, snapshot.path);
    } finally {
      if (vm.state === 'paused') await vm.resume();
    }
    const entry: FunctionSnapshot = { functionId, deployment, initMs, snapshot, createdAt: new Date().toISOString(), usedAt: this.now() };
    if (this.removed.has(functionId) || snapshot.bytes > this.options.budgetBytes) {
      await rm(snapshot.path, { force: true });
      if (!this.removed.has(functionId)) this.options.log(`function ${functionId}: its snapshot (${mib(snapshot.bytes)}) is larger than the whole snapshot budget; not kept`);
      return null;
    }
    const previous = this.entries.get(functionId);
    await this.writeEntry(entry);
    this.entries.set(functionId, entry);
    if (previous) await rm(previous.snapshot.path, { force: true });
    await this.evictOverBudget(functionId);
    return entry;
  }

  /**
   * A VM restored from `entry`; the restore's duration refines the estimate `beats` uses. A snapshot that
   * restores slower (by that running estimate, so one restore on a busy host does not decide) than its code
   * initialises is dropped after this restore: it does not pay for its disk.
   */
  async restore(entry: FunctionSnapshot): Promise<Vm> {
    const started = performance.now();
    const vm = await this.options.driver.restore(entry.snapshot);
    const tookMs = performance.now() - started;
    const estimate = this.restoreMsEstimate === null ? tookMs : (1 - restoreWeight) * this.restoreMsEstimate + restoreWeight * tookMs;
    this.restoreMsEstimate = estimate;
    if (this.entries.get(entry.functionId) !== entry) return vm;
    if (estimate > entry.initMs) {
      this.options.log(`function ${entry.functionId}: snapshots restore in ${Math.round(estimate)} ms here, slower than its ${Math.round(entry.initMs)} ms initialisation; dropped`);
      await this.remove(entry.functionId, false);
    } else {
      entry.usedAt = this.now();
      void this.writeEntry(entry).catch(() => {}); // off the wake's path: only the eviction order would be stale
    }
    return vm;
  }

  /** Drops the function's snapshot (deleted, or its snapshot failed to restore). */
  async remove(functionId: string, forGood = true): Promise<void> {
    if (forGood) this.removed.add(functionId);
    const entry = this.entries.get(functionId);
    this.entries.delete(functionId);
    await rm(this.metaPath(functionId), { force: true });
    if (entry) await rm(entry.snapshot.path, { force: true });
  }

  /** Drops snapshots of functions that no longer exist (deleted while the server was down). */
  async keepOnly(functionIds: ReadonlySet<string>): Promise<void> {
    for (const id of [...this.entries.keys()]) if (!functionIds.has(id)) await this.remove(id);
  }

  private async evictOverBudget(keep: string): Promise<void> {
    const others = [...this.entries.values()].filter((e) => e.functionId !== keep).sort((a, b) => a.usedAt - b.usedAt);
    for (const entry of others) {
      if (this.totalBytes <= this.options.budgetBytes) return;
      this.options.log(`function ${entry.functionId}: snapshot evicted (snapshots over their ${mib(this.options.budgetBytes)} budget)`);
      await this.remove(entry.functionId, false);
    }
  }

  /** A use time later than every earlier one, so two uses within a millisecond still have an order. */
  private now(): number {
    this.lastUse = Math.max(Date.now(), this.lastUse + 1);
    return this.lastUse;
  }

  private fits(entry: FunctionSnapshot): boolean {
    const { snapshot } = entry;
    const { boot, driver } = this.options;
    return existsSync(snapshot.path)
      // A packaged function's VM restores with its image on the task disk: without that file it cannot start.
      && (snapshot.taskImage === null || existsSync(snapshot.taskImage))
      && snapshot.accel === driver.accel
      && snapshot.cmdline === driver.kernelCmdline(snapshot.spec)
      && snapshot.boot.kernel === boot.kernel && snapshot.boot.initramfs === boot.initramfs && snapshot.boot.rootfs === boot.rootfs;
  }

  private metaPath(functionId: string): string {
    return join(this.options.dir, `${functionId}.json`);
  }

  /** Written under a private name, then renamed: a crash never leaves half an entry. */
  private async writeEntry(entry: FunctionSnapshot): Promise<void> {
    const path = this.metaPath(entry.functionId);
    const partial = `${path}.${randomUUID().slice(0, 8)}.partial`;
    await writeFile(partial, JSON.stringify(entry));
    await rename(partial, path);
  }
}

/** An entry file as this server wrote it, or null if it is unreadable or of an older format. */
async function readEntry(path: string): Promise<FunctionSnapshot | null> {
  try {
    // Written by this server, not by a guest or a client: the checks only catch files of an older format.
    const entry = JSON.parse(await readFile(path, 'utf8')) as FunctionSnapshot;
    const complete = typeof entry.functionId === 'string' && typeof entry.deployment === 'string'
      && typeof entry.initMs === 'number' && typeof entry.usedAt === 'number' && typeof entry.snapshot?.path === 'string'
      // Snapshots from before the task disk have no such field (and no such device: they cannot restore).
      && (entry.snapshot.taskImage === null || typeof entry.snapshot.taskImage === 'string');
    return complete ? entry : null;
  } catch {
    return null;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
