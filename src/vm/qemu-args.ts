// A VM spec becomes a QEMU command line here and nowhere else. Devices are data.
import type { Accelerator, VmSpec } from './spec.js';

export interface BootFiles {
  kernel: string;
  initramfs: string;
  rootfs: string;
}

export interface RunFiles {
  qmpSocket: string;
  channelSocket: string;
  /** Unix socket the host listens on for the serial console (drained into memory, see console-ring.ts). */
  consoleSocket: string;
  memory: GuestMemory;
  /** The file the task disk starts backed by: the all-zero placeholder, or a package's image (restores). */
  taskImage: string;
}

/**
 * Guest RAM. `shared`: a file the guest writes through to, so a snapshot needs only device state and the
 * file itself. `private`: a copy-on-write mapping of a snapshot's RAM file: restore maps it instead of
 * reading it, and every VM restored from one snapshot shares its unmodified pages.
 */
export type GuestMemory = { kind: 'anonymous' } | { kind: 'shared' | 'private'; path: string };

export type Device =
  | { kind: 'root-disk'; path: string }
  | { kind: 'task-disk'; path: string }
  | { kind: 'channel'; name: string; socket: string }
  | { kind: 'rng' }
  | { kind: 'user-net' };

/** Guest address on QEMU's user network (slirp): fixed, since every VM has a private one. */
export const userNet = { guest: '10.0.2.15/24', gateway: '10.0.2.2' } as const;
export const channelPortName = 'fnvm.0';

/**
 * The task disk's block nodes: a `raw` format node the device is attached to, over a `file` node that
 * attachTask (qemu-vm.ts) replaces with one for the package's image. The guest finds the device by its serial.
 */
export const taskDisk = { formatNode: 'task', firstFileNode: 'task-file-0', serial: 'fnvm-task' } as const;

export function devicesFor(spec: VmSpec, boot: BootFiles, run: RunFiles): Device[] {
  const devices: Device[] = [
    { kind: 'root-disk', path: boot.rootfs }, // first: the guest's /dev/vda, the one init.sh mounts
    { kind: 'task-disk', path: run.taskImage }, // the guest's /dev/vdb
    { kind: 'channel', name: channelPortName, socket: run.channelSocket },
    { kind: 'rng' },
  ];
  if (spec.network === 'outbound') devices.push({ kind: 'user-net' });
  return devices;
}

/** `tscKhz`: the guest TSC's frequency, which TCG guests cannot calibrate reliably (null under KVM). */
export function kernelCmdline(spec: VmSpec, tscKhz: number | null): string {
  const args = [
    'console=ttyS0',
    'quiet',
    'panic=-1', // a dead agent (PID 1) panics the kernel, the guest reboots, and -no-reboot ends QEMU
    'reboot=t', // by triple fault: microvm has no keyboard controller, and the ACPI reset sometimes does nothing
    // TCG: the fast PIT calibration fails ~1 boot in 3 and the guest hangs; and the guest reads the host's TSC,
    // so the host's measured frequency is what keeps its clock right (guest-clock.ts). That TSC is the host's
    // own invariant one: without tsc=reliable the clocksource watchdog, comparing it with jiffies that lag
    // whenever the emulated vCPU is starved, marks it unstable and the guest falls back to a 4 ms, slow clock.
    ...(tscKhz ? [`tsc_early_khz=${tscKhz}`, 'tsc=reliable'] : []),
    'init_on_free=1', // freed pages are zero, so snapshots skip them
    'mitigations=off',
    'random.trust_cpu=on',
    `fnvm.runtime=${spec.runtime}`,
  ];
  if (spec.network === 'outbound') args.push(`fnvm.net=${userNet.guest},${userNet.gateway}`);
  return args.join(' ');
}

function deviceArgs(device: Device, index: number): string[] {
  switch (device.kind) {
    case 'root-disk':
      return [
        '-drive', `id=disk${index},file=${device.path},format=raw,if=none,readonly=on`,
        '-device', `virtio-blk-device,drive=disk${index}`,
      ];
    case 'task-disk': {
      // -blockdev with node names, so that QMP can put another file under the format node. JSON: no escaping
      // of commas in paths.
      const file = { driver: 'file', 'node-name': taskDisk.firstFileNode, filename: device.path, 'read-only': true };
      const format = { driver: 'raw', 'node-name': taskDisk.formatNode, file: taskDisk.firstFileNode, 'read-only': true };
      return [
        '-blockdev', JSON.stringify(file),
        '-blockdev', JSON.stringify(format),
        '-device', `virtio-blk-device,drive=${taskDisk.formatNode},serial=${taskDisk.serial}`,
      ];
    }
    case 'channel':
      // QEMU connects to the host's listening socket: no waiting for a socket file to appear.
      return [
        '-device', 'virtio-serial-device,max_ports=2',
        '-chardev', `socket,id=chan${index},path=${device.socket}`,
        '-device', `virtserialport,chardev=chan${index},name=${device.name}`,
      ];
    case 'rng':
      return ['-object', `rng-random,id=rng${index},filename=/dev/urandom`, '-device', `virtio-rng-device,rng=rng${index}`];
    case 'user-net':
      // No IPv6: the egress policy (sandbox-net.ts) is IPv4-only, so the guest gets no IPv6 path to anything.
      return ['-netdev', `user,id=net${index},ipv6=off`, '-device', `virtio-net-device,netdev=net${index}`];
  }
}

/** Where the serial console goes: a file (the accelerator probe) or a host-drained unix socket (VMs). */
export type ConsoleSink = { kind: 'file' | 'socket'; path: string };

/** The machine itself: board, accelerator, CPUs, memory, kernel, console. */
export function machineArgs(
  accel: Accelerator,
  shape: { vcpu: number; memoryMb: number },
  boot: Omit<BootFiles, 'rootfs'>,
  cmdline: string,
  console: ConsoleSink,
): string[] {
  return [
    '-M', 'microvm,acpi=on,pit=on,pic=on,rtc=on,isa-serial=on',
    '-accel', accel === 'kvm' ? 'kvm' : 'tcg,thread=multi',
    '-cpu', accel === 'kvm' ? 'host' : 'max',
    '-smp', String(shape.vcpu),
    '-m', String(shape.memoryMb),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-kernel', boot.kernel, '-initrd', boot.initramfs, '-append', cmdline,
    '-chardev', `${console.kind},id=console,path=${console.path}`, '-serial', 'chardev:console',
  ];
}

function memoryArgs(memory: GuestMemory, memoryMb: number): string[] {
  // Always a backend named `ram`: a snapshot's RAM block carries that name, whichever kind of memory took it.
  const backend = memory.kind === 'anonymous'
    ? `memory-backend-ram,id=ram,size=${memoryMb}M`
    : `memory-backend-file,id=ram,size=${memoryMb}M,mem-path=${memory.path},share=${memory.kind === 'shared' ? 'on' : 'off'}`;
  return ['-object', backend, '-machine', 'memory-backend=ram'];
}

export function qemuArgs(spec: VmSpec, accel: Accelerator, boot: BootFiles, run: RunFiles, cmdline: string): string[] {
  const args = [
    ...machineArgs(accel, spec, boot, cmdline, { kind: 'socket', path: run.consoleSocket }),
    ...memoryArgs(run.memory, spec.memoryMb),
    '-chardev', `socket,id=qmp,path=${run.qmpSocket}`, '-mon', 'chardev=qmp,mode=control',
  ];
  devicesFor(spec, boot, run).forEach((device, index) => args.push(...deviceArgs(device, index)));
  return args;
}

/** Boots only kernel + initramfs, which print a marker and power off: proves an accelerator works. */
export function probeArgs(accel: Accelerator, boot: Omit<BootFiles, 'rootfs'>, consoleLog: string): string[] {
  const cmdline = 'console=ttyS0 panic=-1 tsc_early_khz=2000000 fnvm.runtime=probe';
  return machineArgs(accel, { vcpu: 1, memoryMb: 128 }, boot, cmdline, { kind: 'file', path: consoleLog });
}
