// SnapStart and the live VM cap, on real VMs: a function whose top-level code is slow wakes from a snapshot
// of its initialised VM (its init does not run again, its clock and randomness are its own), across a
// server restart too; snapshots stay within their disk budget; the least recently used function sleeps
// when the cap on live VMs is reached, and wakes on its next invocation.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Snapshot, Vm } from '../src/vm/driver.js';
import { FunctionSnapshots } from '../src/vm/function-snapshots.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { deployReady, startTestServer, type TestServer } from './support/server.js';

after(() => {
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the servers');
});

const deploy = deployReady;

async function invoke(server: TestServer, name: string): Promise<any> {
  const { status, body } = await server.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event: {} } });
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.status, 'success', JSON.stringify(body));
  return body;
}

const item = async (server: TestServer, name: string) => (await server.api(`/v1/functions/${name}`)).body.item;

async function until(what: string, condition: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const asleep = (server: TestServer, name: string) => until(`${name} to sleep`, async () => (await item(server, name)).vm_id === null);

/** Top-level code that takes `ms` and stamps when it ran; the handler shows the stamp, the time and a random draw. */
const slowInit = (ms: number, tag = 'v1') => `
const crypto = require('node:crypto');
const initAt = Date.now();
const until = Date.now() + ${ms};
while (Date.now() < until);
exports.handler = () => ({ tag: '${tag}', initAt, now: Date.now(), random: crypto.randomBytes(16).toString('hex') });`;

describe('SnapStart', () => {
  test('a slow-to-initialise function wakes from its snapshot: init not re-run, own clock and randomness, also after a restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-snap-'));
    let server = await startTestServer({ dataDir, idleSeconds: 1 });
    try {
      const fn = await deploy(server, { name: 'slow-init', runtime: 'node', code: slowInit(2500) });
      assert.ok(fn.init_ms >= 2500, `init_ms ${fn.init_ms} counts the top-level code`);
      const { snapstart_min_init_ms: threshold } = (await server.api('/v1/health')).body;
      assert.ok(threshold !== null && threshold < 2500, `a 2.5 s init is worth a snapshot here (threshold ${threshold} ms)`);
      assert.ok(fn.snapshot_bytes > 1_000_000, `a snapshot was kept (${fn.snapshot_bytes} bytes)`);
      const files = readdirSync(join(dataDir, 'snapshots'));
      assert.ok(files.some((f) => f.startsWith(fn.id) && f.endsWith('.vmstate')), `the snapshot is on disk: ${files.join(', ')}`);

      const first = await invoke(server, 'slow-init');
      const draws = [first.response.random];
      for (let wake = 0; wake < 2; wake++) {
        await asleep(server, 'slow-init');
        const before = Date.now();
        const woken = await invoke(server, 'slow-init');
        const after = Date.now();
        assert.equal(woken.cold_start, true);
        assert.equal(woken.response.initAt, first.response.initAt, 'the top-level code did not run again');
        assert.ok(woken.response.now >= before - 50 && woken.response.now <= after + 50, `guest time ${woken.response.now} within [${before}, ${after}]`);
        assert.ok(!draws.includes(woken.response.random), 'a snapshot restored twice does not repeat random draws');
        draws.push(woken.response.random);
      }

      // A restart keeps the sleeping function asleep; its next invocation restores the same snapshot.
      await asleep(server, 'slow-init');
      await server.stop({ keepData: true });
      server = await startTestServer({ dataDir, idleSeconds: 1 });
      const restarted = await item(server, 'slow-init');
      assert.equal(restarted.state, 'ready');
      assert.equal(restarted.vm_id, null, 'asleep after the restart, not redeployed');
      assert.equal(restarted.snapshot_bytes, fn.snapshot_bytes);
      const afterRestart = await invoke(server, 'slow-init');
      assert.equal(afterRestart.cold_start, true);
      assert.equal(afterRestart.response.initAt, first.response.initAt, 'woken from the snapshot, not a cold boot');
      assert.ok(!draws.includes(afterRestart.response.random));

      // New code: the old snapshot goes at once; the new version initialises and is snapshotted on its next start.
      const updated = await server.api('/v1/functions/slow-init', { method: 'PUT', body: { code: slowInit(2500, 'v2') } });
      assert.equal(updated.status, 200, JSON.stringify(updated.body));
      assert.equal(updated.body.item.snapshot_bytes, null);
      assert.ok(!readdirSync(join(dataDir, 'snapshots')).some((f) => f.endsWith('.vmstate')), 'the stale snapshot is deleted');
      const v2 = await invoke(server, 'slow-init');
      assert.equal(v2.response.tag, 'v2');
      await asleep(server, 'slow-init');
      const v2Woken = await invoke(server, 'slow-init');
      assert.notEqual(v2Woken.response.initAt, first.response.initAt, 'v2 initialised for itself');
      assert.ok((await item(server, 'slow-init')).snapshot_bytes > 1_000_000, 'v2 was snapshotted when it initialised');
      await asleep(server, 'slow-init');
      assert.equal((await invoke(server, 'slow-init')).response.initAt, v2Woken.response.initAt, 'v2 wakes from its snapshot');

      const deleted = await server.api('/v1/functions/slow-init', { method: 'DELETE' });
      assert.equal(deleted.status, 200);
      assert.deepEqual(readdirSync(join(dataDir, 'snapshots')), [], 'deleting the function deletes its snapshot');
    } finally {
      await server.stop();
    }
  });

  test('a fast function keeps no snapshot; a snapshot over the disk budget is not kept and the function still wakes', async () => {
    const server = await startTestServer({ idleSeconds: 1, snapshotDiskMb: 1 });
    try {
      const fast = await deploy(server, { name: 'fast-init', runtime: 'node', code: 'exports.handler = () => "fast"' });
      assert.equal(fast.snapshot_bytes, null, 'initialising is faster than a restore: no snapshot');
      const slow = await deploy(server, { name: 'over-budget', runtime: 'node', code: slowInit(2500) });
      const { snapstart_min_init_ms: threshold } = (await server.api('/v1/health')).body;
      assert.ok(threshold !== null && slow.init_ms > threshold, `the init (${slow.init_ms} ms) is worth a snapshot (threshold ${threshold} ms)`);
      assert.equal(slow.snapshot_bytes, null, 'but a snapshot larger than 1 MiB is not kept');
      const first = await invoke(server, 'over-budget');
      await asleep(server, 'over-budget');
      const woken = await invoke(server, 'over-budget');
      assert.equal(woken.cold_start, true);
      assert.notEqual(woken.response.initAt, first.response.initAt, 'without a snapshot the code initialises again');
      assert.equal((await server.api('/v1/health')).body.snapshot_bytes, 0);
    } finally {
      await server.stop();
    }
  });
});

describe('the cap on live VMs', () => {
  test('beyond FNVM_MAX_LIVE_VMS the least recently used idle function sleeps, and wakes when invoked', async () => {
    const server = await startTestServer({ idleSeconds: 0, maxLiveVms: 2 });
    try {
      const live = async () => (await server.api('/v1/functions')).body.items.filter((f: any) => f.vm_id !== null).map((f: any) => f.name).sort();
      for (const name of ['cap-a', 'cap-b']) await deploy(server, { name, runtime: 'node', code: `exports.handler = () => "${name}"` });
      await invoke(server, 'cap-a'); // cap-b is now the least recently used
      await deploy(server, { name: 'cap-c', runtime: 'node', code: 'exports.handler = () => "cap-c"' });
      assert.deepEqual(await live(), ['cap-a', 'cap-c']);
      assert.equal((await server.api('/v1/health')).body.live_vms, 2);
      const woken = await invoke(server, 'cap-b');
      assert.equal(woken.response, 'cap-b');
      assert.equal(woken.cold_start, true);
      assert.deepEqual(await live(), ['cap-b', 'cap-c'], 'waking cap-b made cap-a (least recently used) sleep');
      const again = await invoke(server, 'cap-a');
      assert.equal(again.cold_start, true);
      assert.equal(again.response, 'cap-a');
      assert.equal((await item(server, 'cap-a')).state, 'ready');
    } finally {
      await server.stop();
    }
  });
});

describe('snapshot bookkeeping', () => {
  /** A VM whose snapshot is a file of `bytes` bytes (with `taskImage` on its task disk). */
  function fakeVm(bytes: number, taskImage: string | null = null): Vm {
    let state: Vm['state'] = 'running';
    const vm: Partial<Vm> = {
      get state() {
        return state;
      },
      async snapshot(path: string): Promise<Snapshot> {
        writeFileSync(path, Buffer.alloc(bytes, 1));
        state = 'paused';
        const spec = { runtime: 'node', vcpu: 1, memoryMb: 256, network: 'none' } as const;
        return { path, ramPath: null, spec, accel: 'tcg', boot: { kernel: 'k', initramfs: 'i', rootfs: 'r' }, cmdline: 'c', bytes, taskImage };
      },
      async resume() {
        state = 'running';
      },
    };
    return vm as Vm;
  }

  test('over budget, the least recently used snapshot is evicted; entries survive a reopen; stale ones are dropped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fnvm-snapbook-'));
    const options = {
      dir,
      driver: { accel: 'tcg' as const, kernelCmdline: () => 'c', restore: async () => fakeVm(0) },
      boot: { kernel: 'k', initramfs: 'i', rootfs: 'r' },
      budgetBytes: 2500,
      baseRestoreMs: () => 100,
      log: () => {},
    };
    try {
      const snapshots = await FunctionSnapshots.open(options);
      assert.equal(snapshots.minInitMs(), 187.5, 'a base restore of 100 ms: a function restore is 150, and init must be 1.25x that');
      assert.equal(snapshots.beats(180), false);
      assert.equal(snapshots.beats(200), true);
      const a = await snapshots.capture('a', 'v1', fakeVm(1000), 500);
      await snapshots.capture('b', 'v1', fakeVm(1000), 500);
      assert.ok(a);
      await snapshots.restore(a); // a is now more recently used than b
      await snapshots.capture('c', 'v1', fakeVm(1000), 500);
      assert.equal(snapshots.find('b', 'v1'), null, 'b, the least recently used, was evicted');
      assert.ok(snapshots.find('a', 'v1') && snapshots.find('c', 'v1'));
      assert.equal(snapshots.find('a', 'v2'), null, 'a snapshot serves only its deployment');
      assert.equal(snapshots.totalBytes, 2000);
      assert.equal(await snapshots.capture('d', 'v1', fakeVm(3000), 500), null, 'larger than the budget: not kept');
      assert.equal(readdirSync(dir).filter((f) => f.endsWith('.vmstate')).length, 2);

      const reopened = await FunctionSnapshots.open(options);
      assert.equal(reopened.bytes('a'), 1000);
      assert.equal(reopened.bytes('c'), 1000);
      // A packaged function's snapshot lives as long as its package image does.
      const image = join(tmpdir(), `fnvm-snapbook-package-${process.pid}.img`); // the package store's, not in the snapshot dir
      writeFileSync(image, 'image');
      await snapshots.capture('p', 'v1', fakeVm(100, image), 500);
      assert.equal((await FunctionSnapshots.open(options)).find('p', 'v1')?.snapshot.taskImage, image, 'the image survives a reopen');
      rmSync(image);
      const imageGone = await FunctionSnapshots.open(options);
      assert.equal(imageGone.find('p', 'v1'), null, 'a snapshot whose package image is gone is stale');
      assert.equal(imageGone.bytes('a'), 1000, 'the others stay');
      const otherKernel = await FunctionSnapshots.open({ ...options, driver: { ...options.driver, kernelCmdline: () => 'changed' } });
      assert.equal(otherKernel.totalBytes, 0, 'snapshots of another kernel command line are dropped');
      assert.deepEqual(readdirSync(dir), [], 'and their files deleted');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      assert.ok(!existsSync(dir));
    }
  });
});
