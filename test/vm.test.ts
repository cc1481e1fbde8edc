// The microVM layer for real: TCG/KVM guests, both agents, snapshot/restore, failure detection.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GuestRequestError } from '../src/guest/channel.js';
import type { InvokeResult } from '../src/guest/protocol.js';
import { bootsUnder } from '../src/vm/accel.js';
import type { Snapshot, Vm } from '../src/vm/driver.js';
import { VmPool } from '../src/vm/pool.js';
import { liveProcessCount, livePids } from '../src/vm/processes.js';
import { VmSpecError, type VmSpec } from '../src/vm/spec.js';
import { processExists, testDriver, testImages, type TestDriver } from './support/vm-env.js';

const nodeSpec: VmSpec = { runtime: 'node', vcpu: 1, memoryMb: 256, network: 'none' };
const pythonSpec: VmSpec = { runtime: 'python', vcpu: 1, memoryMb: 256, network: 'none' };

let env: TestDriver;
const started: number[] = [];
const vms: Vm[] = [];

async function boot(spec: VmSpec): Promise<Vm> {
  const vm = await env.driver.boot(spec);
  vms.push(vm);
  if (vm.pid) started.push(vm.pid);
  return vm;
}

async function restore(snapshot: Snapshot): Promise<Vm> {
  const vm = await env.driver.restore(snapshot);
  vms.push(vm);
  if (vm.pid) started.push(vm.pid);
  return vm;
}

function invoke(vm: Vm, event: unknown, requestId = 'r'): Promise<InvokeResult> {
  return vm.channel.request('invoke', { request_id: requestId, event, timeout_ms: 30_000 });
}

before(async () => {
  env = await testDriver();
});

after(async () => {
  await Promise.all(vms.map((vm) => vm.stop()));
  env.cleanup();
  assert.equal(liveProcessCount(), 0, 'every QEMU process was reaped');
  for (const pid of started) assert.equal(processExists(pid), false, `QEMU ${pid} is gone`);
});

test('the driver reports the accelerator it chose and why', () => {
  assert.ok(['kvm', 'tcg'].includes(env.driver.accel));
  assert.ok(env.driver.accelReason.length > 0);
});

test('the accelerator probe recognises a guest that boots (under TCG)', async () => {
  const images = await testImages();
  assert.equal(await bootsUnder('tcg', images, 60_000), true);
});

test('specs outside the limits are refused before QEMU starts', async () => {
  await assert.rejects(env.driver.boot({ ...nodeSpec, vcpu: 9 }), VmSpecError);
  await assert.rejects(env.driver.boot({ ...nodeSpec, memoryMb: 64 }), VmSpecError);
});

describe('node guest', () => {
  let vm: Vm;
  before(async () => {
    vm = await boot(nodeSpec);
  });

  test('answers ping with its runtime and version', async () => {
    const pong = await vm.channel.request('ping', {});
    assert.equal(pong.runtime, 'node');
    assert.match(pong.runtime_version, /^v22\./);
  });

  test('loads the documented handler and invokes it with env vars', async () => {
    const code = 'async function handler(event) { return { message: "Hello!", input: event, env: process.env.GREETING }; }';
    await vm.channel.request('load', { code, handler: 'handler', env: { GREETING: 'hi' }, version: 1 });
    const result = await invoke(vm, { name: 'World' });
    assert.equal(result.status, 'success');
    assert.deepEqual(result.response, { message: 'Hello!', input: { name: 'World' }, env: 'hi' });
  });

  test('50 overlapping invocations each get their own logs', async () => {
    const code = `exports.handler = async (e) => {
      for (let i = 0; i < 3; i++) { console.log('inv', e.n, i); await new Promise((r) => setTimeout(r, 5 + (e.n % 7))); }
      return e.n * 2; };`;
    await vm.channel.request('load', { code, handler: 'handler', env: {}, version: 2 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, n) => invoke(vm, { n }, `r${n}`)));
    results.forEach((result, n) => {
      assert.equal(result.status, 'success');
      assert.equal(result.response, n * 2);
      assert.deepEqual(result.logs, [`inv ${n} 0`, `inv ${n} 1`, `inv ${n} 2`]);
    });
  });

  test('reload swaps code; a syntax error keeps the old code serving', async () => {
    await vm.channel.request('load', { code: 'exports.handler = () => "v3"', handler: 'handler', env: {}, version: 3 });
    assert.equal((await invoke(vm, {})).response, 'v3');
    await assert.rejects(
      vm.channel.request('load', { code: 'exports.handler = () => {', handler: 'handler', env: {}, version: 4 }),
      (error: unknown) => error instanceof GuestRequestError && error.info.type === 'SyntaxError',
    );
    const still = await invoke(vm, {});
    assert.equal(still.response, 'v3');
    assert.equal(still.version, 3);
  });

  test('a throwing handler and a non-serialisable result are errors, not crashes', async () => {
    const code = 'exports.handler = (e) => { if (e.boom) throw new TypeError("bad input"); return { big: 1n }; }';
    await vm.channel.request('load', { code, handler: 'handler', env: {}, version: 5 });
    const thrown = await invoke(vm, { boom: true });
    assert.equal(thrown.status, 'error');
    assert.equal(thrown.error?.type, 'TypeError');
    assert.equal(thrown.error?.message, 'bad input');
    assert.match(thrown.error?.stack ?? '', /bad input/);
    const unserialisable = await invoke(vm, {});
    assert.equal(unserialisable.status, 'error');
    assert.equal(unserialisable.error?.type, 'SerializationError');
    assert.equal((await vm.channel.request('ping', {})).runtime, 'node');
  });

  test('a 5 MB event crosses the channel both ways intact', async () => {
    await vm.channel.request('load', { code: 'exports.handler = (e) => e', handler: 'handler', env: {}, version: 6 });
    const big = { blob: 'x'.repeat(5 * 1024 * 1024 - 100) + 'é✓' };
    const result = await invoke(vm, big);
    assert.equal(result.status, 'success');
    assert.deepEqual(result.response, big);
  });

  describe('snapshot and restore', () => {
    let snapshot: Snapshot;
    let restored: Vm;

    test('a snapshot of a loaded VM restores into a new process that still runs the code', async () => {
      await vm.channel.request('load', { code: 'let n = 0; exports.handler = () => ++n;', handler: 'handler', env: {}, version: 7 });
      assert.equal((await invoke(vm, {})).response, 1);
      snapshot = await vm.snapshot(join(env.runRoot, 'node.vmstate'));
      assert.ok(snapshot.bytes > 1_000_000);
      assert.equal(vm.state, 'paused');
      await vm.resume();
      assert.equal((await invoke(vm, {})).response, 2);

      restored = await restore(snapshot);
      assert.notEqual(restored.pid, vm.pid);
      const result = await invoke(restored, {});
      assert.equal(result.response, 2, 'the restored VM continues from the snapshot state');
      assert.equal(result.version, 7);
    });

    test('kill -9 of QEMU is detected and in-flight requests fail', async () => {
      const victim = await restore(snapshot);
      await victim.channel.request('load', {
        code: 'exports.handler = () => new Promise(() => {})', handler: 'handler', env: {}, version: 8,
      });
      const failure = new Promise<string>((resolve) => victim.onFailure(resolve));
      const inflight = assert.rejects(invoke(victim, {}));
      process.kill(victim.pid!, 'SIGKILL');
      assert.match(await failure, /QEMU exited \(signal SIGKILL\)/);
      await inflight;
      assert.equal(victim.state, 'failed');
      // Failed is final: nothing brings it back, and stopping it cleans up without hiding the failure.
      await assert.rejects(victim.resume(), /cannot resume a VM that is failed/);
      await assert.rejects(victim.snapshot(join(env.runRoot, 'never')), /cannot snapshot a VM that is failed/);
      await victim.stop();
      assert.equal(victim.state, 'failed');
    });

    test('a guest that stops answering is detected by the watchdog', async () => {
      const victim = await restore(snapshot);
      const failure = new Promise<string>((resolve) => victim.onFailure(resolve));
      victim.startWatchdog(200, 1000);
      process.kill(victim.pid!, 'SIGSTOP'); // frozen QEMU: alive but silent
      assert.match(await failure, /stopped answering/);
      await victim.stop();
      assert.equal(processExists(victim.pid!), false);
    });
  });
});

describe('python guest', () => {
  let vm: Vm;
  before(async () => {
    vm = await boot(pythonSpec);
  });

  test('runs the documented Python example verbatim', async () => {
    const pong = await vm.channel.request('ping', {});
    assert.equal(pong.runtime, 'python');
    assert.match(pong.runtime_version, /^3\.11\./);
    const code = [
      'def handler(event):',
      '    # Access event data',
      "    name = event.get('name')",
      "    value = event.get('value')",
      '',
      '    # Return response (must be dict)',
      '    return {',
      "        'message': f'Hello, {name}!',",
      "        'value': value * 2,",
      "        'timestamp': str(datetime.now())",
      '    }',
    ].join('\n');
    await vm.channel.request('load', { code, handler: 'handler', env: {}, version: 1 });
    const result = await invoke(vm, { name: 'World', value: 21 });
    assert.equal(result.status, 'success');
    const response = result.response as Record<string, unknown>;
    assert.equal(response.message, 'Hello, World!');
    assert.equal(response.value, 42);
    assert.match(String(response.timestamp), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
  });

  test('50 overlapping async invocations each get their own logs; env reaches os.environ', async () => {
    const code = [
      'import asyncio, os',
      'async def handler(event):',
      '    for i in range(3):',
      "        print('inv', event['n'], i)",
      "        await asyncio.sleep(0.005 + (event['n'] % 7) / 1000)",
      "    return {'n': event['n'], 'env': os.environ.get('MODE')}",
    ].join('\n');
    await vm.channel.request('load', { code, handler: 'handler', env: { MODE: 'test' }, version: 2 });
    const results = await Promise.all(Array.from({ length: 50 }, (_, n) => invoke(vm, { n }, `p${n}`)));
    results.forEach((result, n) => {
      assert.equal(result.status, 'success');
      assert.deepEqual(result.response, { n, env: 'test' });
      assert.deepEqual(result.logs, [`inv ${n} 0`, `inv ${n} 1`, `inv ${n} 2`]);
    });
  });

  test('syntax errors keep the old code; exceptions and unserialisable results are errors', async () => {
    await assert.rejects(
      vm.channel.request('load', { code: 'def handler(event)\n  return 1', handler: 'handler', env: {}, version: 3 }),
      (error: unknown) => error instanceof GuestRequestError && error.info.type === 'SyntaxError',
    );
    assert.equal((await invoke(vm, { n: 1 })).version, 2);
    const code = "def handler(event):\n    if event.get('boom'):\n        raise ValueError('nope')\n    return {1, 2}";
    await vm.channel.request('load', { code, handler: 'handler', env: {}, version: 4 });
    const raised = await invoke(vm, { boom: true });
    assert.equal(raised.status, 'error');
    assert.equal(raised.error?.type, 'ValueError');
    assert.match(raised.error?.stack ?? '', /Traceback/);
    assert.equal((await invoke(vm, {})).error?.type, 'SerializationError');
  });
});

test('outbound networking reaches a server the host offers (loopback via the user-mode gateway)', async () => {
  const server = createServer((req, res) => res.end(JSON.stringify({ path: req.url })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const vm = await boot({ ...nodeSpec, network: 'outbound' });
    const code = 'exports.handler = async (e) => (await fetch(e.url)).json()';
    await vm.channel.request('load', { code, handler: 'handler', env: {}, version: 1 });
    const result = await invoke(vm, { url: `http://10.0.2.2:${port}/hello` });
    assert.equal(result.status, 'success', JSON.stringify(result.error));
    assert.deepEqual(result.response, { path: '/hello' });
  } finally {
    server.close();
  }
});

/** The niceness of every thread of a process (field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
  });
}

test('warm pool VMs wait at a lower CPU priority and serve at the normal one', async (t) => {
  if (process.getuid?.() !== 0) assert.fail('this test needs root: only root may give a thread its normal priority back');
  const pool = new VmPool(env.driver, { snapshotDir: join(env.runRoot, 'pool-snapshots'), warm: [{ spec: nodeSpec, size: 1 }] });
  t.after(() => pool.close());
  pool.start();
  await pool.settled();
  const { vm, source } = await pool.take(nodeSpec);
  vms.push(vm);
  assert.equal(source, 'warm');
  assert.ok(vm.pid);
  assert.deepEqual([...new Set(threadNiceness(vm.pid))], [0], 'every thread of the VM handed out runs at niceness 0');
  await pool.settled(); // the refill that take() started
  const waiting = Object.values(pool.sizes()).reduce((a, b) => a + b, 0);
  assert.equal(waiting, 1);
  const others = livePids().filter((pid) => pid !== vm.pid && !vms.some((v) => v.pid === pid));
  assert.equal(others.length, 1, 'the refilled VM');
  const niceness = threadNiceness(others[0]!);
  assert.ok(niceness.length > 1 && niceness.every((n) => n === 10), `the waiting VM's threads run at niceness 10: ${niceness.join(',')}`);
});
