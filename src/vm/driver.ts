// The VM layer's public surface: a driver boots or restores VMs of a spec. QEMU microvm today;
// a Firecracker driver would implement the same two interfaces (with a vsock channel transport).
import { join } from 'node:path';
import type { GuestChannel } from '../guest/channel.js';
import type { GuestImages } from '../images/build.js';
import { chooseAccelerator } from './accel.js';
import { QemuVm, type Snapshot, type VmState } from './qemu-vm.js';
import { checkSpec, type Accelerator, type VmSpec } from './spec.js';

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
  startWatchdog(intervalMs: number, timeoutMs: number): void;
  consoleTail(bytes?: number): string;
}

export interface VmDriver {
  readonly name: string;
  readonly accel: Accelerator;
  readonly accelReason: string;
  /** Whether outbound VMs are kept from reaching the host's own services. */
  readonly networkIsolation: boolean;
  boot(spec: VmSpec): Promise<Vm>;
  restore(snapshot: Snapshot): Promise<Vm>;
}

export interface QemuDriverOptions {
  images: GuestImages;
  /** Per-VM sockets (QMP, channel, console). Keep it short: unix socket paths are limited to 107 bytes. */
  runRoot: string;
  cacheDir: string;
  readyTimeoutMs?: number;
  /** Network namespace for outbound VMs; null runs them in the host's (no isolation from host services). */
  netns?: string | null;
}

export async function createQemuDriver(options: QemuDriverOptions): Promise<VmDriver> {
  const { images, runRoot, readyTimeoutMs, netns } = options;
  const boot = { kernel: images.kernel, initramfs: images.initramfs, rootfs: images.rootfs };
  const { accel, reason } = await chooseAccelerator(boot, join(options.cacheDir, 'accel-probe.json'));
  return {
    name: 'qemu-microvm',
    accel,
    accelReason: reason,
    networkIsolation: Boolean(netns),
    boot: async (spec) => QemuVm.boot({ spec: checkSpec(spec), boot, accel, runRoot, readyTimeoutMs, netns }),
    restore: (snapshot) => QemuVm.restore(snapshot, { runRoot, readyTimeoutMs, netns }),
  };
}

export type { Snapshot, VmState };
