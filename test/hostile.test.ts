// Hostile guests, provoked for real: user code (root in the guest, inside the agent's process) writes
// garbage, forged or duplicate replies, wrong types and oversized frames to the agent's channel, floods its
// console, and returns responses over 6 MiB. The server survives, other functions keep answering, the
// invocation gets a clear error and the hostile function's VM is replaced.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { consoleRingBytes } from '../src/vm/console-ring.js';
import { runDirFor } from '../src/vm/orphans.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

let fnvm: TestServer;

before(async () => {
  fnvm = await startTestServer();
});

after(async () => {
  await fnvm?.stop();
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
});

async function deploy(body: Record<string, unknown>): Promise<any> {
  const created = await fnvm.api('/v1/functions', { method: 'POST', body });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const item = await waitForState(fnvm, created.body.id);
  assert.equal(item.state, 'ready', item.error);
  return item;
}

const invoke = (name: string, event: unknown = {}) => fnvm.api(`/v1/functions/${name}/invoke`, { method: 'POST', body: { event } });

async function assertServerAlive(): Promise<void> {
  const health = await fnvm.api('/v1/health');
  assert.equal(health.status, 200);
}

// Each attack finds the agent's virtio-serial port among its own open fds, as any user code could.
const nodeAttacker = `
const fs = require('fs');
function portFd() {
  for (const name of fs.readdirSync('/proc/self/fd')) {
    try { if (fs.readlinkSync('/proc/self/fd/' + name).startsWith('/dev/vport')) return Number(name); } catch {}
  }
  throw new Error('no virtio port among my fds');
}
function frame(text) {
  const body = Buffer.from(text);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}
const attacks = {
  garbage: () => frame('\\u0000\\u00ff this is not JSON'),
  forged: () => frame(JSON.stringify({ id: 987654321, ok: true, result: {} })),
  // id 1 is the readiness ping, answered long ago.
  duplicate: () => frame(JSON.stringify({ id: 1, ok: true, result: { runtime: 'node', runtime_version: 'v22', agent_version: 1, loaded_version: null } })),
  oversize: () => { const head = Buffer.alloc(4); head.writeUInt32BE(17 * 1024 * 1024); return head; },
};
// Rewrites the agent's own next reply (to the pending invoke id) with a status of the wrong type.
function forgeNextReply() {
  const original = fs.write;
  fs.write = function (fd, buffer, offset, length, position, done) {
    fs.write = original;
    const reply = JSON.parse(buffer.subarray(offset + 4, offset + length).toString());
    reply.result.status = 7;
    const forged = frame(JSON.stringify(reply));
    return original.call(fs, fd, forged, 0, forged.length, null, (error) => done(error, length));
  };
}
exports.handler = (event) => {
  if (event.attack === 'wrongtype') forgeNextReply();
  else if (event.attack) fs.writeSync(portFd(), attacks[event.attack]());
  return 'fine';
};`;

const pythonAttacker = `
import json, os

def port_fd():
    for name in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + name).startswith('/dev/vport'):
                return int(name)
        except OSError:
            pass
    raise RuntimeError('no virtio port among my fds')

def frame(text):
    body = text.encode()
    return len(body).to_bytes(4, 'big') + body

def forge_next_reply():
    original = os.write
    def write(fd, data):
        os.write = original
        reply = json.loads(bytes(data)[4:])
        reply['result']['status'] = 7
        original(fd, frame(json.dumps(reply)))
        return len(data)
    os.write = write

def handler(event):
    attack = event.get('attack')
    if attack == 'wrongtype':
        forge_next_reply()
    elif attack == 'garbage':
        os.write(port_fd(), frame('\\x00 this is not JSON'))
    elif attack == 'forged':
        os.write(port_fd(), frame(json.dumps({'id': 987654321, 'ok': True, 'result': {}})))
    elif attack == 'oversize':
        os.write(port_fd(), (17 * 1024 * 1024).to_bytes(4, 'big'))
    return 'fine'
`;

const attacks = {
  node: ['garbage', 'forged', 'duplicate', 'wrongtype', 'oversize'],
  python: ['garbage', 'forged', 'wrongtype', 'oversize'],
} as const;

describe('hostile writes to the agent channel', () => {
  before(async () => {
    await deploy({ name: 'bystander', runtime: 'node', code: identity.node });
  });

  for (const runtime of ['node', 'python'] as const) {
    test(`${runtime}: ${attacks[runtime].join(', ')} each end as ProtocolError, the VM is replaced, others keep answering`, async () => {
      const name = `attacker-${runtime}`;
      let item = await deploy({ name, runtime, code: runtime === 'node' ? nodeAttacker : pythonAttacker, timeout_seconds: 30 });
      assert.equal((await invoke(name)).body.response, 'fine', 'the function works before any attack');
      for (const attack of attacks[runtime]) {
        const [attacked, bystander] = await Promise.all([invoke(name, { attack }), invoke('bystander', { during: attack })]);
        assert.equal(attacked.status, 200, `${attack}: ${JSON.stringify(attacked.body)}`);
        assert.equal(attacked.body.status, 'error', `${attack}: ${JSON.stringify(attacked.body)}`);
        assert.equal(attacked.body.error.type, 'ProtocolError', `${attack}: ${JSON.stringify(attacked.body.error)}`);
        assert.match(attacked.body.error.message, /broke the guest protocol/);
        assert.deepEqual(bystander.body.response, { during: attack });
        const next = await invoke(name);
        assert.equal(next.body.status, 'success', `${attack}: next ${JSON.stringify(next.body)}`);
        assert.equal(next.body.response, 'fine');
        const now = (await fnvm.api(`/v1/functions/${name}`)).body.item;
        assert.notEqual(now.vm_id, item.vm_id, `${attack}: the VM was replaced`);
        assert.equal(now.state, 'ready');
        item = now;
        const history = (await fnvm.api(`/v1/functions/${name}/logs?limit=2`)).body.items;
        assert.equal(history[1].request_id, attacked.body.request_id);
        assert.equal(history[1].error.type, 'ProtocolError');
        await assertServerAlive();
      }
    });
  }
});

/** Bytes on disk under the server's run directory, without guest RAM files (sparse, and not a log). */
function runDirBytes(): number {
  const walk = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((sum, entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return sum + walk(path);
      if (!entry.isFile() || entry.name === 'ram') return sum;
      return sum + statSync(path).blocks * 512;
    }, 0);
  return walk(runDirFor(tmpdir()));
}

const identity = { node: 'exports.handler = (e) => e', python: 'def handler(event):\n    return event' } as const;

describe('console flood outside an invocation', () => {
  // The guest's UART drains at about 50 KB/s under TCG, so it never gets near 1 GB in a test: flood until
  // well past the ring's size (so the ring must have wrapped), within a bound.
  const target = Math.round(1.25 * consoleRingBytes);
  const boundMs = 120_000;
  const floods = {
    node: `
const fs = require('fs');
let written = 0, stop = false;
const chunk = Buffer.alloc(64 * 1024, 'F\\n');
function step() {
  if (stop || written >= 1e9) return;
  written += fs.writeSync(written % 2 ? 1 : 2, chunk);
  setImmediate(step);
}
exports.handler = (event) => {
  if (event.start) setImmediate(step);
  if (event.stop) stop = true;
  return written;
};`,
    python: `
import os, threading
state = {'written': 0, 'stop': False}
chunk = b'F\\n' * 32768

def flood():
    while not state['stop'] and state['written'] < 10**9:
        state['written'] += os.write(2, chunk)

def handler(event):
    if event.get('start'):
        threading.Thread(target=flood, daemon=True).start()
    if event.get('stop'):
        state['stop'] = True
    return state['written']
`,
  } as const;

  for (const runtime of ['node', 'python'] as const) {
    test(`${runtime}: a guest writing up to 1 GB to its console costs the host about 1 MiB and stalls nothing`, async () => {
      const name = `flood-${runtime}`;
      await deploy({ name, runtime, code: floods[runtime], timeout_seconds: 60 });
      const other = runtime === 'node' ? 'python' : 'node';
      await deploy({ name: `calm-${runtime}`, runtime: other, code: identity[other] });
      assert.equal((await invoke(name, { start: true })).body.status, 'success');
      const started = Date.now();
      let answered = 0;
      let written = 0;
      while (written < target) {
        assert.ok(Date.now() - started < boundMs, `the guest wrote only ${written} bytes in ${boundMs} ms`);
        const callStarted = Date.now();
        const calm = await invoke(`calm-${runtime}`, { n: answered });
        const took = Date.now() - callStarted;
        assert.deepEqual(calm.body.response, { n: answered });
        assert.ok(took < 10_000, `another function answered in ${took} ms during the flood`);
        await assertServerAlive();
        const onDisk = runDirBytes();
        assert.ok(onDisk < consoleRingBytes + 512 * 1024, `${onDisk} bytes on disk under the run directory`);
        answered++;
        const progress = await invoke(name);
        assert.equal(progress.body.status, 'success', `the flooding function itself still answers: ${JSON.stringify(progress.body)}`);
        written = progress.body.response;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      const stopped = await invoke(name, { stop: true });
      assert.equal(stopped.body.status, 'success', JSON.stringify(stopped.body));
      const seconds = (Date.now() - started) / 1000;
      process.stderr.write(`[hostile] ${runtime} guest wrote ${(stopped.body.response / 2 ** 20).toFixed(2)} MiB to its console in ${seconds.toFixed(1)} s\n`);
      assert.ok(answered >= 3, `only ${answered} calls to another function completed`);
      assert.ok(runDirBytes() < consoleRingBytes + 512 * 1024);
    });
  }
});

describe('responses over 6 MiB', () => {
  const big = {
    node: 'exports.handler = (event) => event.size ? "x".repeat(event.size - 2) : "small"',
    python: "def handler(event):\n    return 'x' * (event['size'] - 2) if event.get('size') else 'small'",
  } as const;
  const limit = 6 * 1024 * 1024;

  for (const runtime of ['node', 'python'] as const) {
    test(`${runtime}: a ~7 MB response is an error (ResponseTooLarge), recorded; exactly 6 MiB passes`, async () => {
      const name = `big-${runtime}`;
      await deploy({ name, runtime, code: big[runtime] });
      const tooBig = await invoke(name, { size: 7_000_000 });
      assert.equal(tooBig.status, 200, JSON.stringify(tooBig.body).slice(0, 500));
      assert.equal(tooBig.body.status, 'error');
      assert.equal(tooBig.body.response, null);
      assert.equal(tooBig.body.error.type, 'ResponseTooLarge');
      assert.match(tooBig.body.error.message, /7000000 bytes/);
      const history = (await fnvm.api(`/v1/functions/${name}/logs?limit=1`)).body.items;
      assert.equal(history[0].request_id, tooBig.body.request_id);
      assert.equal(history[0].status, 'error');
      assert.equal(history[0].error.type, 'ResponseTooLarge');
      const exact = await invoke(name, { size: limit });
      assert.equal(exact.body.status, 'success', JSON.stringify(exact.body.error));
      assert.equal(exact.body.response.length, limit - 2);
      const oneMore = await invoke(name, { size: limit + 1 });
      assert.equal(oneMore.body.error?.type, 'ResponseTooLarge');
      assert.equal((await invoke(name)).body.response, 'small');
    });
  }
});

describe('a guest that lies about durations', () => {
  test('a claimed duration of 300 years is capped at what the host waited, in the answer, the record and the stats', async () => {
    // User code shares the agent's process: it can make the agent's clock say anything.
    await deploy({ name: 'liar', runtime: 'node', code: 'exports.handler = () => { performance.now = () => 1e13; return "done"; };' });
    const started = performance.now();
    const answer = await invoke('liar');
    const waited = performance.now() - started;
    assert.equal(answer.body.response, 'done');
    assert.ok(answer.body.duration_ms >= 0 && answer.body.duration_ms <= waited, `duration_ms ${answer.body.duration_ms} <= the ${waited} ms the client waited`);
    const [record] = (await fnvm.api('/v1/functions/liar/logs?limit=1')).body.items;
    assert.equal(record.duration_ms, answer.body.duration_ms);
    const stats = (await fnvm.api('/v1/functions/liar/metrics?since=15m')).body.total;
    assert.equal(stats.invocations, 1);
    assert.ok(stats.duration_ms.max <= waited, `the stats' max ${stats.duration_ms.max} ms <= ${waited} ms`);
  });
});
