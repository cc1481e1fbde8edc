// Warm pool: generic, already-booted VMs per spec, so a deploy is a code load instead of a boot.
// Each spec's first VM is cold-booted and snapshotted once (the base snapshot); later ones are restored
// from it, which is an order of magnitude faster than booting. Base snapshots persist across restarts.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { warmUp } from '../guest/warmup.js';
import type { Snapshot, Vm, VmDriver } from './driver.js';
import { specKey, type VmSpec } from './spec.js';

export type VmSource = 'warm' | 'restore' | 'boot';

/**
 * What a base snapshot holds; older ones are rebuilt. 2: the runtime after a warm-up (a code load and a few
 * invocations), so a restored VM's first load skips the runtime's lazy start-up (Python: seconds under TCG).
 * 3: a task disk (the placeholder) after the root disk.
 */
const baseRecipe = 3;
/** A clock sample whose round trip is at most this is good enough to hand a VM out (its error: half of it). */
const takeSampleMs = 8;

export interface PoolOptions {
  /** Where base snapshots live; include the image hash in it so new images never meet old snapshots. */
  snapshotDir: string;
  /** Specs kept warm, and how many VMs of each. */
  warm: Array<{ spec: VmSpec; size: number }>;
  log?: (message: string) => void;
}

export class VmPool {
  private readonly idle = new Map<string, Vm[]>();
  private readonly snapshots = new Map<string, Promise<Snapshot>>();
  private refilling: Promise<void> = Promise.resolve();
  private closed = false;
  /** The last few restores' durations (ms). */
  private readonly restoreTimes: number[] = [];

  constructor(
    private readonly driver: VmDriver,
    private readonly options: PoolOptions,
  ) {}

  /** Starts filling the warm pool in the background. */
  start(): void {
    for (const { spec } of this.options.warm) this.scheduleRefill(spec);
  }

  /** A running VM of `spec` with nothing loaded, from the warm pool if one is there. */
  async take(spec: VmSpec): Promise<{ vm: Vm; source: VmSource }> {
    const idle = this.idle.get(specKey(spec)) ?? [];
    let vm: Vm | undefined;
    while ((vm = idle.shift())) {
      vm.prioritise(); // it waited at a lower CPU priority; it serves from now on
      // It may have waited long: its clock is checked (and corrected) before anything of the caller's runs. The
      // first ping of an idle guest is slower (5-6 ms under TCG), and its answer already pins the clock to 3 ms.
      const ready = vm.state === 'running' && (await vm.syncClock(2000, takeSampleMs).then(() => true, () => false));
      if (ready && !this.closed) break;
      void vm.stop();
    }
    this.scheduleRefill(spec);
    if (vm) return { vm, source: 'warm' };
    const known = this.snapshots.has(specKey(spec)) || existsSync(this.metaPath(spec));
    return { vm: await this.fresh(spec), source: known ? 'restore' : 'boot' };
  }

  /** Idle VMs per kept-warm spec. */
  idleBySpec(): Array<{ spec: VmSpec; idle: number }> {
    return this.options.warm.map(({ spec }) => ({ spec, idle: this.idle.get(specKey(spec))?.length ?? 0 }));
  }

  /** Idle VM counts per spec key. */
  sizes(): Record<string, number> {
    return Object.fromEntries([...this.idle].map(([key, vms]) => [key, vms.length]));
  }

  /** Waits until the background refills scheduled so far are done. */
  async settled(): Promise<void> {
    await this.refilling;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.refilling.catch(() => {});
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(all.map((vm) => vm.stop()));
  }

  /** The median of the last restores' durations (ms), or null before the first. */
  restoreMs(): number | null {
    const sorted = [...this.restoreTimes].sort((a, b) => a - b);
    return sorted.length === 0 ? null : (sorted[Math.floor(sorted.length / 2)] ?? null);
  }

  /** A VM restored from the spec's base snapshot, creating that snapshot first if needed. */
  private async fresh(spec: VmSpec, priority: 'urgent' | 'background' = 'urgent'): Promise<Vm> {
    const snapshot = await this.baseSnapshot(spec);
    const started = performance.now();
    const vm = await this.driver.restore(snapshot, priority);
    this.restoreTimes.push(performance.now() - started);
    if (this.restoreTimes.length > 9) this.restoreTimes.shift();
    return vm;
  }

  private baseSnapshot(spec: VmSpec): Promise<Snapshot> {
    const key = specKey(spec);
    let snapshot = this.snapshots.get(key);
    if (!snapshot) {
      snapshot = this.loadOrCreateSnapshot(spec);
      this.snapshots.set(key, snapshot);
      snapshot.catch(() => this.snapshots.delete(key)); // let a later take try again
    }
    return snapshot;
  }

  private metaPath(spec: VmSpec): string {
    return join(this.options.snapshotDir, `${specKey(spec)}.json`);
  }

  private async loadOrCreateSnapshot(spec: VmSpec): Promise<Snapshot> {
    const metaPath = this.metaPath(spec);
    if (existsSync(metaPath)) {
      const { recipe, ...snapshot } = JSON.parse(await readFile(metaPath, 'utf8')) as Snapshot & { recipe?: number };
      const filesThere = existsSync(snapshot.path) && (!snapshot.ramPath || existsSync(snapshot.ramPath));
      // A snapshot holds a kernel that parsed its command line at boot: a changed one needs a new snapshot.
      const sameKernelArgs = snapshot.cmdline === this.driver.kernelCmdline(spec);
      if (filesThere && sameKernelArgs && snapshot.accel === this.driver.accel && recipe === baseRecipe) return snapshot;
    }
    await mkdir(this.options.snapshotDir, { recursive: true });
    this.options.log?.(`cold-booting a ${specKey(spec)} VM for its base snapshot`);
    const vm = await this.driver.boot(spec);
    try {
      await warmUp(vm.channel, spec.runtime);
      // Written under a private name, then renamed: a crash mid-write never leaves a snapshot that looks
      // complete, and two processes building the same snapshot do not write into each other's files.
      const base = join(this.options.snapshotDir, `${specKey(spec)}-${randomUUID().slice(0, 8)}`);
      const partial = await vm.snapshot(`${base}.partial`);
      const snapshot = { ...partial, path: `${base}.vmstate`, ramPath: partial.ramPath && `${base}.ram` };
      await rename(partial.path, snapshot.path);
      if (partial.ramPath && snapshot.ramPath) await rename(partial.ramPath, snapshot.ramPath);
      await writeFile(`${base}.json`, JSON.stringify({ ...snapshot, recipe: baseRecipe }));
      await rename(`${base}.json`, metaPath);
      return snapshot;
    } finally {
      await vm.stop();
    }
  }

  private scheduleRefill(spec: VmSpec, attempt = 0): void {
    const target = this.options.warm.find((w) => specKey(w.spec) === specKey(spec))?.size ?? 0;
    if (target === 0 || this.closed) return;
    // One refill at a time: restores compete for the same few cores as live invocations.
    this.refilling = this.refilling.then(() => this.refill(spec, target)).catch((error: unknown) => {
      const retryMs = Math.min(30_000, 500 * 2 ** attempt);
      this.options.log?.(`warm pool refill for ${specKey(spec)} failed (retry in ${retryMs} ms): ${(error as Error).message}`);
      setTimeout(() => this.scheduleRefill(spec, attempt + 1), retryMs).unref();
    });
  }

  private async refill(spec: VmSpec, target: number): Promise<void> {
    const key = specKey(spec);
    while (!this.closed && (this.idle.get(key)?.length ?? 0) < target) {
      const vm = await this.fresh(spec, 'background'); // a function waiting for a VM restores first
      // Off the request path, so a deploy that takes this VM gets one whose first invoke is already fast.
      try {
        await warmUp(vm.channel, spec.runtime);
      } catch (error) {
        await vm.stop();
        throw error;
      }
      if (this.closed) {
        await vm.stop();
        return;
      }
      const list = this.idle.get(key) ?? [];
      vm.startWatchdog(15_000, 10_000); // a warm VM that hangs is dropped, not handed out
      list.push(vm);
      this.idle.set(key, list);
      vm.onFailure(() => {
        const at = list.indexOf(vm);
        if (at >= 0) list.splice(at, 1);
      });
    }
  }
}
