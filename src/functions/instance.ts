// The running side of one function: which VM serves it, loading code into it, invoking it, and replacing
// the VM when it dies or overruns a deadline. Operations that change the VM are serialised.
import { randomBytes } from 'node:crypto';
import { ChannelClosedError, ChannelTimeoutError, GuestProtocolError, GuestRequestError } from '../guest/channel.js';
import type { ErrorInfo, InvokeResult } from '../guest/protocol.js';
import type { Vm } from '../vm/driver.js';
import type { VmPool } from '../vm/pool.js';
import { outOfMemory } from '../vm/diagnose.js';
import { specKey, type VmSpec } from '../vm/spec.js';

/** An idle VM is pinged this often; no answer in time means its guest hung, and it is replaced. */
export const watchdog = { intervalMs: 15_000, timeoutMs: 10_000 } as const;

/** Everything a VM needs to serve one version of a function. */
export interface Deployment {
  code: string;
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

export interface InstanceEvents {
  /** The VM serving the function changed (null: none). */
  onVm(vm: Vm | null): void;
  /** The VM was lost and could not be replaced. */
  onBroken(reason: string): void;
  log(message: string): void;
}

export class FunctionInstance {
  /** The VM that serves (or will serve) invocations; null when there is none. */
  private target: Promise<Vm> | null = null;
  private targetReady = false;
  private deployment: Deployment | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private deleted = false;
  /** Scaled to zero: no VM, but the deployment is kept and the next invocation wakes the function. */
  private asleep = false;
  /** The VM `target` resolved to, once it did (null while a replacement is starting). */
  private serving: Vm | null = null;
  private idleTimer: NodeJS.Timeout | undefined;
  inflight = 0;

  constructor(
    readonly functionId: string,
    private readonly pool: VmPool,
    private readonly events: InstanceEvents,
    /** Idle time after which the VM is stopped (0: never). */
    private readonly idleMs: number,
  ) {}

  /** Runs `op` after every earlier VM-changing operation on this function has finished. */
  exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(op, op);
    this.chain = run.catch(() => {});
    return run;
  }

  /** A VM from the pool with the deployment loaded; `phase` reports booting/deploying. */
  async deploy(deployment: Deployment, phase: (p: 'booting' | 'deploying', vm?: Vm) => Promise<void>): Promise<void> {
    await phase('booting');
    const vm = await this.acquire(deployment);
    await this.loadOrStop(vm, deployment, () => phase('deploying', vm));
    await this.attach(vm, deployment);
  }

  /** New code/handler/env into the running VM: atomic swap in the agent, in-flight calls finish on the old code. */
  async reload(deployment: Deployment): Promise<void> {
    const current = this.deployment;
    if (!this.target || !current || specKey(current.spec) !== specKey(deployment.spec)) {
      return this.move(deployment);
    }
    const vm = await this.target;
    await this.load(vm, deployment);
    this.deployment = deployment;
  }

  /** A VM of a new shape: loaded and switched to once ready; the old one drains, then stops. */
  async move(deployment: Deployment): Promise<void> {
    const vm = await this.acquire(deployment);
    await this.loadOrStop(vm, deployment);
    const old = this.target;
    await this.attach(vm, deployment);
    if (old) old.then((oldVm) => this.drain(oldVm)).catch(() => {}); // a dead old VM needs no draining
  }

  async invoke(requestId: string, event: unknown, timeoutMs: number, waitMs: number): Promise<InvokeOutcome> {
    if (!this.target && this.asleep) this.wake();
    const target = this.target;
    if (!target) throw new ChannelClosedError('the function has no VM');
    const cold = !this.targetReady;
    this.inflight++;
    clearTimeout(this.idleTimer);
    let vm: Vm | undefined;
    try {
      vm = await withDeadline(target, waitMs, 'the function VM is not ready yet');
      const result: InvokeResult = await vm.channel.request('invoke', { request_id: requestId, event, timeout_ms: timeoutMs }, timeoutMs);
      return { ...result, cold_start: cold };
    } catch (error) {
      if (error instanceof ChannelTimeoutError && vm) {
        this.recycle(vm, `invocation ${requestId} exceeded its ${timeoutMs} ms timeout`);
        return failure('timeout', 'Timeout', `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`, cold, this.deployment);
      }
      if (error instanceof GuestProtocolError && vm) {
        // Before the generic crash path: a hostile guest could print an OOM message to its console.
        this.recycle(vm, error.message);
        return failure('error', 'ProtocolError', `the function's VM broke the guest protocol and was replaced: ${error.message}`, cold, this.deployment);
      }
      if (error instanceof GuestRequestError) {
        // ok:false to an invoke (an agent that could not reply, e.g. a frame too large): recorded, not a 500.
        return failure('error', error.info.type, error.info.message, cold, this.deployment);
      }
      if (error instanceof ChannelClosedError && vm) {
        // The VM reports its failure after QEMU exits (500 ms grace) and its console is drained (500 ms at most).
        const reason = (await failureOf(vm, 2000)) ?? error.message;
        if (reason.startsWith(outOfMemory)) {
          const limit = this.deployment?.spec.memoryMb;
          return failure('error', 'OutOfMemory', `the function ran out of memory (memory_mb: ${limit}); its VM was replaced`, cold, this.deployment);
        }
        return failure('error', 'VMCrashed', `the function's VM stopped during the invocation: ${reason}`, cold, this.deployment);
      }
      throw error;
    } finally {
      this.inflight--;
      if (this.inflight === 0) this.armIdleTimer();
    }
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    if (this.idleMs > 0) this.idleTimer = setTimeout(() => void this.hibernate(), this.idleMs).unref();
  }

  /** True if invocations can be served: a VM is (or will be) there, or the function sleeps and can wake. */
  get canServe(): boolean {
    return this.target !== null || this.asleep;
  }

  /** Scale to zero: stop the idle VM; the next invocation gets a fresh one with the same deployment. */
  private hibernate(): Promise<void> {
    return this.exclusive(async () => {
      const target = this.target;
      if (!target || this.inflight > 0 || this.deleted || !this.targetReady) return;
      const vm = await target;
      this.target = null;
      this.serving = null;
      this.asleep = true;
      this.events.onVm(null);
      this.events.log(`function ${this.functionId}: idle for ${this.idleMs / 1000} s, VM ${vm.id} stopped`);
      await vm.stop();
    });
  }

  private wake(): void {
    const deployment = this.deployment;
    if (!deployment) return;
    this.asleep = false;
    this.targetReady = false;
    this.target = this.replaceWith(deployment, 'woken by an invocation');
  }

  async stop(): Promise<void> {
    this.deleted = true;
    clearTimeout(this.idleTimer);
    const target = this.target;
    this.target = null;
    this.deployment = null;
    if (target) await target.then((vm) => vm.stop(), () => {});
  }

  private async acquire(deployment: Deployment): Promise<Vm> {
    const { vm } = await this.pool.take(deployment.spec);
    if (this.deleted) {
      await vm.stop();
      throw new DeletedError('function deleted while it was deploying');
    }
    return vm;
  }

  private async load(vm: Vm, d: Deployment): Promise<void> {
    try {
      // A fresh seed per load: VMs restored from one snapshot must not share random state.
      const seed = randomBytes(32).toString('hex');
      await vm.channel.request('load', { code: d.code, handler: d.handler, env: d.env, version: d.version, seed }, 60_000);
    } catch (error) {
      if (error instanceof GuestRequestError) throw new LoadError(error.info);
      throw error;
    }
  }

  /** Loads `d` into a VM not yet serving; on any failure the VM is stopped, never leaked. */
  private async loadOrStop(vm: Vm, d: Deployment, before?: () => Promise<void>): Promise<void> {
    try {
      await before?.();
      await this.load(vm, d);
    } catch (error) {
      await vm.stop();
      throw error;
    }
  }

  /** Makes `vm` the serving VM, unless the function was deleted meanwhile. */
  private async attach(vm: Vm, deployment: Deployment): Promise<void> {
    if (this.deleted) {
      await vm.stop();
      throw new DeletedError('function deleted while it was deploying');
    }
    vm.startWatchdog(watchdog.intervalMs, watchdog.timeoutMs);
    this.target = Promise.resolve(vm);
    this.targetReady = true;
    this.asleep = false;
    if (this.inflight === 0) this.armIdleTimer(); // a deployed function that is never invoked sleeps too
    this.deployment = deployment;
    this.serving = vm;
    vm.onFailure((reason) => this.recycle(vm, reason));
    this.events.onVm(vm);
  }

  /** Replaces a VM that died or overran a deadline with a fresh one running the same deployment. */
  private recycle(vm: Vm, reason: string): void {
    const deployment = this.deployment;
    // Only the serving VM is replaced, once: two invocations timing out on it must not start two replacements.
    if (this.deleted || !deployment || this.serving !== vm) return;
    this.serving = null;
    this.events.log(`function ${this.functionId}: replacing VM ${vm.id}: ${reason}`);
    void vm.stop();
    this.targetReady = false;
    this.target = this.replaceWith(deployment, reason);
  }

  /** A fresh VM with `deployment` loaded, as the new target; if none can be had the function is broken. */
  private replaceWith(deployment: Deployment, reason: string): Promise<Vm> {
    const replacement = this.exclusive(async () => {
      const fresh = await this.acquire(deployment);
      await this.loadOrStop(fresh, deployment);
      await this.attach(fresh, deployment);
      return fresh;
    });
    replacement.catch((error: unknown) => {
      if (this.target !== replacement || this.deleted) return;
      this.target = null;
      this.events.onVm(null);
      // eslint-disable-next-line @typescript-eslint/consistent-type-assertions -- a host Error, not guest data
      this.events.onBroken(`no VM could be started (${reason}): ${(error as Error).message}`);
    });
    return replacement;
  }

  private async drain(vm: Vm): Promise<void> {
    await vm.channel.idle();
    await vm.stop();
  }
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
  deployment: Deployment | null,
): InvokeOutcome {
  return {
    status,
    response: null,
    error: { type, message, stack: '' },
    logs: [],
    duration_ms: 0,
    version: deployment?.version ?? 0,
    cold_start: cold,
  };
}

async function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ChannelTimeoutError(message)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
