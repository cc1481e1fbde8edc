// One QEMU microvm process and its lifecycle: starting -> running -> paused -> stopped, or failed.
// Every transition happens in this class; the QEMU process is tracked by PID and always reaped.
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ChannelTimeoutError, GuestChannel } from '../guest/channel.js';
import type { PingResult } from '../guest/protocol.js';
import { ConsoleRing } from './console-ring.js';
import { killTracked, setThreadsNiceness, spawnTracked } from './processes.js';
import { diagnose, hungGuest } from './diagnose.js';
import { bestSample, discipline, roundTrip, sampleWallClock, usableRoundTripMs } from './guest-clock.js';
import { run } from '../exec.js';
import { qemuArgs, taskDisk, type BootFiles, type GuestMemory, type RunFiles } from './qemu-args.js';
import { QmpClient } from './qmp.js';
import type { Accelerator, VmSpec } from './spec.js';
import { checkTaskImage } from './task-image.js';
import { UnixListener } from './unix-listener.js';

export type VmState = 'starting' | 'running' | 'paused' | 'stopped' | 'failed';

/**
 * Every allowed change of a VM's state; transition() refuses any other. `failed` and `stopped` are final: a
 * failed VM is still cleaned up by stop(), but stays failed with its reason. So a failure that lands while a
 * boot, restore or resume is awaiting the guest can never be overwritten by `running`.
 */
export const vmTransitions: Readonly<Record<VmState, readonly VmState[]>> = {
  starting: ['running', 'failed', 'stopped'],
  running: ['paused', 'failed', 'stopped'],
  paused: ['running', 'failed', 'stopped'],
  failed: [],
  stopped: [],
};

export interface VmLaunch {
  spec: VmSpec;
  boot: BootFiles;
  accel: Accelerator;
  /** The guest kernel's command line (see kernelCmdline). */
  cmdline: string;
  /** Directory for this host's per-VM sockets (QMP, channel, console). */
  runRoot: string;
  /** How long the guest agent may take to answer its first ping. */
  readyTimeoutMs?: number;
  /** Network namespace for VMs with outbound networking (see sandbox-net.ts). */
  netns?: string | null;
  /** A VM made ahead of need (the warm pool): it runs at a lower CPU priority until prioritise(). */
  background?: boolean;
  /** The all-zero file a task disk holds until a package is attached (task-image.ts). */
  taskPlaceholder: string;
  /** Told of every VM as soon as its QEMU process is started (the driver counts live VMs). */
  track?: (vm: QemuVm) => void;
}

/**
 * What backs the VM's task disk. A VM takes at most one package in its life: placeholder -> attaching ->
 * attached, or -> broken when QEMU refused a step midway (the disk is then in no state to trust).
 */
export type TaskDiskState =
  | { kind: 'placeholder' }
  | { kind: 'attaching'; image: string }
  | { kind: 'attached'; image: string }
  | { kind: 'broken'; reason: string };

/** A launch as QEMU starts it: `taskImage` is the package already on the task disk (restores), or null. */
type StartLaunch = VmLaunch & { taskImage: string | null };

/** Niceness of background VMs: their restore and warm-up yield the cores to VMs serving invocations. */
const backgroundNice = 10;

export interface Snapshot {
  /** Device state (and, without ramPath, the RAM too). */
  path: string;
  /** The guest RAM as a file, mapped copy-on-write by restored VMs. */
  ramPath: string | null;
  spec: VmSpec;
  accel: Accelerator;
  boot: BootFiles;
  /** The command line the snapshotted kernel booted with: its settings (TSC rate...) live on in its RAM. */
  cmdline: string;
  bytes: number;
  /** How `path` is compressed (snapshots whose RAM is in the stream). */
  compression?: 'lz4';
  /** The package image on the task disk (null: the placeholder); a restored VM starts with it attached. */
  taskImage: string | null;
}

export class VmError extends Error {
  override name = 'VmError';
}

/** attachTask refused: the VM has (or had a failed try at) a package already, or the image cannot serve. */
export class TaskDiskError extends VmError {
  override name = 'TaskDiskError';
}

const qemuBinary = 'qemu-system-x86_64';
/** A watchdog ping to a guest busy with invocations only serves its clock: it may wait this long, no more. */
const busyPingMs = 1000;

export class QemuVm {
  readonly id = randomUUID();
  private stateValue: VmState = 'starting';
  private failureReason: string | null = null;
  /** Why the VM failed, before the console was read for a better cause. */
  private rawFailure: string | null = null;
  private readonly failureListeners: Array<(reason: string) => void> = [];
  private watchdog: NodeJS.Timeout | undefined;
  private checking = false;
  private clockQueue: Promise<unknown> = Promise.resolve();
  /** Resolves once the QEMU process has ended. */
  readonly exited: Promise<void>;
  private task: TaskDiskState;
  channel!: GuestChannel;
  private qmp!: QmpClient;
  /** The serial console's last MiB, drained from its socket as QEMU writes it. */
  readonly console = new ConsoleRing();

  private constructor(
    readonly launch: StartLaunch,
    private readonly process: ChildProcess,
    private readonly run: RunFiles & { dir: string },
  ) {
    this.task = launch.taskImage === null ? { kind: 'placeholder' } : { kind: 'attached', image: launch.taskImage };
    this.exited = new Promise((resolve) => process.once('exit', () => resolve()));
    let stderr = '';
    process.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    process.once('exit', (code, signal) => {
      const how = signal ? `signal ${signal}` : `code ${code}`;
      this.fail(`QEMU exited (${how})${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
    });
  }

  get state(): VmState {
    return this.stateValue;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get spec(): VmSpec {
    return this.launch.spec;
  }

  /** Why the VM failed, when state is `failed`. */
  get failure(): string | null {
    return this.failureReason ?? this.rawFailure;
  }

  /** What backs the task disk now. */
  get taskDisk(): TaskDiskState {
    return this.task;
  }

  /** Cold boot: kernel, initramfs, agent; resolves once the agent answers a ping. */
  static async boot(launch: VmLaunch): Promise<QemuVm> {
    const vm = await QemuVm.start({ ...launch, taskImage: null }, [], (dir) => ({ kind: 'shared', path: join(dir, 'ram') }));
    await vm.becomeReady();
    return vm;
  }

  /** A new QEMU process resumed from a snapshot's memory and device state. */
  static async restore(snapshot: Snapshot, launch: Omit<VmLaunch, 'spec' | 'boot' | 'accel' | 'cmdline'>): Promise<QemuVm> {
    const { spec, boot, accel, cmdline, taskImage } = snapshot;
    if (taskImage !== null) await checkTaskImage(taskImage); // gone or changed: a clear error, before QEMU starts
    const full: StartLaunch = { ...launch, spec, boot, accel, cmdline, taskImage };
    const { ramPath } = snapshot;
    const memory = (): GuestMemory => (ramPath ? { kind: 'private', path: ramPath } : { kind: 'anonymous' });
    const vm = await QemuVm.start(full, ['-incoming', 'defer'], memory);
    try {
      await vm.setMigrationCapabilities(ramPath !== null);
      const done = vm.migrationDone();
      await vm.qmp.execute('migrate-incoming', { uri: snapshot.compression === 'lz4' ? `exec:lz4 -d -q -c '${snapshot.path}'` : `exec:cat '${snapshot.path}'` });
      await done;
      await vm.qmp.execute('cont');
      await vm.becomeReady();
      return vm;
    } catch (error) {
      const failure = vm.asVmError(error);
      await vm.stop();
      throw failure;
    }
  }

  private static async start(launch: StartLaunch, extraArgs: string[], memory: (dir: string) => GuestMemory): Promise<QemuVm> {
    const id = randomUUID().slice(0, 8);
    const dir = join(launch.runRoot, id);
    mkdirSync(dir, { recursive: true });
    const run = {
      dir,
      qmpSocket: join(dir, 'qmp.sock'),
      channelSocket: join(dir, 'chan.sock'),
      consoleSocket: join(dir, 'console.sock'),
      memory: memory(dir),
      taskImage: launch.taskImage ?? launch.taskPlaceholder,
    };
    const qmpListener = await UnixListener.listen(run.qmpSocket);
    const channelListener = await UnixListener.listen(run.channelSocket);
    const consoleListener = await UnixListener.listen(run.consoleSocket);
    const netns = launch.spec.network === 'outbound' ? (launch.netns ?? undefined) : undefined;
    const nice = launch.background ? backgroundNice : 0;
    const child = spawnTracked(qemuBinary, [...qemuArgs(launch.spec, launch.accel, launch.boot, run, launch.cmdline), ...extraArgs], { netns, nice });
    const vm = new QemuVm(launch, child, run);
    launch.track?.(vm);
    try {
      const [qmpSocket, channelSocket, consoleSocket] = await vm.unlessExited(
        Promise.all([qmpListener.connected, channelListener.connected, consoleListener.connected]),
      );
      vm.console.drain(consoleSocket);
      vm.qmp = new QmpClient(qmpSocket);
      vm.channel = new GuestChannel(channelSocket);
      vm.channel.onClose((error) => vm.failAfterExitGrace(error.message));
      await vm.unlessExited(vm.qmp.handshake());
      return vm;
    } catch (error) {
      qmpListener.close();
      channelListener.close();
      consoleListener.close();
      const failure = vm.asVmError(error);
      await vm.stop();
      throw failure;
    }
  }

  /** Waits for the agent, then renews the guest: a VM is only handed out with its own clock and randomness. */
  private async becomeReady(): Promise<PingResult> {
    try {
      const pong = await this.unlessExited(this.channel.request('ping', {}, this.launch.readyTimeoutMs ?? 60_000));
      await this.unlessExited(this.renew());
      this.transition('running');
      return pong;
    } catch (error) {
      const failure = this.asVmError(error);
      await this.stop();
      throw failure;
    }
  }

  /**
   * Pauses the guest and writes its device state to `path`; its RAM goes to `path`.ram when the VM's RAM is
   * a shared file (cold-booted VMs), else into `path` too, lz4-compressed (QEMU 7.2 cannot write only the
   * pages that differ from a restored VM's base). The VM stays paused.
   */
  async snapshot(path: string): Promise<Snapshot> {
    this.expect('running', 'snapshot');
    const task = this.task;
    if (task.kind === 'attaching' || task.kind === 'broken') throw new TaskDiskError(`cannot snapshot a VM whose task disk is ${task.kind}`);
    // Freed pages are zeroed (init_on_free=1), and zero pages cost nothing in a snapshot or a restore.
    await this.channel.request('settle', {}, 10_000);
    const memory = this.run.memory;
    const ramFile = memory.kind === 'shared' ? memory.path : null;
    await this.setMigrationCapabilities(ramFile !== null);
    // The default bandwidth cap (128 MiB/s) would throttle a local file write.
    await this.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 2 ** 30 });
    await this.qmp.execute('stop');
    this.transition('paused');
    const done = this.migrationDone();
    const compression = ramFile ? undefined : 'lz4';
    await this.qmp.execute('migrate', { uri: compression ? `exec:lz4 -1 -q -c > '${path}'` : `exec:cat > '${path}'` });
    await done;
    const ramPath = ramFile ? `${path}.ram` : null;
    // The paused VM may resume and write to its file, so the snapshot gets a copy (holes stay holes).
    if (ramFile && ramPath) await run('cp', ['--sparse=always', '--reflink=auto', ramFile, ramPath]);
    const bytes = statSync(path).size + (ramPath ? statSync(ramPath).blocks * 512 : 0);
    const { accel, boot, cmdline } = this.launch;
    const taskImage = task.kind === 'attached' ? task.image : null;
    return { path, ramPath, spec: this.spec, accel, boot, cmdline, bytes, taskImage, ...(compression && { compression }) };
  }

  private async setMigrationCapabilities(ignoreSharedRam: boolean): Promise<void> {
    await this.qmp.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'x-ignore-shared', state: ignoreSharedRam },
      ],
    });
  }

  async resume(): Promise<void> {
    this.expect('paused', 'resume');
    // Right after a migration QEMU briefly stays in finish-migrate, where `cont` is refused.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.qmp.execute('cont');
        break;
      } catch (error) {
        if (attempt >= 100 || !String((error as Error).message).includes('not finalized')) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    await this.renew(); // its clock stood still while paused, and its clones now share its random state
    this.transition('running');
  }

  /**
   * Right after a boot, restore or resume, before anything else runs in the guest: the host's time, and a
   * fresh seed for the kernel CRNG, OpenSSL and the runtime's generators (guest/PROTOCOL.md, "Clones").
   */
  private async renew(): Promise<void> {
    const seed = randomBytes(32).toString('hex');
    const renewed = await this.channel.request('renew', { seed, time_ms: Date.now() }, 10_000);
    if (!renewed.system) throw new VmError('the guest agent did not take over its clock and random state');
    await this.syncClock(); // corrects for the time the renew spent in transit
  }

  /**
   * Measures the guest's wall clock against the host's and corrects it if it is off by more than a few ms;
   * fails if no ping comes back fast enough to tell (a guest that slow is no use to hand out). Pings stop at
   * the first whose round trip is at most `goodEnoughMs`.
   */
  syncClock(timeoutMs = 10_000, goodEnoughMs = 4): Promise<void> {
    return this.clockTurn(async () => {
      const best = await bestSample(this.channel, { clock: 'wall', tries: 20, timeoutMs, goodEnoughMs });
      if (roundTrip(best) > usableRoundTripMs) {
        throw new VmError(`cannot measure the guest clock: its fastest answer took ${roundTrip(best)} ms`);
      }
      await discipline(this.channel, best);
    });
  }

  /** Clock corrections are relative steps: two measured at once would apply the same correction twice. */
  private clockTurn<T>(op: () => Promise<T>): Promise<T> {
    const turn = this.clockQueue.then(op, op);
    this.clockQueue = turn.catch(() => {});
    return turn;
  }

  /**
   * Pings the guest every `intervalMs`: an idle guest that does not answer within `timeoutMs` has hung and
   * fails the VM; every answer also keeps the guest's wall clock right.
   */
  startWatchdog(intervalMs: number, timeoutMs: number): void {
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => void this.checkOnGuest(timeoutMs), intervalMs);
    this.watchdog.unref();
  }

  private async checkOnGuest(timeoutMs: number): Promise<void> {
    if (this.stateValue !== 'running' || this.checking) return; // one check at a time
    this.checking = true;
    // A guest busy with invocations may be slow to answer (a handler can block its event loop): that is the
    // invocations' deadlines' business, not a hang.
    const idle = this.channel.inflight === 0;
    try {
      await this.clockTurn(async () => discipline(this.channel, await sampleWallClock(this.channel, idle ? timeoutMs : busyPingMs)));
    } catch (error) {
      const stillIdle = this.channel.inflight === 0; // an invocation that began meanwhile may be what delays it
      if (idle && stillIdle && error instanceof ChannelTimeoutError) this.fail(`${hungGuest}: ${error.message}`);
    } finally {
      this.checking = false;
    }
  }

  /** A background VM about to serve: its threads get the normal CPU priority back. */
  prioritise(): void {
    if (this.launch.background && this.process.pid) setThreadsNiceness(this.process.pid, 0);
  }

  /**
   * Puts `image` under the task disk's format node (a new `file` node, the format node reopened onto it, the
   * placeholder's node deleted): a few ms, with the guest running. Only before the guest mounted the disk,
   * which the agent does at the first `load` with `package` (and it drops the block device's cached pages
   * first: the kernel read the placeholder's partition table at boot).
   */
  async attachTask(image: string): Promise<void> {
    this.expect('running', 'attach a package to');
    const task = this.task;
    if (task.kind !== 'placeholder') {
      const held = task.kind === 'broken' ? `a failed attach (${task.reason})` : `the package ${task.image}`;
      throw new TaskDiskError(`this VM's task disk already holds ${held}: a VM takes one package in its life, use a new VM`);
    }
    this.task = { kind: 'attaching', image };
    let path: string;
    try {
      path = await checkTaskImage(image);
    } catch (error) {
      this.task = { kind: 'placeholder' }; // nothing was changed: the VM can still take a package
      throw new TaskDiskError((error as Error).message);
    }
    const fileNode = 'task-file-1';
    try {
      await this.qmp.execute('blockdev-add', { driver: 'file', 'node-name': fileNode, filename: path, 'read-only': true });
      await this.qmp.execute('blockdev-reopen', {
        options: [{ driver: 'raw', 'node-name': taskDisk.formatNode, file: fileNode, 'read-only': true }],
      });
      await this.qmp.execute('blockdev-del', { 'node-name': taskDisk.firstFileNode });
    } catch (error) {
      const reason = (error as Error).message;
      this.task = { kind: 'broken', reason };
      throw new TaskDiskError(`attaching ${path} to the task disk failed: ${reason}`);
    }
    this.task = { kind: 'attached', image: path };
  }

  /** Called once if QEMU exits or the guest channel breaks while the VM was not being stopped. */
  onFailure(listener: (reason: string) => void): void {
    if (this.failureReason !== null) listener(this.failureReason);
    else this.failureListeners.push(listener);
  }

  /** Last lines the guest kernel and agent printed on the serial console. */
  consoleTail(bytes = 2000): string {
    return this.console.tail(bytes);
  }

  async stop(): Promise<void> {
    if (vmTransitions[this.stateValue].includes('stopped')) this.transition('stopped');
    clearInterval(this.watchdog);
    this.qmp?.close();
    this.channel?.close();
    killTracked(this.process);
    await this.exited;
    rmSync(this.run.dir, { recursive: true, force: true });
  }

  /** A broken channel usually means QEMU died: give its exit a moment to be the reported cause. */
  private failAfterExitGrace(reason: string): void {
    const grace = new Promise((resolve) => setTimeout(resolve, 500).unref());
    void Promise.race([this.exited, grace]).then(() => this.fail(reason));
  }

  private fail(reason: string): void {
    if (!vmTransitions[this.stateValue].includes('failed')) return; // stopped or failed already: nothing to report
    this.transition('failed');
    this.rawFailure = reason;
    clearInterval(this.watchdog);
    this.channel?.close();
    killTracked(this.process);
    // A panic or OOM report may still be in flight on the console socket when QEMU exits: read it first.
    void this.console.drained(500).then(() => {
      const cause = diagnose(this.consoleTail(4000));
      const described = cause ? `${cause} (${reason})` : reason;
      this.failureReason = described;
      for (const listener of this.failureListeners.splice(0)) listener(described);
    });
  }

  private migrationDone(): Promise<void> {
    return this.unlessExited(
      this.qmp
        .waitForEvent((e) => e.event === 'MIGRATION' && ['completed', 'failed'].includes(String(e.data?.status)))
        .then((e) => {
          if (e.data?.status === 'failed') throw new VmError('migration failed');
        }),
    );
  }

  /** Races `promise` against QEMU exiting, so no caller waits on a dead process. */
  private unlessExited<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([
      promise,
      this.exited.then(() => {
        throw new VmError(this.failureReason ?? this.rawFailure ?? 'QEMU exited');
      }),
    ]);
  }

  private transition(to: VmState): void {
    if (!vmTransitions[this.stateValue].includes(to)) throw new VmError(`a VM that is ${this.stateValue} cannot become ${to}`);
    this.stateValue = to;
  }

  private expect(state: VmState, action: string): void {
    if (this.stateValue !== state) throw new VmError(`cannot ${action} a VM that is ${this.stateValue}`);
  }

  private asVmError(error: unknown): VmError {
    const message = error instanceof Error ? error.message : String(error);
    const tail = this.consoleTail(1500).trim();
    return new VmError(tail ? `${message}\n--- guest console ---\n${tail}` : message);
  }
}
