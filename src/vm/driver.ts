// The VM layer's public surface: a driver boots or restores VMs of a spec. QEMU microvm today;
// a Firecracker driver would implement the same two interfaces (with a vsock channel transport).
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { GuestChannel } from '../guest/channel.js';
import type { GuestImages } from '../images/build.js';
import { Limiter } from '../limiter.js';
import { chooseAccelerator } from './accel.js';
import { loadTscSetting, measureClockRate, saveTscSetting, type TscSetting } from './guest-clock.js';
import { kernelCmdline as qemuKernelCmdline } from './qemu-args.js';
import { QemuVm, type Snapshot, type VmState } from './qemu-vm.js';
import { checkSpec, type Accelerator, type VmSpec } from './spec.js';
import { ensurePlaceholder } from './task-image.js';

export interface Vm {
  readonly id: string;
  readonly pid: number | undefined;
  readonly state: VmState;
  readonly spec: VmSpec;
  readonly channel: GuestChannel;
  readonly failure: string | null;
  snapshot(path: string): Promise<Snapshot>;
  resume(): Promise<void>;
  stop(): Promise<void>;
  onFailure(listener: (reason: string) => void): void;
  /** Pings the guest now and then; a hung idle guest fails the VM, and every answer keeps its clock right. */
  startWatchdog(intervalMs: number, timeoutMs: number): void;
  /** Corrects the guest's wall clock now (a VM renews it itself after a boot, restore or resume). */
  syncClock(timeoutMs?: number, goodEnoughMs?: number): Promise<void>;
  /** A VM restored in the background (the warm pool) is about to serve: normal CPU priority from now on. */
  prioritise(): void;
  consoleTail(bytes?: number): string;
  /**
   * Backs the task disk with a package's image (an ext4 image of exactly taskDiskBytes), before the guest
   * first reads it: at most once per VM, a second call is refused (TaskDiskError). A snapshot taken after
   * it records the image, and VMs restored from that snapshot start with it attached.
   */
  attachTask(image: string): Promise<void>;
}

/** What a driver reports as it starts VMs, for metrics. */
export interface DriverEvents {
  booted: [{ ms: number }];
  restored: [{ ms: number; background: boolean }];
}

/** A VM whose process is alive, as the driver counts it. */
export type LiveVm = Pick<Vm, 'id' | 'pid' | 'state' | 'spec'>;

export interface VmDriver {
  readonly name: string;
  readonly events: EventEmitter<DriverEvents>;
  /** Every VM whose process is alive: starting, serving, in the warm pool, or failed and not yet reaped. */
  liveVms(): LiveVm[];
  readonly accel: Accelerator;
  readonly accelReason: string;
  /** Whether outbound VMs are kept from reaching the host's own services. */
  readonly networkIsolation: boolean;
  boot(spec: VmSpec): Promise<Vm>;
  /** Restores wait for one another (see createQemuDriver); `background` ones (pool refills) go last. */
  restore(snapshot: Snapshot, priority?: 'urgent' | 'background'): Promise<Vm>;
  /** The kernel command line a VM of `spec` boots with now: a snapshot taken with another one is stale. */
  kernelCmdline(spec: VmSpec): string;
}

export interface QemuDriverOptions {
  images: GuestImages;
  /** Per-VM sockets (QMP, channel, console). Keep it short: unix socket paths are limited to 107 bytes. */
  runRoot: string;
  cacheDir: string;
  readyTimeoutMs?: number;
  /** Network namespace for outbound VMs; null runs them in the host's (no isolation from host services). */
  netns?: string | null;
  log?: (message: string) => void;
}

/** How long a guest's clock rate is measured against the host's before the TSC setting is trusted. */
const clockCheckMs = 8000;
/** A guest clock this far off (as a fraction) is re-measured with a corrected TSC setting: 0.1% is the promise. */
const clockRateTolerance = 2e-4;

export async function createQemuDriver(options: QemuDriverOptions): Promise<VmDriver> {
  const { images, runRoot, readyTimeoutMs, netns } = options;
  const files = { kernel: images.kernel, initramfs: images.initramfs, rootfs: images.rootfs };
  const { accel, reason } = await chooseAccelerator(files, join(options.cacheDir, 'accel-probe.json'));
  // Under KVM the guest's kvm-clock knows the TSC rate; under TCG the kernel is told it.
  const tscFile = join(options.cacheDir, 'guest-tsc.json');
  const tsc: TscSetting | null = accel === 'tcg' ? loadTscSetting(tscFile) : null;
  const kernelCmdline = (spec: VmSpec) => qemuKernelCmdline(spec, tsc?.khz ?? null);
  const log = options.log ?? (() => {});
  const taskPlaceholder = await ensurePlaceholder(options.cacheDir);

  // A restore is CPU-bound (under TCG the guest's first instructions are translated anew): more at once than
  // there are cores only makes every one of them late, and their clock checks fail.
  const restores = new Limiter(availableParallelism());
  const events = new EventEmitter<DriverEvents>();
  const live = new Set<QemuVm>();
  const track = (vm: QemuVm) => {
    live.add(vm);
    void vm.exited.then(() => live.delete(vm));
  };
  const launch = async (spec: VmSpec) => {
    const started = performance.now();
    const vm = await QemuVm.boot({ spec: checkSpec(spec), boot: files, accel, runRoot, readyTimeoutMs, netns, cmdline: kernelCmdline(spec), taskPlaceholder, track });
    events.emit('booted', { ms: performance.now() - started });
    return vm;
  };
  const restore = async (snapshot: Snapshot, background: boolean) => {
    const started = performance.now();
    const vm = await QemuVm.restore(snapshot, { runRoot, readyTimeoutMs, netns, taskPlaceholder, background, track });
    events.emit('restored', { ms: performance.now() - started, background });
    return vm;
  };
  let calibration: Promise<unknown> = Promise.resolve();

  /** Boots; until the TSC setting is verified on this host, boots one at a time and measure the clock. */
  function boot(spec: VmSpec): Promise<QemuVm> {
    if (!tsc || tsc.verified) return launch(spec);
    const calibrated = calibration.then(() => calibratedBoot(spec, tsc));
    calibration = calibrated.catch(() => {});
    return calibrated;
  }

  /** Measures the guest clock's rate; reboots with a corrected TSC setting until it is right (3 tries). */
  async function calibratedBoot(spec: VmSpec, setting: TscSetting): Promise<QemuVm> {
    for (let attempt = 1; ; attempt++) {
      const khz = setting.khz;
      const vm = await launch(spec);
      if (setting.verified) return vm; // an earlier boot verified it while this one waited
      let rate: { ratio: number; uncertainty: number };
      try {
        rate = await measureClockRate(vm.channel, clockCheckMs);
        // Too noisy to tell (busy host): measure once more, over a longer window.
        if (rate.uncertainty > clockRateTolerance / 2) rate = await measureClockRate(vm.channel, clockCheckMs * 3);
      } catch (error) {
        await vm.stop();
        throw error;
      }
      const off = Math.abs(rate.ratio - 1);
      log(`guest clock rate with tsc_early_khz=${khz}: ${rate.ratio.toFixed(6)} of the host's (±${rate.uncertainty.toExponential(1)})`);
      if (off <= clockRateTolerance || attempt === 3) {
        if (off > clockRateTolerance) log(`guest clock still ${(off * 100).toFixed(3)}% off after ${attempt} measurements`);
        setting.verified = off <= clockRateTolerance;
        await saveTscSetting(tscFile, setting);
        return vm;
      }
      await vm.stop();
      setting.khz = Math.round(khz * rate.ratio);
      await saveTscSetting(tscFile, setting);
    }
  }

  return {
    name: 'qemu-microvm',
    accel,
    accelReason: reason,
    networkIsolation: Boolean(netns),
    events,
    liveVms: () => [...live],
    boot,
    restore: (snapshot, priority) => restores.run(() => restore(snapshot, priority === 'background'), priority),
    kernelCmdline,
  };
}

export type { Snapshot, VmState };
export { TaskDiskError } from './qemu-vm.js';
