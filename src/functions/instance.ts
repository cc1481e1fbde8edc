// The running side of one function: which VM serves it, loading code into it, invoking it, and replacing
// the VM when it dies or overruns a deadline. Its life is one state machine: every change goes through
// `transition`, which refuses any pair the table below does not list and does the bookkeeping (events,
// timers, stopping the VM a state drops) in one place. Operations that start VMs are serialised; a VM
// failure only changes the state, and a replacement reads the state when it runs, never a stale copy.
import { ChannelClosedError, ChannelTimeoutError, GuestProtocolError, GuestRequestError } from '../guest/channel.js';
import type { ErrorInfo, InvokeResult } from '../guest/protocol.js';
import { Signal } from '../signal.js';
import type { LiveVmCap } from './live-vms.js';
import type { Vm } from '../vm/driver.js';
import type { VmPool } from '../vm/pool.js';
import { failureCause, outOfMemory } from '../vm/diagnose.js';
import type { ReplacementCause } from './activity.js';
import { specKey, type VmSpec } from '../vm/spec.js';
import { toMicros } from '../stats/bucket.js';

/** An idle VM is pinged this often; no answer in time means its guest hung, and it is replaced. */
export const watchdog = { intervalMs: 15_000, timeoutMs: 10_000 } as const;

/** A replacement VM that cannot be started is tried again after firstMs, doubling up to maxMs, until deleted. */
export const retryBackoff = { firstMs: 500, maxMs: 30_000 };

/** Everything a VM needs to serve one version of a function. */
export interface Deployment {
  /** A single-file function's source ('' for a packaged one). */
  code: string;
  /** A packaged function's package: the disk image its VM mounts at /var/task. */
  package: { sha256: string; image: string } | null;
  handler: string;
  env: Record<string, string>;
  version: number;
  spec: VmSpec;
}

export interface InvokeOutcome {
  status: 'success' | 'error' | 'timeout';
  response: unknown;
  error: ErrorInfo | null;
  logs: string[];
  duration_ms: number;
  version: number;
  cold_start: boolean;
}

/** The code did not load: the runtime's own error (SyntaxError, HandlerNotFound...). */
export class LoadError extends Error {
  override name = 'LoadError';
  constructor(readonly info: ErrorInfo) {
    super(`${info.type}: ${info.message}`);
  }
}

export class DeletedError extends Error {
  override name = 'DeletedError';
}

/** A transition the state machine does not allow: a bug in the caller, never a runtime condition. */
export class InvalidTransitionError extends Error {
  override name = 'InvalidTransitionError';
}

export interface InstanceEvents {
  /** The VM serving the function changed (null: none); initMs: its code's load, null if restored initialised. */
  onVm(vm: Vm | null, initMs: number | null): void;
  /** No VM could be started and another try is scheduled (the reason), or one finally was (null). */
  onRetrying(reason: string | null): void;
  /** The serving VM was taken out of service, for `cause`, and a new one is on its way. */
  onReplaced?(cause: ReplacementCause): void;
  log(message: string): void;
}

/** What FunctionInstance needs of the warm pool (tests pass a fake). */
export type VmSupply = Pick<VmPool, 'take'>;

/** SnapStart as FunctionInstance sees it (service.ts adapts the host's FunctionSnapshots; tests pass a fake). */
export interface SnapStart {
  /** A VM restored from the function's snapshot of `d`, its code initialised already; null if it has none. */
  wake(functionId: string, d: Deployment): Promise<Vm | null>;
  /** `d` initialised in `vm` in `initMs`: the VM may be snapshotted (it goes on running). */
  initialised(functionId: string, d: Deployment, vm: Vm, initMs: number): Promise<void>;
}

/** The host's cap on live VMs (tests may leave it out). */
export type VmSlots = Pick<LiveVmCap, 'admit' | 'leave' | 'used' | 'idle'>;

export interface InstanceHost {
  snapStart?: SnapStart;
  slots?: VmSlots;
  /** How long a VM start waits for room under the live VM cap. */
  slotWaitMs?: number;
}

export type InstanceState =
  /** Nothing deployed yet. */
  | { kind: 'idle' }
  /** A first deployment (or one after a failed one) is getting its VM. */
  | { kind: 'starting'; deployment: Deployment }
  | { kind: 'serving'; vm: Vm; deployment: Deployment }
  /**
   * `to` is being loaded into a new VM while `vm` (if it is still alive) serves `deployment`; `lost` says why
   * the old VM went, if it did: then a failed move falls back to a replacement rather than to sleep.
   */
  | { kind: 'moving'; vm: Vm | null; deployment: Deployment; to: Deployment; lost: string | null }
  /** The VM is gone (failure, overrun, wake); a new one is being started, and retried while that fails. */
  | { kind: 'replacing'; deployment: Deployment; reason: string; attempt: number; lastError: string | null }
  /** Scaled to zero: no VM; the next invocation wakes the function. */
  | { kind: 'asleep'; deployment: Deployment }
  /** The deployment failed; only a new deployment leaves this state. */
  | { kind: 'broken'; deployment: Deployment; reason: string }
  | { kind: 'deleted' };

type Kind = InstanceState['kind'];
type Replacing = Extract<InstanceState, { kind: 'replacing' }>;

/** Every allowed (from, to) pair; anything else throws InvalidTransitionError. */
export const transitions: Readonly<Record<Kind, readonly Kind[]>> = {
  idle: ['starting', 'asleep', 'deleted'], // idle -> asleep: a ready function found asleep at startup
  starting: ['serving', 'broken', 'deleted'],
  serving: ['serving', 'moving', 'replacing', 'asleep', 'deleted'], // serving -> serving: a hot reload
  moving: ['moving', 'serving', 'replacing', 'asleep', 'deleted'], // moving -> moving: the old VM was lost
  replacing: ['replacing', 'serving', 'moving', 'deleted'], // replacing -> replacing: a failed try
  asleep: ['replacing', 'moving', 'deleted'],
  broken: ['starting', 'deleted'],
  deleted: [],
};

export class FunctionInstance {
  private current: InstanceState = { kind: 'idle' };
  private chain: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Notified on every transition (invocations waiting for a VM). */
  private readonly transitioned = new Signal();
  /** VMs being loaded, not yet in any state: stop() stops them so a long load cannot outlive a deletion. */
  private readonly unattached = new Set<Vm>();
  /** Old VMs finishing their in-flight calls after a move, and stops under way: awaited by stop(). */
  private readonly draining = new Set<Vm>();
  private readonly stopping = new Set<Promise<void>>();
  /** onRetrying(reason) was reported and not yet cleared. */
  private troubled = false;
  /** How long each VM this instance loaded took to initialise the code (reported when it starts serving). */
  private readonly initTimes = new WeakMap<Vm, number>();
  /** exclusive() operations started and not finished: while any runs, the function is not idle. */
  private operations = 0;
  inflight = 0;

  constructor(
    readonly functionId: string,
    private readonly pool: VmSupply,
    private readonly events: InstanceEvents,
    /** Idle time after which the VM is stopped (0: never). */
    private readonly idleMs: number,
    private readonly host: InstanceHost = {},
  ) {}

  get state(): Readonly<InstanceState> {
    return this.current;
  }

  /** Runs `op` after every earlier VM-changing operation on this function has finished. */
  exclusive<T>(op: () => Promise<T>): Promise<T> {
    this.operations++;
    const counted = () => op().finally(() => {
      this.operations--;
      this.host.slots?.idle();
    });
    const run = this.chain.then(counted, counted);
    this.chain = run.catch(() => {});
    return run;
  }

  /** A function that was ready when the server stopped without a VM: it stays asleep until invoked. */
  startAsleep(deployment: Deployment): void {
    this.transition({ kind: 'asleep', deployment });
  }

  /** Scale to zero now, if the VM serves and nothing runs or changes (the live VM cap needs room). */
  sleepIfIdle(): boolean {
    const state = this.current;
    if (state.kind !== 'serving' || this.inflight > 0 || this.operations > 0) return false;
    this.events.log(`function ${this.functionId}: VM ${state.vm.id} stopped to make room (least recently used)`);
    this.transition({ kind: 'asleep', deployment: state.deployment });
    return true;
  }

  /** A VM from the pool with the deployment loaded; `phase` reports booting/deploying. */
  async deploy(deployment: Deployment, phase: (p: 'booting' | 'deploying', vm?: Vm) => Promise<void>): Promise<void> {
    this.checkLive();
    this.transition({ kind: 'starting', deployment });
    try {
      await phase('booting');
      const vm = await this.startVm(deployment, (started) => phase('deploying', started));
      await this.adopt(vm, deployment, 'starting');
    } catch (error) {
      if (this.current.kind === 'starting') this.transition({ kind: 'broken', deployment, reason: messageOf(error) });
      throw error;
    }
  }

  /** New code/handler/env into the running VM: atomic swap in the agent, in-flight calls finish on the old code. */
  async reload(deployment: Deployment): Promise<void> {
    const state = this.current;
    // A VM takes one package in its life (its task disk): a new package moves to a new VM, like a new shape.
    if (state.kind !== 'serving' || specKey(state.deployment.spec) !== specKey(deployment.spec) ||
      state.deployment.package?.sha256 !== deployment.package?.sha256) return this.move(deployment);
    try {
      await this.load(state.vm, deployment);
    } catch (error) {
      // No answer in time: the agent may still swap in the new code, which the caller will not store. Replaced.
      if (error instanceof ChannelTimeoutError) this.recycle(state.vm, `loading version ${deployment.version} got no answer: ${error.message}`, 'hang');
      throw error;
    }
    // Its VM failed (and is being replaced with what it ran) or the function was deleted: the update did not happen.
    if (this.current !== state) throw new ChannelClosedError('the function VM stopped while the new code loaded');
    this.transition({ kind: 'serving', vm: state.vm, deployment });
  }

  /** A VM of a new shape: loaded and switched to once ready; the old one drains, then stops. */
  async move(to: Deployment): Promise<void> {
    this.checkLive();
    const state = this.current;
    if (state.kind !== 'serving' && state.kind !== 'asleep' && state.kind !== 'replacing') {
      throw new ChannelClosedError(`the function cannot move while ${state.kind}`);
    }
    this.transition({
      kind: 'moving',
      vm: state.kind === 'serving' ? state.vm : null,
      deployment: state.deployment,
      to,
      lost: state.kind === 'replacing' ? state.reason : null,
    });
    let vm: Vm;
    try {
      vm = await this.startVm(to);
    } catch (error) {
      this.moveFailed();
      throw error;
    }
    await this.adopt(vm, to, 'moving');
  }

  /** Back to what the function had before a move that failed: its old VM, a replacement for it, or sleep. */
  private moveFailed(): void {
    const state = this.current;
    if (state.kind !== 'moving') return; // deleted meanwhile
    if (state.vm) this.transition({ kind: 'serving', vm: state.vm, deployment: state.deployment });
    else if (state.lost !== null) this.replace(state.deployment, state.lost);
    else this.transition({ kind: 'asleep', deployment: state.deployment });
  }

  async invoke(requestId: string, event: unknown, timeoutMs: number, waitMs: number): Promise<InvokeOutcome> {
    this.wake();
    const cold = serving(this.current) === null;
    this.host.slots?.used(this.functionId);
    this.inflight++;
    clearTimeout(this.idleTimer);
    let target: { vm: Vm; deployment: Deployment } | undefined;
    let sent = 0;
    try {
      target = await this.servingVm(waitMs);
      const { vm } = target;
      sent = performance.now();
      const result: InvokeResult = await vm.channel.request('invoke', { request_id: requestId, event, timeout_ms: timeoutMs }, timeoutMs);
      // The guest's measure leaves out the channel; user code can set the agent's clock: bounded by the host's.
      return { ...result, duration_ms: toMicros(Math.min(Math.max(0, result.duration_ms), performance.now() - sent)), cold_start: cold };
    } catch (error) {
      if (!target) throw error;
      const { vm, deployment } = target;
      if (error instanceof ChannelTimeoutError) {
        this.recycle(vm, `invocation ${requestId} exceeded its ${timeoutMs} ms timeout`, 'timeout');
        // The guest never said how long it ran: the time the host waited for it, as Lambda reports a timeout's.
        const waited = toMicros(performance.now() - sent);
        return { ...failure('timeout', 'Timeout', `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`, cold, deployment), duration_ms: waited };
      }
      if (error instanceof GuestProtocolError) {
        // Before the generic crash path: a hostile guest could print an OOM message to its console.
        this.recycle(vm, error.message, 'protocol');
        return failure('error', 'ProtocolError', `the function's VM broke the guest protocol and was replaced: ${error.message}`, cold, deployment);
      }
      if (error instanceof GuestRequestError) {
        // ok:false to an invoke (an agent that could not reply, e.g. a frame too large): recorded, not a 500.
        return failure('error', error.info.type, error.info.message, cold, deployment);
      }
      if (error instanceof ChannelClosedError) {
        // The VM reports its failure after QEMU exits (500 ms grace) and its console is drained (500 ms at most).
        const reason = (await failureOf(vm, 2000)) ?? error.message;
        if (reason.startsWith(outOfMemory)) {
          const limit = deployment.spec.memoryMb;
          return failure('error', 'OutOfMemory', `the function ran out of memory (memory_mb: ${limit}); its VM was replaced`, cold, deployment);
        }
        return failure('error', 'VMCrashed', `the function's VM stopped during the invocation: ${reason}`, cold, deployment);
      }
      throw error;
    } finally {
      this.inflight--;
      if (this.inflight === 0) {
        this.armIdleTimer();
        this.host.slots?.idle();
      }
    }
  }

  /** The VM serving now, or the one a deploy, move or replacement under way yields within `waitMs`. */
  private async servingVm(waitMs: number): Promise<{ vm: Vm; deployment: Deployment }> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const state = this.current;
      const target = serving(state);
      if (target) return target;
      if (state.kind !== 'starting' && state.kind !== 'moving' && state.kind !== 'replacing') {
        throw new ChannelClosedError(`the function has no VM (${state.kind})`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        if (state.kind === 'replacing' && state.lastError !== null) throw new ChannelClosedError(state.lastError);
        throw new ChannelTimeoutError('the function VM is not ready yet');
      }
      await this.transitioned.wait(left);
    }
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    if (this.idleMs > 0) this.idleTimer = setTimeout(() => void this.hibernate(), this.idleMs).unref();
  }

  /** True if invocations can be served: a VM is (or will be) there, or the function sleeps and can wake. */
  get canServe(): boolean {
    const kind = this.current.kind;
    return kind === 'serving' || kind === 'moving' || kind === 'replacing' || kind === 'asleep';
  }

  /** Scale to zero: stop the idle VM; the next invocation gets a fresh one with the same deployment. */
  private hibernate(): Promise<void> {
    return this.exclusive(async () => {
      const state = this.current;
      if (state.kind !== 'serving' || this.inflight > 0) return;
      this.events.log(`function ${this.functionId}: idle for ${this.idleMs / 1000} s, VM ${state.vm.id} stopped`);
      this.transition({ kind: 'asleep', deployment: state.deployment });
      await this.settledStops();
    });
  }

  private wake(): void {
    const state = this.current;
    if (state.kind === 'asleep') this.replace(state.deployment, 'woken by an invocation');
  }

  /** Deletes: stops every VM of the function (draining ones too) and every retry. */
  async stop(): Promise<void> {
    if (this.current.kind !== 'deleted') this.transition({ kind: 'deleted' });
    for (const vm of [...this.draining, ...this.unattached]) this.release(vm, false);
    await this.settledStops();
  }

  private async settledStops(): Promise<void> {
    await Promise.all(this.stopping);
  }

  private checkLive(): void {
    if (this.current.kind === 'deleted') throw new DeletedError('function deleted while it was deploying');
  }

  /**
   * A VM with `d` initialised, not yet serving: restored from the function's snapshot if it has one, else a
   * pool VM that loads the code (and may be snapshotted then). On any failure (or deletion) it is stopped.
   */
  private async startVm(d: Deployment, beforeLoad?: (vm: Vm) => Promise<void>): Promise<Vm> {
    await this.host.slots?.admit(this.functionId, this.host.slotWaitMs ?? 30_000);
    this.checkLive();
    const restored = await this.fromSnapshot(d);
    const vm = restored ?? (await this.pool.take(d.spec)).vm;
    this.unattached.add(vm);
    try {
      this.checkLive();
      await beforeLoad?.(vm);
      // A VM restored from the function's snapshot has its package already; a pool VM gets it now.
      if (!restored && d.package) await vm.attachTask(d.package.image);
      if (!restored) {
        const initMs = await this.load(vm, d);
        this.initTimes.set(vm, initMs);
        this.checkLive();
        await this.host.snapStart?.initialised(this.functionId, d, vm, initMs);
      }
      this.checkLive();
      if (vm.failure !== null) throw new ChannelClosedError(`VM ${vm.id} failed: ${vm.failure}`);
      return vm;
    } catch (error) {
      await vm.stop();
      throw error;
    } finally {
      this.unattached.delete(vm);
    }
  }

  /** The function's VM restored from its snapshot of `d`; null if there is none, or it did not restore. */
  private async fromSnapshot(d: Deployment): Promise<Vm | null> {
    try {
      return (await this.host.snapStart?.wake(this.functionId, d)) ?? null;
    } catch (error) {
      this.events.log(`function ${this.functionId}: its snapshot did not restore, initialising afresh: ${messageOf(error)}`);
      return null;
    }
  }

  /** Makes a started VM the serving one, if the operation that started it still owns the state. */
  private async adopt(vm: Vm, deployment: Deployment, expected: Kind): Promise<void> {
    if (this.current.kind !== expected) {
      await vm.stop();
      throw new DeletedError('function deleted while it was deploying');
    }
    this.transition({ kind: 'serving', vm, deployment });
  }

  /** Loads `d` into `vm`; resolves to how long its initialisation took (ms). */
  private async load(vm: Vm, d: Deployment): Promise<number> {
    const started = performance.now();
    try {
      // No seed: the VM layer renewed this VM's random state (and clock) when it was restored.
      const source = d.package ? { code: '', package: true } : { code: d.code };
      const loaded = await vm.channel.request('load', { ...source, handler: d.handler, env: d.env, version: d.version }, 60_000);
      // The runtime's own measure leaves out the channel (slow on a busy host); it cannot claim more than the host saw.
      return Math.max(0, Math.min(loaded.duration_ms, performance.now() - started));
    } catch (error) {
      if (error instanceof GuestRequestError) throw new LoadError(error.info);
      if (error instanceof GuestProtocolError || !(error instanceof ChannelClosedError) || vm.state === 'stopped') throw error;
      // The VM died under the load: its channel closes first, the cause (QEMU's exit, a panic) follows within 1 s.
      const reason = await failureOf(vm, 2000);
      throw reason === null ? error : new ChannelClosedError(`VM ${vm.id} stopped while the code loaded: ${reason}`);
    }
  }

  /** A VM died or overran a deadline: if it is the one serving, it is stopped and replaced (once). */
  private recycle(vm: Vm, reason: string, cause: ReplacementCause): void {
    const state = this.current;
    if (serving(state)?.vm !== vm) return; // already out of service: drained, stopped or never attached
    this.events.log(`function ${this.functionId}: replacing VM ${vm.id}: ${reason}`);
    this.events.onReplaced?.(cause);
    if (state.kind === 'moving') this.transition({ ...state, vm: null, lost: reason }); // the move yields the replacement
    else if (state.kind === 'serving') this.replace(state.deployment, reason);
  }

  private replace(deployment: Deployment, reason: string): void {
    this.transition({ kind: 'replacing', deployment, reason, attempt: 0, lastError: null });
  }

  /** One try at a replacement VM, if `state` is still current (a move, deploy or deletion supersedes it). */
  private async attempt(state: Replacing): Promise<void> {
    if (this.current !== state) return;
    let vm: Vm;
    try {
      vm = await this.startVm(state.deployment);
    } catch (error) {
      if (this.current !== state) return;
      const retryMs = backoff(state.attempt + 1);
      const why = `no VM could be started (${state.reason}); retrying in ${retryMs / 1000} s: ${messageOf(error)}`;
      this.events.log(`function ${this.functionId}: ${why}`);
      this.transition({ ...state, attempt: state.attempt + 1, lastError: why });
      this.troubled = true;
      this.events.onRetrying(why);
      return;
    }
    if (this.current !== state) {
      await vm.stop();
      return;
    }
    this.transition({ kind: 'serving', vm, deployment: state.deployment });
  }

  /** The one place the state changes: checks the pair, then does what entering and leaving states implies. */
  private transition(next: InstanceState): void {
    const from = this.current;
    if (!transitions[from.kind].includes(next.kind)) {
      throw new InvalidTransitionError(`function ${this.functionId}: ${from.kind} -> ${next.kind} is not a valid transition`);
    }
    this.current = next;
    const before = serving(from)?.vm ?? null;
    const after = serving(next)?.vm ?? null;
    // A VM no state references any more is stopped; after a move the old one first finishes its calls.
    if (before && before !== after) this.release(before, next.kind === 'serving');
    if (from.kind === 'replacing') clearTimeout(this.retryTimer);
    if (next.kind === 'serving' && after !== before) this.attached(next.vm);
    if (next.kind === 'replacing') {
      const state = next;
      const retry = () => this.exclusive(() => this.attempt(state)).catch((error: unknown) => {
        this.events.log(`function ${this.functionId}: replacement failed: ${messageOf(error)}`); // a bug, not a VM failure
      });
      this.retryTimer = setTimeout(() => void retry(), state.attempt === 0 ? 0 : backoff(state.attempt));
    }
    if (next.kind === 'asleep') this.events.onVm(null, null);
    if (next.kind === 'deleted') clearTimeout(this.idleTimer);
    if (next.kind === 'asleep' || next.kind === 'broken' || next.kind === 'deleted') this.host.slots?.leave(this.functionId);
    this.transitioned.notify();
  }

  private attached(vm: Vm): void {
    vm.startWatchdog(watchdog.intervalMs, watchdog.timeoutMs);
    vm.onFailure((reason) => this.recycle(vm, reason, failureCause(reason)));
    if (this.inflight === 0) this.armIdleTimer(); // a deployed function that is never invoked sleeps too
    this.events.onVm(vm, this.initTimes.get(vm) ?? null);
    if (this.troubled) {
      this.troubled = false;
      this.events.onRetrying(null);
    }
  }

  /** Stops `vm` (after its in-flight calls if `drain`), tracked so stop() can wait for it. */
  private release(vm: Vm, drain: boolean): void {
    if (drain) this.draining.add(vm);
    const stopped = (async () => {
      if (drain) await vm.channel.idle();
      await vm.stop();
    })().catch(() => {}).finally(() => {
      this.draining.delete(vm);
      this.stopping.delete(stopped);
    });
    this.stopping.add(stopped);
  }
}

/** The VM invocations go to in `state`, with the deployment it runs. */
function serving(state: InstanceState): { vm: Vm; deployment: Deployment } | null {
  if (state.kind === 'serving') return { vm: state.vm, deployment: state.deployment };
  if (state.kind === 'moving' && state.vm) return { vm: state.vm, deployment: state.deployment };
  return null;
}

/** The wait before retry number `attempt` (1, 2, ...). */
function backoff(attempt: number): number {
  return Math.min(retryBackoff.maxMs, retryBackoff.firstMs * 2 ** (attempt - 1));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The reason a VM failed, if it does within `ms`. */
function failureOf(vm: Vm, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    vm.onFailure((reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

function failure(
  status: 'error' | 'timeout',
  type: string,
  message: string,
  cold: boolean,
  deployment: Deployment,
): InvokeOutcome {
  return {
    status,
    response: null,
    error: { type, message, stack: '' },
    logs: [],
    duration_ms: 0,
    version: deployment.version,
    cold_start: cold,
  };
}

