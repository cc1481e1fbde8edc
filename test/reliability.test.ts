// Faults provoked for real: runaway handlers, memory exhaustion, crashing runtimes, concurrency, idle VMs.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { Vm } from '../src/vm/driver.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { deployReady, startTestServer, waitForState, type TestServer } from './support/server.js';
import { processExists } from './support/vm-env.js';

let fnvm: TestServer;

before(async () => {
  fnvm = await startTestServer();
});

after(async () => {
  await fnvm?.stop();
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the servers');
});

const deploy = deployReady;

const invoke = (server: TestServer, name: string, event: unknown = {}) =>
  server.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event } });

describe('timeouts', () => {
  for (const [runtime, code] of [
    ['node', 'exports.handler = (e) => { if (e.spin) { while (true) {} } return "ok"; }'],
    ['python', "def handler(event):\n    if event.get('spin'):\n        while True:\n            pass\n    return 'ok'"],
  ] as const) {
    test(`a busy loop (${runtime}) ends as timeout within timeout_seconds + 1 s; others are unaffected`, async () => {
      await deploy(fnvm, { name: `spin-${runtime}`, runtime, code, timeout_seconds: 2 });
      await deploy(fnvm, { name: `bystander-${runtime}`, runtime: 'node', code: 'exports.handler = (e) => e' });
      const started = Date.now();
      const spinning = invoke(fnvm, `spin-${runtime}`, { spin: true });
      const bystander = await invoke(fnvm, `bystander-${runtime}`, { still: 'here' });
      assert.deepEqual(bystander.body.response, { still: 'here' });
      const result = await spinning;
      const elapsed = Date.now() - started;
      assert.equal(result.body.status, 'timeout');
      assert.match(result.body.error.message, /timed out after 2/);
      assert.ok(elapsed < 3000, `answered after ${elapsed} ms`);
      const next = await invoke(fnvm, `spin-${runtime}`);
      assert.equal(next.body.status, 'success', JSON.stringify(next.body));
      assert.equal(next.body.response, 'ok');
      const logs = await fnvm.api(`/v1/functions/spin-${runtime}/logs`);
      assert.deepEqual(logs.body.items.map((i: any) => i.status), ['success', 'timeout']);
    });
  }
});

describe('memory and crashes', () => {
  test('a Node handler that allocates past memory_mb gets OutOfMemory and the function recovers', async () => {
    await deploy(fnvm, {
      name: 'hog-node', runtime: 'node', memory_mb: 128,
      code: 'const keep = []; exports.handler = (e) => { if (e.hog) { for (;;) keep.push(new Array(1e6).fill(Math.random())); } return "fine"; }',
    });
    const result = await invoke(fnvm, 'hog-node', { hog: true });
    assert.equal(result.body.status, 'error');
    assert.equal(result.body.error.type, 'OutOfMemory', JSON.stringify(result.body.error));
    assert.match(result.body.error.message, /out of memory/);
    assert.equal((await invoke(fnvm, 'hog-node')).body.response, 'fine');
  });

  test('a Python handler that allocates past memory_mb gets a memory error and the function recovers', async () => {
    await deploy(fnvm, {
      name: 'hog-python', runtime: 'python', memory_mb: 128,
      code: "keep = []\ndef handler(event):\n    if event.get('hog'):\n        while True:\n            keep.append(bytearray(8 * 1024 * 1024))\n    return 'fine'",
    });
    const result = await invoke(fnvm, 'hog-python', { hog: true });
    assert.equal(result.body.status, 'error');
    assert.ok(['OutOfMemory', 'MemoryError'].includes(result.body.error.type), JSON.stringify(result.body.error));
    assert.equal((await invoke(fnvm, 'hog-python')).body.response, 'fine');
  });

  for (const [runtime, code] of [
    ['node', 'exports.handler = (e) => { if (e.die) process.exit(3); return "alive"; }'],
    ['python', "import os\ndef handler(event):\n    if event.get('die'):\n        os._exit(3)\n    return 'alive'"],
  ] as const) {
    test(`a runtime that exits (${runtime}) fails its invocation, and the VM is replaced`, async () => {
      const before = await deploy(fnvm, { name: `crash-${runtime}`, runtime, code });
      const result = await invoke(fnvm, `crash-${runtime}`, { die: true });
      assert.equal(result.body.status, 'error');
      assert.equal(result.body.error.type, 'VMCrashed');
      assert.match(result.body.error.message, /exited/);
      const next = await invoke(fnvm, `crash-${runtime}`);
      assert.equal(next.body.response, 'alive');
      const item = (await fnvm.api(`/v1/functions/crash-${runtime}`)).body.item;
      assert.notEqual(item.vm_id, before.vm_id);
      assert.equal(item.state, 'ready');
    });
  }
});

describe('concurrency', () => {
  test('200 concurrent invocations across 10 functions: no lost or duplicated records', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `many-${i}`);
    for (const name of names) {
      await deploy(fnvm, { name, runtime: 'node', code: 'exports.handler = async (e) => { await new Promise((r) => setTimeout(r, 20)); return e.i; }' });
    }
    const calls = names.flatMap((name) => Array.from({ length: 20 }, (_, i) => ({ name, i })));
    const results = await Promise.all(calls.map(({ name, i }) => invoke(fnvm, name, { i })));
    results.forEach((r, k) => {
      assert.equal(r.status, 200);
      assert.equal(r.body.status, 'success');
      assert.equal(r.body.response, calls[k]!.i);
    });
    for (const name of names) {
      const logs = (await fnvm.api(`/v1/functions/${name}/logs`)).body.items;
      const mine = results.filter((_, k) => calls[k]!.name === name).map((r) => r.body.request_id).sort();
      assert.deepEqual(logs.map((l: any) => l.request_id).sort(), mine);
    }
  });

  test('concurrent invocations share commits, yet no answer leaves before its record is readable elsewhere', async () => {
    const fn = await deploy(fnvm, { name: 'committed', runtime: 'node', code: 'exports.handler = (e) => e.i' });
    const reader = new Database(join(fnvm.dataDir, 'fnvm.sqlite'), { readonly: true }); // not the server's connection
    const count = reader.prepare('SELECT count(*) FROM invocations WHERE function_id = ?').pluck();
    let answered = 0;
    const early: string[] = [];
    // Published as the route's handler resolves, just before Fastify sends its answer.
    const onAnswer = (message: any) => {
      if (!String(message.request.url).endsWith('/committed/invoke')) return;
      answered++;
      const stored = Number(count.get(fn.id));
      if (stored < answered) early.push(`answer ${answered} with ${stored} records committed`);
    };
    subscribe('tracing:fastify.request.handler:asyncStart', onAnswer);
    try {
      const results = await Promise.all(Array.from({ length: 64 }, (_, i) => invoke(fnvm, 'committed', { i })));
      assert.deepEqual(results.map((r) => r.body.response), Array.from({ length: 64 }, (_, i) => i));
    } finally {
      unsubscribe('tracing:fastify.request.handler:asyncStart', onAnswer);
      reader.close();
    }
    assert.equal(answered, 64);
    assert.deepEqual(early, []);
    assert.equal((await fnvm.api('/v1/functions/committed/logs')).body.total, 64);
  });

  test('invocations beyond max_concurrency get 429', async () => {
    await deploy(fnvm, {
      name: 'narrow', runtime: 'node', max_concurrency: 2,
      code: 'exports.handler = async () => { await new Promise((r) => setTimeout(r, 500)); return 1; }',
    });
    const results = await Promise.all(Array.from({ length: 6 }, () => invoke(fnvm, 'narrow')));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 429, 429, 429, 429]);
    assert.match(results.find((r) => r.status === 429)!.body.error, /max_concurrency/);
  });
});

describe('scale to zero', () => {
  test('an idle function has its VM stopped; the next invoke restores one (cold_start)', async () => {
    const idle = await startTestServer({ idleSeconds: 1 });
    try {
      const fn = await deploy(idle, { name: 'sleepy', runtime: 'python', code: "count = 0\ndef handler(event):\n    return 'awake'" });
      const first = await invoke(idle, 'sleepy');
      assert.equal(first.body.cold_start, false);
      const deadline = Date.now() + 30_000;
      while ((await idle.api('/v1/functions/sleepy')).body.item.vm_id !== null) {
        assert.ok(Date.now() < deadline, 'VM stopped after the idle time');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal((await idle.api('/v1/functions/sleepy')).body.item.state, 'ready');
      const woken = await invoke(idle, 'sleepy');
      assert.equal(woken.body.status, 'success');
      assert.equal(woken.body.response, 'awake');
      assert.equal(woken.body.cold_start, true);
      const logs = (await idle.api('/v1/functions/sleepy/logs')).body.items;
      assert.equal(logs[0].cold_start, true);
      assert.equal(logs[1].cold_start, false);
      assert.notEqual((await idle.api(`/v1/functions/${fn.id}`)).body.item.vm_id, null);
    } finally {
      await idle.stop();
    }
  });
});

describe('a VM lost at a lifecycle step', () => {
  /**
   * Wraps the server's pool: `before` runs ahead of each take (throw to fail it), `after` gets each VM handed
   * out; every VM handed out is kept.
   */
  function tapPool(server: TestServer, before: () => Promise<void>, after: (vm: Vm) => void = () => {}): { taken: Vm[]; restore(): void } {
    const pool = server.server.pool;
    const take = pool.take.bind(pool);
    const taken: Vm[] = [];
    pool.take = async (spec) => {
      await before();
      const got = await take(spec);
      taken.push(got.vm);
      after(got.vm);
      return got;
    };
    return { taken, restore: () => { pool.take = take; } };
  }

  /** The next `load` sent to `vm` kills its QEMU (SIGKILL, by PID) as soon as the request is on its way. */
  function killOnLoad(vm: Vm): { killed: boolean } {
    const kill = { killed: false };
    const channel = vm.channel;
    const request = channel.request.bind(channel);
    channel.request = (type, params, timeoutMs) => {
      const reply = request(type, params, timeoutMs);
      if (type === 'load' && !kill.killed) {
        assert.ok(vm.pid, `VM ${vm.id} has a process`);
        process.kill(vm.pid, 'SIGKILL');
        kill.killed = true;
      }
      return reply;
    };
    return kill;
  }

  /**
   * Polls the function until stop(): whether its `error` ever named the injected failure while its state stayed
   * ready; stop() waits (10 s at most) for `error` to be cleared.
   */
  function watchError(server: TestServer, id: string): { stop(): Promise<boolean> } {
    let seen = false;
    let watching = true;
    const polling = (async () => {
      while (watching) {
        const item = (await server.api(`/v1/functions/${id}`)).body.item;
        if (/injected/.test(item.error ?? '')) {
          seen = true;
          assert.equal(item.state, 'ready', 'a function that retries stays ready');
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    return {
      async stop() {
        await until('`error` cleared', async () => (await server.api(`/v1/functions/${id}`)).body.item.error === null, 10_000);
        watching = false;
        await polling;
        return seen;
      },
    };
  }

  /** The server's pool refuses the next `refuse` takes. */
  function refusingPool(server: TestServer): { refuse: number; restore(): void } {
    const refusing = { refuse: 0, restore: () => {} };
    refusing.restore = tapPool(server, async () => {
      if (refusing.refuse > 0) {
        refusing.refuse--;
        throw new Error('no VM for you (injected)');
      }
    }).restore;
    return refusing;
  }

  const gone = (vm: Vm) => vm.state === 'stopped' || vm.state === 'failed';

  async function until(what: string, condition: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await condition())) {
      assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  test('move: the old VM dies while the new one is acquired; the new version serves, nothing else runs', async () => {
    let old: Vm | undefined;
    const tap = tapPool(fnvm, async () => {
      const dying = old;
      if (!dying) return;
      old = undefined; // once: a later take (the new VM's replacement, say) goes through
      assert.ok(dying.pid, 'the old VM has a process');
      process.kill(dying.pid, 'SIGKILL');
      await until('the old VM to be reported failed', () => dying.failure !== null);
    });
    try {
      const fn = await deploy(fnvm, { name: 'lost-mid-move', runtime: 'node', code: 'exports.handler = () => "v1"' });
      old = tap.taken.find((vm) => vm.id === fn.vm_id);
      assert.ok(old, 'the deploy took its VM from the pool');
      const moved = await fnvm.api('/v1/functions/lost-mid-move', { method: 'PUT', body: { memory_mb: 384, code: 'exports.handler = () => "v2"' } });
      assert.equal(moved.status, 200, JSON.stringify(moved.body));
      const result = await invoke(fnvm, 'lost-mid-move');
      assert.equal(result.body.response, 'v2', JSON.stringify(result.body));
      assert.equal(result.body.version, 2);
      const item = (await fnvm.api('/v1/functions/lost-mid-move')).body.item;
      const serving = tap.taken.find((vm) => vm.id === item.vm_id);
      assert.ok(serving && serving.state === 'running', 'the store names the running VM');
      assert.equal(serving.spec.memoryMb, 384);
      await until('every other VM to stop', () => tap.taken.every((vm) => vm === serving || gone(vm)), 10_000);
    } finally {
      tap.restore();
    }
  });

  test('deploy: the VM is killed while the code loads; `error` says why, no VM of it runs, a redeploy gets it ready', async () => {
    const kills: Array<{ killed: boolean }> = [];
    const tap = tapPool(fnvm, async () => {}, (vm) => {
      if (kills.length === 0) kills.push(killOnLoad(vm)); // the first VM only: the redeploy's goes through
    });
    try {
      const created = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'lost-mid-deploy', runtime: 'node', code: 'exports.handler = () => "v1"' } });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const failed = await waitForState(fnvm, created.body.id);
      assert.ok(kills[0]?.killed, 'the deploy sent its load, and the VM was killed then');
      assert.equal(failed.state, 'error', 'a deploy whose VM died ends in error');
      assert.match(failed.error ?? '', /^deployment failed: VM \S+ stopped while the code loaded: .*QEMU exited \(signal SIGKILL\)/, 'the reason names the lost VM');
      assert.equal(failed.vm_id, null, 'the store names no VM');
      const [killed] = tap.taken;
      assert.ok(killed, 'the deploy took its VM from the pool');
      await until('the killed VM to be cleaned up', () => gone(killed), 10_000);
      assert.ok(killed.pid && !processExists(killed.pid), 'its QEMU process is gone');
      assert.equal(tap.taken.length, 1, 'a failed deploy starts no other VM');
      const invoked = await invoke(fnvm, 'lost-mid-deploy');
      assert.equal(invoked.status, 409, JSON.stringify(invoked.body));

      const redeployed = await fnvm.api('/v1/functions/lost-mid-deploy', { method: 'PUT', body: { code: 'exports.handler = () => "v2"' } });
      assert.equal(redeployed.status, 200, JSON.stringify(redeployed.body));
      const item = await waitForState(fnvm, created.body.id);
      assert.equal(item.state, 'ready', item.error);
      assert.equal(item.error, null);
      const result = await invoke(fnvm, 'lost-mid-deploy');
      assert.equal(result.body.response, 'v2', JSON.stringify(result.body));
      assert.equal(result.body.version, 2);
      assert.equal(tap.taken.length, 2, 'one VM for the failed deploy, one for the redeploy');
      assert.equal(tap.taken[1]?.id, item.vm_id, 'the store names the redeploy\'s VM');
    } finally {
      tap.restore();
    }
  });

  test('reload: the VM is killed while the new code loads; the PUT fails, a replacement serves the old version', async () => {
    const tap = tapPool(fnvm, async () => {});
    try {
      const fn = await deploy(fnvm, { name: 'lost-mid-reload', runtime: 'node', code: 'exports.handler = () => "v1"' });
      const old = tap.taken.find((vm) => vm.id === fn.vm_id);
      assert.ok(old, 'the deploy took its VM from the pool');
      const kill = killOnLoad(old);
      const put = await fnvm.api('/v1/functions/lost-mid-reload', { method: 'PUT', body: { code: 'exports.handler = () => "v2"' } });
      assert.ok(kill.killed, 'the reload sent its load, and the VM was killed then');
      assert.equal(put.status, 503, JSON.stringify(put.body));
      assert.match(put.body.error, /^could not apply the update: VM \S+ stopped while the code loaded: .*QEMU exited \(signal SIGKILL\)/, 'the answer names the lost VM');
      const stored = (await fnvm.api(`/v1/functions/${fn.id}`)).body.item;
      assert.equal(stored.version, 1, 'the update was not stored');
      assert.match(stored.code, /"v1"/);
      await until('a replacement VM', async () => {
        const item = (await fnvm.api(`/v1/functions/${fn.id}`)).body.item;
        return item.vm_id !== null && item.vm_id !== old.id;
      });
      const result = await invoke(fnvm, 'lost-mid-reload');
      assert.equal(result.body.response, 'v1', JSON.stringify(result.body));
      assert.equal(result.body.version, 1);
      const item = (await fnvm.api(`/v1/functions/${fn.id}`)).body.item;
      assert.equal(item.state, 'ready');
      assert.equal(item.version, 1);
      const serving = tap.taken.find((vm) => vm.id === item.vm_id);
      assert.ok(serving && serving.state === 'running', 'the store names a running VM taken from the pool');
      await until('every other VM to stop', () => tap.taken.every((vm) => vm === serving || gone(vm)), 10_000);
      assert.ok(old.pid && !processExists(old.pid), 'the killed QEMU process is gone');
    } finally {
      tap.restore();
    }
  });

  test('recycle: the replacement cannot be had at first; retried, `error` says why meanwhile, then cleared', async () => {
    const tap = refusingPool(fnvm);
    try {
      const fn = await deploy(fnvm, { name: 'hard-to-replace', runtime: 'node', code: 'exports.handler = (e) => { if (e.die) process.exit(3); return "alive"; }' });
      tap.refuse = 2;
      const watch = watchError(fnvm, fn.id);
      await invoke(fnvm, 'hard-to-replace', { die: true });
      const next = await invoke(fnvm, 'hard-to-replace');
      assert.equal(next.body.response, 'alive', JSON.stringify(next.body));
      assert.ok(await watch.stop(), '`error` said why while it retried');
      const item = (await fnvm.api(`/v1/functions/${fn.id}`)).body.item;
      assert.equal(item.state, 'ready');
      assert.equal(item.error, null);
    } finally {
      tap.restore();
    }
  });

  test('wake: the pool fails twice; the invocation waits through the retries and succeeds', async () => {
    const idle = await startTestServer({ idleSeconds: 1 });
    const tap = refusingPool(idle);
    try {
      const fn = await deploy(idle, { name: 'hard-to-wake', runtime: 'node', code: 'exports.handler = () => "awake"' });
      await until('sleep', async () => (await idle.api(`/v1/functions/${fn.id}`)).body.item.vm_id === null);
      tap.refuse = 2;
      const watch = watchError(idle, fn.id);
      const result = await invoke(idle, 'hard-to-wake');
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.equal(result.body.response, 'awake');
      assert.equal(result.body.cold_start, true);
      assert.ok(await watch.stop(), '`error` said why while it retried');
    } finally {
      tap.restore();
      await idle.stop();
    }
  });
});
