// FunctionInstance against a fake pool whose VMs fail on cue: a failure injected at every step of deploy,
// reload, move, recycle and wake. After each the function must serve the newest intended version from one
// VM, the one the store is told about, with every other VM stopped. No QEMU: this runs in about a second.
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { ChannelClosedError, ChannelTimeoutError, type GuestChannel } from '../src/guest/channel.js';
import { DeletedError, FunctionInstance, InvalidTransitionError, retryBackoff, transitions, type Deployment, type InstanceHost } from '../src/functions/instance.js';
import { LiveVmCap, NoRoomError } from '../src/functions/live-vms.js';
import { hungGuest, outOfMemory } from '../src/vm/diagnose.js';
import type { Vm, VmState } from '../src/vm/driver.js';
import type { VmSpec } from '../src/vm/spec.js';

class Deferred {
  open!: () => void;
  fail!: (error: Error) => void;
  readonly promise = new Promise<void>((resolve, reject) => {
    this.open = resolve;
    this.fail = reject;
  });
}

class FakeVm implements Vm {
  readonly pid = undefined;
  state: VmState = 'running';
  failure: string | null = null;
  stopped = false;
  /** The version loaded, once a load finished. */
  loaded: number | null = null;
  /** Set while a load waits for `loadGate`. */
  loading = false;
  /** The VM dies right after its next load answered, before the instance uses it. */
  dieAfterLoad = false;
  /** The next load gets no answer in time, but the agent swaps the code in anyway. */
  loadTimesOut = false;
  loadGate: Deferred | null = null;
  readonly channel: GuestChannel;
  private readonly listeners: Array<(reason: string) => void> = [];
  private readonly closed = new Deferred();

  constructor(readonly id: string, readonly spec: VmSpec, holdLoad: boolean) {
    if (holdLoad) this.loadGate = new Deferred();
    this.closed.promise.catch(() => {});
    const channel = { request: (type: string, params: any) => this.request(type, params), idle: () => Promise.resolve() };
    this.channel = channel as unknown as GuestChannel;
  }

  private async request(type: string, params: any): Promise<unknown> {
    if (this.failure !== null || this.stopped) throw new ChannelClosedError('guest channel closed');
    if (type === 'load' && this.loadTimesOut) {
      this.loaded = params.version;
      throw new ChannelTimeoutError('guest did not answer load within 60000 ms');
    }
    if (type === 'load') {
      this.loading = true;
      // A failure of the VM ends the load (the channel closes), as with a real one.
      await Promise.race([this.loadGate?.promise, this.closed.promise]);
      this.loading = false;
      this.loaded = params.version;
      if (this.dieAfterLoad) this.fail('QEMU exited after the load (injected)');
      return { version: params.version, duration_ms: 1, logs: [] };
    }
    return { status: 'success', response: { vm: this.id, version: this.loaded }, error: null, logs: [], duration_ms: 1, version: this.loaded };
  }

  fail(reason = 'QEMU exited (injected)'): void {
    if (this.failure !== null) return;
    this.failure = reason;
    this.state = 'failed';
    this.closed.fail(new ChannelClosedError('guest channel closed'));
    for (const listener of this.listeners.splice(0)) listener(reason);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.state === 'running') this.state = 'stopped';
    this.closed.fail(new ChannelClosedError('guest channel closed by host'));
  }

  onFailure(listener: (reason: string) => void): void {
    if (this.failure !== null) listener(this.failure);
    else this.listeners.push(listener);
  }

  startWatchdog(): void {}
  prioritise(): void {}
  async syncClock(): Promise<void> {}
  async snapshot(): Promise<never> {
    throw new Error('not in the fake');
  }

  async resume(): Promise<void> {}
  consoleTail(): string {
    return '';
  }

  /** The package image attached to this VM's task disk. */
  task: string | null = null;
  async attachTask(image: string): Promise<void> {
    if (this.task !== null) throw new Error('a VM takes one package');
    this.task = image;
  }
}

/** What FunctionInstance uses of VmPool: take(), scripted. */
class FakePool {
  readonly vms: FakeVm[] = [];
  /**
   * Outcomes of the next takes, in order: 'fail' rejects, a Deferred holds the take until opened (or failed),
   * 'dead' hands out a VM that already failed, 'dies after load' one that fails once its load answered.
   */
  readonly script: Array<'fail' | 'dead' | 'dies after load' | Deferred> = [];
  /** New VMs hold their load until their loadGate opens. */
  holdLoads = false;
  takes = 0;

  async take(spec: VmSpec): Promise<{ vm: Vm; source: 'warm' }> {
    this.takes++;
    const step = this.script.shift();
    if (step === 'fail') throw new Error('restore failed (injected)');
    if (step instanceof Deferred) await step.promise;
    const vm = new FakeVm(`vm-${this.vms.length + 1}`, spec, this.holdLoads);
    this.vms.push(vm);
    if (step === 'dead') vm.fail('QEMU exited before the load (injected)');
    if (step === 'dies after load') vm.dieAfterLoad = true;
    return { vm, source: 'warm' };
  }

  vm(n: number): FakeVm {
    const vm = this.vms[n - 1];
    assert.ok(vm, `VM ${n} was taken`);
    return vm;
  }
}

function deployment(version: number, memoryMb = 256): Deployment {
  return { code: 'x', package: null, handler: 'handler', env: {}, version, spec: { runtime: 'node', vcpu: 1, memoryMb, network: 'none' } };
}

interface Harness {
  pool: FakePool;
  instance: FunctionInstance;
  /** The VM the store was last told about, and every onRetrying report. */
  store: { vm: Vm | null; retrying: Array<string | null> };
}

function setup(idleMs = 0, host: InstanceHost = {}): Harness {
  const pool = new FakePool();
  const store: Harness['store'] = { vm: null, retrying: [] };
  const events = {
    onVm: (vm: Vm | null) => { store.vm = vm; },
    onRetrying: (reason: string | null) => { store.retrying.push(reason); },
    onBroken: (reason: string) => { store.retrying.push(`broken: ${reason}`); }, // the pre-state-machine event
    log: () => {},
  };
  return { pool, store, instance: new FunctionInstance('fn', pool, events, idleMs, host) };
}

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await tick(2);
  }
}

/** Lets queued operations (replacements, drains) finish. */
async function settle(h: Harness): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await tick();
    await h.instance.exclusive(async () => {});
  }
}

// As the service calls them: inside exclusive().
const deploy = (h: Harness, d: Deployment) => h.instance.exclusive(() => h.instance.deploy(d, async () => {}));
const reload = (h: Harness, d: Deployment) => h.instance.exclusive(() => h.instance.reload(d));

async function invoke(h: Harness, waitMs = 2000) {
  return h.instance.invoke('request', {}, 1000, waitMs);
}

/** The function serves `version` from exactly one running VM, the store's; every other VM was stopped. */
async function assertServes(h: Harness, version: number): Promise<FakeVm> {
  await settle(h);
  const outcome = await invoke(h);
  assert.equal(outcome.status, 'success', JSON.stringify(outcome));
  const { vm: id, version: served } = outcome.response as { vm: string; version: number };
  assert.equal(served, version, 'the newest intended version is served');
  const target = h.pool.vms.find((vm) => vm.id === id);
  assert.ok(target && !target.stopped && target.failure === null, `the serving VM ${id} runs`);
  for (const vm of h.pool.vms) if (vm !== target) assert.ok(vm.stopped, `${vm.id} (not serving) was stopped`);
  assert.equal(h.store.vm, target, 'the store names the serving VM');
  assert.equal(h.instance.state.kind, 'serving');
  return target;
}

/** A VM the pool hands out dies before its load, or right after it (before it is attached), for each path. */
const deaths = [['is handed out dead', 'dead'], ['dies right after its load answered', 'dies after load']] as const;

function assertAllStopped(h: Harness): void {
  for (const vm of h.pool.vms) assert.ok(vm.stopped, `${vm.id} was stopped`);
}

let h: Harness;
beforeEach(() => {
  retryBackoff.firstMs = 20;
  retryBackoff.maxMs = 200;
  h = setup();
});

describe('deploy', () => {
  test('the pool fails to give a VM: broken, nothing running; a new deploy works', async () => {
    h.pool.script.push('fail');
    await assert.rejects(deploy(h, deployment(1)), /injected/);
    assert.equal(h.instance.state.kind, 'broken');
    assert.equal(h.instance.canServe, false);
    await assert.rejects(invoke(h), ChannelClosedError);
    await deploy(h, deployment(2));
    await assertServes(h, 2);
  });

  test('the VM fails while loading: it is stopped, the function broken', async () => {
    h.pool.holdLoads = true;
    const deploying = deploy(h, deployment(1));
    await until('the load', () => h.pool.vms[0]?.loading === true);
    h.pool.vm(1).fail();
    await assert.rejects(deploying, (error: Error) => error instanceof ChannelClosedError && /^VM vm-1 stopped while the code loaded: QEMU exited \(injected\)$/.test(error.message));
    assert.equal(h.instance.state.kind, 'broken');
    assertAllStopped(h);
    assert.equal(h.store.vm, null);
  });

  test('the VM fails after it was acquired, before its load: it is stopped, the function broken', async () => {
    const deploying = h.instance.exclusive(() => h.instance.deploy(deployment(1), async (phase) => {
      if (phase === 'deploying') h.pool.vm(1).fail();
    }));
    await assert.rejects(deploying, /injected/);
    assert.equal(h.instance.state.kind, 'broken');
    assertAllStopped(h);
    assert.equal(h.pool.vm(1).loaded, null, 'nothing was loaded');
  });

  for (const [what, step] of deaths) {
    test(`the VM ${what}: it is stopped, the function broken; a new deploy works`, async () => {
      h.pool.script.push(step);
      await assert.rejects(deploy(h, deployment(1)), /injected/);
      assert.equal(h.instance.state.kind, 'broken');
      assertAllStopped(h);
      assert.equal(h.store.vm, null);
      await deploy(h, deployment(2));
      await assertServes(h, 2);
    });
  }

  test('the VM fails after it was attached: replaced with the same version', async () => {
    await deploy(h, deployment(1));
    h.pool.vm(1).fail();
    const vm = await assertServes(h, 1);
    assert.equal(vm.id, 'vm-2');
  });

  test('deleted while the VM is acquired, or while it loads: the VM is stopped', async () => {
    const gate = new Deferred();
    h.pool.script.push(gate);
    const acquiring = deploy(h, deployment(1));
    await tick();
    await h.instance.stop();
    gate.open();
    await assert.rejects(acquiring, DeletedError);
    assertAllStopped(h);
    assert.equal(h.instance.state.kind, 'deleted');

    const other = setup();
    other.pool.holdLoads = true;
    const loading = deploy(other, deployment(1));
    await until('the load', () => other.pool.vms[0]?.loading === true);
    await other.instance.stop();
    await assert.rejects(loading);
    assertAllStopped(other);
  });
});

describe('reload (same shape)', () => {
  test('the VM fails while the new code loads: the update fails, the old version is served again', async () => {
    await deploy(h, deployment(1));
    const vm1 = h.pool.vm(1);
    vm1.loadGate = new Deferred();
    const reloading = reload(h, deployment(2));
    await until('the load', () => vm1.loading);
    vm1.fail();
    await assert.rejects(reloading, ChannelClosedError);
    await assertServes(h, 1); // the update failed, so the store still has version 1
  });

  test('the VM failed just before the reload: the update goes to a new VM, the old version is not restarted', async () => {
    await deploy(h, deployment(1));
    h.pool.vm(1).fail();
    await reload(h, deployment(2));
    const vm = await assertServes(h, 2);
    assert.equal(vm.id, 'vm-2');
    assert.equal(h.pool.vms.length, 2, 'no replacement of version 1 was started');
  });

  for (const [what, inject, error] of [
    ['the VM fails right after the new code loaded, before the switch', (vm: FakeVm) => { vm.dieAfterLoad = true; }, ChannelClosedError],
    ['the load gets no answer in time (the agent swaps the code late)', (vm: FakeVm) => { vm.loadTimesOut = true; }, ChannelTimeoutError],
  ] as const) {
    test(`${what}: the update fails, a new VM serves the old version`, async () => {
      await deploy(h, deployment(1));
      inject(h.pool.vm(1));
      await assert.rejects(reload(h, deployment(2)), error);
      const vm = await assertServes(h, 1);
      assert.equal(vm.id, 'vm-2');
    });
  }

  test('the VM fails after the reload: replaced with the new version', async () => {
    await deploy(h, deployment(1));
    await reload(h, deployment(2));
    assert.equal(h.pool.vms.length, 1, 'a hot reload keeps the VM');
    h.pool.vm(1).fail();
    await assertServes(h, 2);
  });
});

describe('packages', () => {
  const packaged = (version: number, sha: string): Deployment => ({ ...deployment(version), code: '', package: { sha256: sha, image: `/images/${sha}` } });

  test('a pool VM gets the package image before its load; the same package reloads in place, a new one moves to a new VM', async () => {
    await deploy(h, packaged(1, 'aaa'));
    assert.equal(h.pool.vm(1).task, '/images/aaa');
    await reload(h, { ...packaged(2, 'aaa'), env: { NEW: '1' } });
    assert.equal((await assertServes(h, 2)).id, 'vm-1', 'same package: hot reload in the same VM');
    await reload(h, packaged(3, 'bbb'));
    const vm = await assertServes(h, 3);
    assert.equal(vm.id, 'vm-2', 'a new package: a new VM');
    assert.equal(vm.task, '/images/bbb');
    await reload(h, deployment(4));
    const single = await assertServes(h, 4);
    assert.equal(single.id, 'vm-3', 'from a package back to code: a new VM, without a package');
    assert.equal(single.task, null);
  });
});

describe('move (new shape)', () => {
  beforeEach(async () => {
    await deploy(h, deployment(1));
  });

  test('no new VM can be had: the update fails, the old VM keeps serving', async () => {
    h.pool.script.push('fail');
    await assert.rejects(reload(h, deployment(2, 512)), /injected/);
    const vm = await assertServes(h, 1);
    assert.equal(vm.id, 'vm-1');
  });

  test('the new VM fails while loading: it is stopped, the old one keeps serving', async () => {
    h.pool.holdLoads = true;
    const moving = reload(h, deployment(2, 512));
    await until('the load', () => h.pool.vms[1]?.loading === true);
    const during = await invoke(h);
    assert.deepEqual(during.response, { vm: 'vm-1', version: 1 }, 'the old VM serves during the move');
    h.pool.vm(2).fail();
    await assert.rejects(moving, ChannelClosedError);
    const vm = await assertServes(h, 1);
    assert.equal(vm.id, 'vm-1');
  });

  for (const [what, step] of deaths) {
    test(`the new VM ${what}: it is stopped, the old one keeps serving`, async () => {
      h.pool.script.push(step);
      await assert.rejects(reload(h, deployment(2, 512)), /injected/);
      const vm = await assertServes(h, 1);
      assert.equal(vm.id, 'vm-1');
    });
  }

  test('the new VM fails after the move: replaced with the new version', async () => {
    await reload(h, deployment(2, 512));
    h.pool.vm(2).fail();
    const vm = await assertServes(h, 2);
    assert.equal(vm.spec.memoryMb, 512);
  });

  test('the old VM fails while the new one is acquired: the move completes, nothing older comes back', async () => {
    const gate = new Deferred();
    h.pool.script.push(gate);
    const moving = reload(h, deployment(2, 512));
    await tick();
    h.pool.vm(1).fail();
    await tick();
    gate.open();
    await moving;
    const vm = await assertServes(h, 2);
    assert.equal(vm.id, 'vm-2');
    assert.equal(h.pool.vms.length, 2, 'no replacement of the old version was started');
  });

  test('the old VM fails while the new one loads: the move completes', async () => {
    h.pool.holdLoads = true;
    const moving = reload(h, deployment(2, 512));
    await until('the load', () => h.pool.vms[1]?.loading === true);
    h.pool.holdLoads = false;
    h.pool.vm(1).fail();
    await tick();
    await assert.rejects(invoke(h, 20), 'no VM serves while the only live one is still loading');
    h.pool.vm(2).loadGate?.open();
    await moving;
    const vm = await assertServes(h, 2);
    assert.equal(vm.id, 'vm-2');
  });

  test('the old VM fails, then the move fails too: the old version is replaced (the update did not happen)', async () => {
    const gate = new Deferred();
    h.pool.script.push(gate);
    const moving = reload(h, deployment(2, 512));
    await tick();
    h.pool.vm(1).fail();
    gate.fail(new Error('restore failed (injected)'));
    await assert.rejects(moving, /injected/);
    const vm = await assertServes(h, 1);
    assert.equal(vm.spec.memoryMb, 256);
  });

  test('the old VM drains, then stops', async () => {
    await reload(h, deployment(2, 512));
    await settle(h);
    assert.ok(h.pool.vm(1).stopped);
  });
});

describe('recycle', () => {
  beforeEach(async () => {
    await deploy(h, deployment(1));
  });

  test('the serving VM fails: one replacement, the same version', async () => {
    h.pool.vm(1).fail();
    h.pool.vm(1).fail('again');
    await assertServes(h, 1);
    assert.equal(h.pool.vms.length, 2);
  });

  test('the replacement fails while loading, then after attach: replaced again each time', async () => {
    h.pool.holdLoads = true;
    h.pool.vm(1).fail();
    await until('the replacement load', () => h.pool.vms[1]?.loading === true);
    h.pool.vm(2).fail();
    await until('the next replacement', () => h.pool.vms[2]?.loading === true);
    h.pool.holdLoads = false;
    h.pool.vm(3).loadGate?.open();
    await settle(h);
    h.pool.vm(3).fail();
    const vm = await assertServes(h, 1);
    assert.equal(vm.id, 'vm-4');
  });

  for (const [what, step] of deaths) {
    test(`the replacement ${what}: retried, \`error\` says why meanwhile`, async () => {
      h.pool.script.push(step);
      h.pool.vm(1).fail();
      await until('the second replacement', () => h.instance.state.kind === 'serving');
      const vm = await assertServes(h, 1);
      assert.equal(vm.id, 'vm-3');
      assert.match(String(h.store.retrying[0]), /no VM could be started .*injected/);
      assert.equal(h.store.retrying.at(-1), null);
    });
  }

  test('no replacement can be had: retried, `error` reported meanwhile and cleared on success', async () => {
    h.pool.script.push('fail', 'fail');
    h.pool.vm(1).fail();
    await until('the retries', () => h.pool.takes >= 4);
    await assertServes(h, 1);
    assert.equal(h.store.retrying.length, 3);
    assert.match(String(h.store.retrying[0]), /no VM could be started .*injected/);
    assert.equal(h.store.retrying.at(-1), null);
  });

  test('a new version during the retries whose VM fails too: the retries go on with the old version', async () => {
    for (let i = 0; i < 50; i++) h.pool.script.push('fail');
    h.pool.vm(1).fail();
    await until('a failed retry', () => h.store.retrying.length > 0);
    h.pool.script.length = 0;
    h.pool.script.push('dead');
    await assert.rejects(reload(h, deployment(2)), /injected/);
    await until('the old version back', () => h.instance.state.kind === 'serving');
    await assertServes(h, 1);
    assert.equal(h.store.retrying.at(-1), null, '`error` cleared');
  });

  test('a new version during the retries wins over the old one', async () => {
    for (let i = 0; i < 50; i++) h.pool.script.push('fail');
    h.pool.vm(1).fail();
    await until('a failed retry', () => h.store.retrying.length > 0);
    h.pool.script.length = 0;
    await reload(h, deployment(2));
    await tick(3 * retryBackoff.maxMs);
    await assertServes(h, 2);
    assert.equal(h.store.retrying.at(-1), null, '`error` cleared');
  });
});

describe('wake', () => {
  beforeEach(async () => {
    h = setup(30);
    await deploy(h, deployment(1));
    await until('sleep', () => h.pool.vm(1).stopped);
    assert.equal(h.instance.state.kind, 'asleep');
    assert.equal(h.store.vm, null);
  });

  test('the pool fails twice: the invocation waits through the retries, `error` is set then cleared', async () => {
    h.pool.script.push('fail', 'fail');
    const outcome = await invoke(h, 5000);
    assert.equal(outcome.status, 'success');
    assert.equal(outcome.cold_start, true);
    assert.equal(h.store.retrying.length, 3);
    assert.equal(h.store.retrying.at(-1), null);
    assert.equal(h.pool.vms.length, 2);
  });

  test('an invocation that cannot wait gets a 503 with the reason; the function still recovers', async () => {
    for (let i = 0; i < 4; i++) h.pool.script.push('fail');
    await assert.rejects(invoke(h, 50), (error: Error) => error instanceof ChannelClosedError && /injected/.test(error.message));
    assert.equal(h.instance.canServe, true);
    await until('recovery', () => h.instance.state.kind === 'serving', 5000);
    await assertServes(h, 1);
  });

  test('the woken VM fails while loading, or right after: replaced', async () => {
    h.pool.holdLoads = true;
    const waiting = invoke(h, 5000);
    await until('the wake load', () => h.pool.vms[1]?.loading === true);
    h.pool.vm(2).fail();
    h.pool.holdLoads = false;
    await until('the next VM', () => h.pool.vms.length === 3);
    h.pool.vm(3).loadGate?.open();
    assert.equal((await waiting).status, 'success');
    h.pool.vm(3).fail();
    await assertServes(h, 1);
  });

  for (const [what, step] of deaths) {
    test(`the woken VM ${what}: the invocation waits for the next one, \`error\` says why meanwhile`, async () => {
      h.pool.script.push(step);
      const outcome = await invoke(h, 5000);
      assert.equal(outcome.status, 'success');
      assert.deepEqual(outcome.response, { vm: 'vm-3', version: 1 });
      assert.match(String(h.store.retrying[0]), /no VM could be started .*injected/);
      assert.equal(h.store.retrying.at(-1), null);
    });
  }

  test('a code update while asleep whose new VM fails while loading: still asleep; an invocation wakes the old version', async () => {
    h.pool.holdLoads = true;
    const updating = reload(h, deployment(2));
    await until('the load', () => h.pool.vms[1]?.loading === true);
    h.pool.vm(2).fail();
    await assert.rejects(updating, ChannelClosedError);
    assert.equal(h.instance.state.kind, 'asleep');
    assert.equal(h.store.vm, null);
    h.pool.holdLoads = false;
    const outcome = await invoke(h);
    assert.deepEqual(outcome.response, { vm: 'vm-3', version: 1 });
    assert.equal(outcome.cold_start, true);
  });

  test('deleting during the retries stops them', async () => {
    for (let i = 0; i < 100; i++) h.pool.script.push('fail');
    await assert.rejects(invoke(h, 10));
    await until('a retry', () => h.pool.takes >= 3);
    await h.instance.stop();
    const takes = h.pool.takes;
    await tick(3 * retryBackoff.maxMs);
    assert.ok(h.pool.takes <= takes + 1, 'at most the try under way finishes');
    assert.equal(h.instance.state.kind, 'deleted');
    assertAllStopped(h);
  });
});

describe('the state machine', () => {
  test('invalid transitions throw; a deleted function has none', async () => {
    await deploy(h, deployment(1));
    await assert.rejects(deploy(h, deployment(2)), InvalidTransitionError);
    await h.instance.stop();
    assert.deepEqual(transitions.deleted, []);
    await assert.rejects(reload(h, deployment(2)), DeletedError);
    await assert.rejects(invoke(h), ChannelClosedError);
    assertAllStopped(h);
  });

  test('every state reaches deleted', () => {
    for (const [from, to] of Object.entries(transitions)) if (from !== 'deleted') assert.ok(to.includes('deleted'), from);
  });
});

describe('SnapStart', () => {
  /** A snapshot store holding the VMs `wake` hands out, and what `initialised` was told. */
  function snapStart(pool: () => FakePool) {
    const seen = { initialised: [] as Array<{ version: number; initMs: number }>, wakes: 0, failWake: false, failCapture: false };
    const host: InstanceHost = {
      snapStart: {
        async wake(_id, d) {
          if (seen.initialised.length === 0) return null; // nothing captured yet
          seen.wakes++;
          if (seen.failWake) throw new Error('restore failed (injected)');
          const vm = new FakeVm(`snap-${seen.wakes}`, d.spec, false);
          vm.loaded = d.version; // the snapshot holds the initialised code
          pool().vms.push(vm); // so the harness checks it is stopped like the others
          return vm;
        },
        async initialised(_id, d, _vm, initMs) {
          if (seen.failCapture) throw new Error('snapshot failed (injected)');
          seen.initialised.push({ version: d.version, initMs });
        },
      },
    };
    return { seen, host };
  }

  test('a wake restores the snapshot and loads nothing; a snapshot that fails to restore falls back to a load', async () => {
    const snap = snapStart(() => h.pool);
    h = setup(0, snap.host);
    await deploy(h, deployment(1));
    assert.equal(snap.seen.initialised.length, 1, 'the first load reports its init time');
    assert.ok(snap.seen.initialised[0]!.initMs >= 0);
    assert.ok(h.instance.sleepIfIdle());
    assert.equal(h.instance.state.kind, 'asleep');
    const woken = await invoke(h);
    assert.deepEqual(woken.response, { vm: 'snap-1', version: 1 });
    assert.equal(woken.cold_start, true);
    assert.equal(h.pool.takes, 1, 'no pool VM was taken for the wake');

    snap.seen.failWake = true;
    assert.ok(h.instance.sleepIfIdle());
    const fallback = await invoke(h);
    assert.equal(fallback.status, 'success');
    assert.equal(h.pool.takes, 2, 'the wake fell back to a pool VM and a load');
    const { vm: from } = fallback.response as { vm: string };
    assert.match(from, /^vm-/, 'served by the pool VM');
  });

  test('a snapshot that breaks its VM fails that start; the VM is stopped', async () => {
    const snap = snapStart(() => h.pool);
    snap.seen.failCapture = true;
    h = setup(0, snap.host);
    await assert.rejects(deploy(h, deployment(1)), /snapshot failed/);
    assert.equal(h.instance.state.kind, 'broken');
    assertAllStopped(h);
  });

  test('sleepIfIdle refuses while an invocation or an operation runs', async () => {
    await deploy(h, deployment(1));
    const gate = new Deferred();
    const busy = h.instance.exclusive(() => gate.promise);
    assert.equal(h.instance.sleepIfIdle(), false, 'an operation is under way');
    gate.open();
    await busy;
    h.instance.inflight++;
    assert.equal(h.instance.sleepIfIdle(), false, 'an invocation is in flight');
    h.instance.inflight--;
    assert.equal(h.instance.sleepIfIdle(), true);
    await settle(h);
    assertAllStopped(h);
  });
});

describe('the live VM cap', () => {
  test('admit makes the least recently used idle holder sleep; waits while all are busy; gives up after its wait', async () => {
    const busy = new Set<string>();
    const slept: string[] = [];
    const cap = new LiveVmCap(2, (id) => {
      if (busy.has(id)) return false;
      slept.push(id);
      cap.leave(id);
      return true;
    });
    await cap.admit('a', 0);
    await cap.admit('b', 0);
    cap.used('a'); // b is now the least recently used
    await cap.admit('c', 0);
    assert.deepEqual(slept, ['b']);
    assert.equal(cap.live, 2);
    await cap.admit('a', 0); // already holds one
    assert.deepEqual(slept, ['b']);

    busy.add('a').add('c');
    await assert.rejects(cap.admit('d', 20), NoRoomError);
    const waiting = cap.admit('d', 2000);
    await tick(20);
    busy.delete('c');
    cap.idle();
    await waiting;
    assert.deepEqual(slept, ['b', 'c'], 'c went once it was idle');
    cap.used('zz'); // not a holder: no effect
    assert.equal(cap.live, 2);
  });
});

describe('replacement causes', () => {
  test('a VM failure is reported as out of memory, hung or crashed, as the VM layer words it', async () => {
    const causes: string[] = [];
    const pool = new FakePool();
    const instance = new FunctionInstance('fn', pool, { onVm: () => {}, onRetrying: () => {}, onReplaced: (cause) => causes.push(cause), log: () => {} }, 0);
    await instance.exclusive(() => instance.deploy(deployment(1), async () => {}));
    const reasons = [`${outOfMemory} (QEMU exited (code 0))`, `${hungGuest}: no answer to ping in 10000 ms`, 'QEMU exited (signal SIGKILL)', 'the runtime process exited (QEMU exited (code 0))'];
    for (const [n, reason] of reasons.entries()) {
      pool.vm(n + 1).fail(reason);
      await until(`replacement ${n + 1}`, () => instance.state.kind === 'serving' && pool.vms.length === n + 2);
    }
    assert.deepEqual(causes, ['oom', 'hang', 'crash', 'crash']);
    await instance.stop();
  });
});
