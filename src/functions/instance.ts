// The running side of one function: which VM serves it, loading code into it, invoking it, and replacing
// the VM when it dies or overruns a deadline. Operations that change the VM are serialised.
import { ChannelClosedError, ChannelTimeoutError, GuestRequestError } from '../guest/channel.js';
import type { ErrorInfo, InvokeResult } from '../guest/protocol.js';
import type { Vm } from '../vm/driver.js';
import type { VmPool } from '../vm/pool.js';
import { specKey, type VmSpec } from '../vm/spec.js';

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
  inflight = 0;

  constructor(
    readonly functionId: string,
    private readonly pool: VmPool,
    private readonly events: InstanceEvents,
  ) {}

  get hasTarget(): boolean {
    return this.target !== null;
  }

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
    if (old) void old.then((oldVm) => this.drain(oldVm), () => {});
  }

  async invoke(requestId: string, event: unknown, timeoutMs: number, waitMs: number): Promise<InvokeOutcome> {
    const target = this.target;
    if (!target) throw new ChannelClosedError('the function has no VM');
    const cold = !this.targetReady;
    const vm = await withDeadline(target, waitMs, 'the function VM is not ready yet');
    this.inflight++;
    try {
      const result: InvokeResult = await vm.channel.request('invoke', { request_id: requestId, event, timeout_ms: timeoutMs }, timeoutMs);
      return { ...result, cold_start: cold };
    } catch (error) {
      if (error instanceof ChannelTimeoutError) {
        this.recycle(vm, `invocation ${requestId} exceeded its ${timeoutMs} ms timeout`);
        return failure('timeout', 'Timeout', `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`, cold, this.deployment);
      }
      if (error instanceof ChannelClosedError) {
        const reason = vm.failure ?? error.message;
        return failure('error', 'VMCrashed', `the function's VM stopped during the invocation: ${reason}`, cold, this.deployment);
      }
      throw error;
    } finally {
      this.inflight--;
    }
  }

  async stop(): Promise<void> {
    this.deleted = true;
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
      await vm.channel.request('load', { code: d.code, handler: d.handler, env: d.env, version: d.version }, 60_000);
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
    this.target = Promise.resolve(vm);
    this.targetReady = true;
    this.deployment = deployment;
    vm.onFailure((reason) => {
      if (this.deleted) return;
      void this.target?.then((current) => current === vm && this.recycle(vm, reason));
    });
    this.events.onVm(vm);
  }

  /** Replaces a VM that died or overran a deadline with a fresh one running the same deployment. */
  private recycle(vm: Vm, reason: string): void {
    const deployment = this.deployment;
    if (this.deleted || !deployment) return;
    this.events.log(`function ${this.functionId}: replacing VM ${vm.id}: ${reason}`);
    void vm.stop();
    this.targetReady = false;
    const replacement = this.exclusive(async () => {
      const fresh = await this.acquire(deployment);
      await this.loadOrStop(fresh, deployment);
      await this.attach(fresh, deployment);
      return fresh;
    });
    this.target = replacement;
    replacement.catch((error: unknown) => {
      if (this.target !== replacement || this.deleted) return;
      this.target = null;
      this.events.onVm(null);
      this.events.onBroken(`VM lost (${reason}) and could not be replaced: ${(error as Error).message}`);
    });
  }

  private async drain(vm: Vm): Promise<void> {
    await vm.channel.idle();
    await vm.stop();
  }
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
