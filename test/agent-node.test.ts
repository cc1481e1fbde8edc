// Unit tests of the Node guest agent (guest/node/agent.mjs), run as a local process over stdin/stdout.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GuestRequestError, type GuestChannel } from '../src/guest/channel.js';
import { encodeFrame } from '../src/guest/framing.js';
import { startLocalAgent, type LocalAgent } from '../src/guest/local-agent.js';
import type { InvokeResult, LoadResult } from '../src/guest/protocol.js';
import { agentPaths } from '../src/paths.js';
import { checkAgentResponseLimit } from './support/response-limit.js';

const REQUEST_TIMEOUT_MS = 10_000;

/** One agent for every test of the enclosing describe (starting Node is the slow part of these tests). */
function sharedAgent(): () => LocalAgent {
  let agent: LocalAgent | undefined;
  before(() => {
    agent = startLocalAgent('node');
  });
  after(async () => {
    await agent?.stop();
  });
  return () => {
    assert.ok(agent, 'agent not started');
    return agent;
  };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

let nextVersion = 1;

function load(
  channel: GuestChannel,
  code: string,
  options: { handler?: string; env?: Record<string, string>; version?: number; seed?: string } = {},
): Promise<LoadResult> {
  const { handler = 'handler', env = {}, version = nextVersion++, seed } = options;
  const request = seed === undefined ? { code, handler, env, version } : { code, handler, env, version, seed };
  return channel.request('load', request, REQUEST_TIMEOUT_MS);
}

function invoke(channel: GuestChannel, event: unknown, requestId = 'req-1'): Promise<InvokeResult> {
  return channel.request('invoke', { request_id: requestId, event, timeout_ms: 5000 }, REQUEST_TIMEOUT_MS);
}

/** Loads `code` and returns the response of one successful invocation. */
async function loadAndCall(channel: GuestChannel, code: string, event: unknown = {}, handler = 'handler'): Promise<unknown> {
  await load(channel, code, { handler });
  const result = await invoke(channel, event);
  assert.equal(result.status, 'success', JSON.stringify(result.error));
  return result.response;
}

async function rejectsWith(promise: Promise<unknown>, type: string): Promise<GuestRequestError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GuestRequestError, `expected a GuestRequestError, got ${String(error)}`);
    assert.equal(error.info.type, type, error.info.message);
    return error;
  }
  return assert.fail(`expected the request to fail with ${type}`);
}

// Tests of one describe share an agent and run in order; each test loads the code it needs.
describe('node agent: a fresh agent', () => {
  const agent = sharedAgent();

  test('ping describes the runtime and reads its clocks', async () => {
    const sent = Date.now();
    const { time_ms, monotonic_ms, ...ping } = await agent().channel.request('ping', {}, REQUEST_TIMEOUT_MS);
    assert.deepEqual(ping, { runtime: 'node', runtime_version: process.version, agent_version: 2, loaded_version: null });
    assert.ok(time_ms >= sent && time_ms <= Date.now(), 'time_ms is the wall clock when it answered');
    assert.ok(monotonic_ms > 0 && monotonic_ms < performance.now() + 60_000, 'monotonic_ms is the agent process clock');
  });

  test('as a local process, renew and clock leave the host clock alone; bad arguments are a ProtocolError', async () => {
    const { channel } = agent();
    const yearAgo = Date.now() - 365 * 86_400_000;
    const renewed = await channel.request('renew', { seed: newSeed(), time_ms: yearAgo }, REQUEST_TIMEOUT_MS);
    assert.equal(renewed.system, false);
    assert.ok(Math.abs(renewed.time_ms - Date.now()) < 5000, 'the host clock was not set a year back');
    const stepped = await channel.request('clock', { adjust_ms: -86_400_000 }, REQUEST_TIMEOUT_MS);
    assert.equal(stepped.system, false);
    assert.ok(Math.abs(Date.now() - stepped.time_ms) < 5000);
    await rejectsWith(channel.request('renew', { seed: 'nope', time_ms: yearAgo }, REQUEST_TIMEOUT_MS), 'ProtocolError');
    await rejectsWith(channel.request('renew', { seed: newSeed(), time_ms: -1 }, REQUEST_TIMEOUT_MS), 'ProtocolError');
    await rejectsWith(channel.request('clock', { adjust_ms: Number.NaN }, REQUEST_TIMEOUT_MS), 'ProtocolError');
  });

  test('invoke before any load fails with NotLoaded', async () => {
    await rejectsWith(invoke(agent().channel, {}), 'NotLoaded');
  });

  test('an unknown request type fails with UnknownRequest', async () => {
    const { channel } = agent();
    const request = channel.request as (type: string, params: object, timeoutMs: number) => Promise<unknown>;
    await rejectsWith(request.call(channel, 'reboot', {}, REQUEST_TIMEOUT_MS), 'UnknownRequest');
  });

  test('stats before and after a load', async () => {
    const { channel } = agent();
    const initial = await channel.request('stats', {}, REQUEST_TIMEOUT_MS);
    assert.equal(initial.inflight, 0);
    assert.equal(initial.loaded_version, null);
    assert.ok(initial.memory_rss > 0);
    await load(channel, 'async function handler() { await new Promise((r) => setTimeout(r, 100)); }', { version: 7 });
    const slow = invoke(channel, null);
    const during = await channel.request('stats', {}, REQUEST_TIMEOUT_MS);
    assert.equal(during.inflight, 1);
    assert.equal(during.loaded_version, 7);
    await slow;
    assert.equal((await channel.request('stats', {}, REQUEST_TIMEOUT_MS)).inflight, 0);
  });
});

describe('node agent: loading', () => {
  const agent = sharedAgent();

  test('a package load needs the VM (the task disk) and empty code; the code loaded before stays', async () => {
    const { channel } = agent();
    await load(channel, 'exports.handler = async () => "before";', { version: 1 });
    const request = { code: '', handler: 'index.handler', env: {}, version: 2, package: true };
    const error = await rejectsWith(channel.request('load', request, REQUEST_TIMEOUT_MS), 'PackageMountError');
    assert.match(error.info.message, /packages need a VM/);
    await rejectsWith(channel.request('load', { ...request, code: 'x' }, REQUEST_TIMEOUT_MS), 'ProtocolError');
    assert.equal((await invoke(channel, {})).response, 'before');
  });

  test('the functions-api.md example runs verbatim', async () => {
    const { channel } = agent();
    const code = "async function handler(event) { return { message: 'Hello!', input: event }; }";
    const loaded = await load(channel, code, { version: 1 });
    assert.equal(loaded.version, 1);
    assert.deepEqual(loaded.logs, []);
    assert.ok(loaded.duration_ms >= 0);
    const result = await invoke(channel, { name: 'World', test: 123 });
    assert.equal(result.status, 'success');
    assert.deepEqual(result.response, { message: 'Hello!', input: { name: 'World', test: 123 } });
    assert.equal(result.error, null);
    assert.deepEqual(result.logs, []);
    assert.equal(result.version, 1);
    assert.equal(typeof result.duration_ms, 'number');
    assert.equal((await channel.request('ping', {}, REQUEST_TIMEOUT_MS)).loaded_version, 1);
  });

  test('the curl example with a timestamp', async () => {
    const code =
      'async function handler(event) { return { message: "Hello from Node.js!", timestamp: new Date().toISOString(), input: event }; }';
    const response = (await loadAndCall(agent().channel, code, { name: 'World' })) as Record<string, unknown>;
    assert.equal(response.message, 'Hello from Node.js!');
    assert.match(String(response.timestamp), /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(response.input, { name: 'World' });
  });

  test('module.exports = function', async () => {
    assert.equal(await loadAndCall(agent().channel, 'module.exports = async (event) => event.n * 2;', { n: 21 }), 42);
  });

  test('module.exports.handler and exports.handler', async () => {
    assert.equal(await loadAndCall(agent().channel, 'module.exports.handler = async () => "a";'), 'a');
    assert.equal(await loadAndCall(agent().channel, 'exports.handler = async () => "b";'), 'b');
  });

  test('const handler = arrow function, no exports', async () => {
    assert.equal(await loadAndCall(agent().channel, 'const handler = async (e) => e + 1;', 1), 2);
  });

  test('ES module with export', async () => {
    const code = "import os from 'node:os';\nexport async function handler(event) { return { ok: typeof os.cpus, event }; }";
    assert.deepEqual(await loadAndCall(agent().channel, code, 5), { ok: 'function', event: 5 });
    const defaultExport = 'export default async function () { return "default"; }';
    assert.equal(await loadAndCall(agent().channel, defaultExport), 'default');
  });

  test('ES module with top-level await', async () => {
    const code = 'const value = await Promise.resolve(3);\nexport const handler = () => value;';
    assert.equal(await loadAndCall(agent().channel, code), 3);
  });

  test('Lambda-style handler name file.name', async () => {
    assert.equal(await loadAndCall(agent().channel, 'function main(e) { return e; }', 'x', 'index.main'), 'x');
  });

  test('a sync handler', async () => {
    assert.deepEqual(await loadAndCall(agent().channel, 'function handler(event) { return [event, 2]; }', 1), [1, 2]);
  });

  test('require of built-in modules inside a handler', async () => {
    const code =
      "async function handler() { const os = require('node:os'); const p = require('path'); return [typeof os.hostname(), p.join('a', 'b')]; }";
    assert.deepEqual(await loadAndCall(agent().channel, code), ['string', 'a/b']);
    const dynamic = "async function handler() { const { join } = await import('node:path'); console.log('imported'); return join('c', 'd'); }";
    await load(agent().channel, dynamic);
    const result = await invoke(agent().channel, {});
    assert.deepEqual([result.response, result.logs], ['c/d', ['imported']]); // and no agent warning in the logs
  });

  test('output of the top-level code is the load result logs', async () => {
    const { channel } = agent();
    const loaded = await load(channel, 'console.log("loading", 1);\nprocess.stdout.write("raw\\n");\nfunction handler() {}');
    assert.deepEqual(loaded.logs, ['loading 1', 'raw']);
    const esm = await load(channel, 'console.log("esm top");\nexport function handler() {}');
    assert.deepEqual(esm.logs, ['esm top']);
  });

  test('env reaches process.env; variables dropped by a reload are removed', async () => {
    const { channel } = agent();
    const code = `async function handler() {
      return { a: process.env.FNVM_TEST_A ?? null, b: process.env.FNVM_TEST_B ?? null, path: typeof process.env.PATH };
    }`;
    await load(channel, code, { env: { FNVM_TEST_A: '1', FNVM_TEST_B: 'two' } });
    assert.deepEqual((await invoke(channel, {})).response, { a: '1', b: 'two', path: 'string' });
    await load(channel, code, { env: { FNVM_TEST_A: '3' } });
    assert.deepEqual((await invoke(channel, {})).response, { a: '3', b: null, path: 'string' });
  });

  test('top-level code sees the env', async () => {
    const { channel } = agent();
    await load(channel, 'const greeting = process.env.GREETING; function handler() { return greeting; }', {
      env: { GREETING: 'hi' },
    });
    assert.equal((await invoke(channel, {})).response, 'hi');
  });

  test('a reload swaps the code', async () => {
    const { channel } = agent();
    await load(channel, 'function handler() { return "one"; }', { version: 21 });
    assert.equal((await invoke(channel, {})).response, 'one');
    await load(channel, 'function handler() { return "two"; }', { version: 22 });
    const result = await invoke(channel, {});
    assert.equal(result.response, 'two');
    assert.equal(result.version, 22);
  });

  test('a reload with a syntax error fails and the old code keeps answering', async () => {
    const { channel } = agent();
    await load(channel, 'function handler() { return process.env.FNVM_KEEP ?? null; }', {
      version: 31,
      env: { FNVM_KEEP: 'yes' },
    });
    const error = await rejectsWith(load(channel, 'function handler( {', { version: 32 }), 'SyntaxError');
    assert.doesNotMatch(error.info.message + error.info.stack, /return typeof/);
    const result = await invoke(channel, {});
    assert.equal(result.response, 'yes'); // old code, and the env of its load
    assert.equal(result.version, 31);
    assert.equal((await channel.request('ping', {}, REQUEST_TIMEOUT_MS)).loaded_version, 31);
  });

  test('HandlerNotFound names the handler', async () => {
    const { channel } = agent();
    const error = await rejectsWith(load(channel, 'function other() {}', { handler: 'main' }), 'HandlerNotFound');
    assert.match(error.info.message, /"main"/);
    await rejectsWith(load(channel, 'module.exports = { main: 42 };', { handler: 'main' }), 'HandlerNotFound');
    await rejectsWith(load(channel, 'export const other = 1;', { handler: 'main' }), 'HandlerNotFound');
    await rejectsWith(load(channel, 'function f() {}', { handler: 'not-valid' }), 'HandlerNotFound');
    await rejectsWith(load(channel, 'function f() {}', { handler: 'index.class' }), 'HandlerNotFound');
  });

  test('an error thrown by the top-level code fails the load with that error', async () => {
    const error = await rejectsWith(load(agent().channel, 'throw new RangeError("bad config");'), 'RangeError');
    assert.equal(error.info.message, 'bad config');
    assert.match(error.info.stack, /function\.js:1/);
  });
});

describe('node agent: invocations', () => {
  const agent = sharedAgent();

  test('a handler that throws gives status error with type, message and stack', async () => {
    const { channel } = agent();
    await load(channel, 'async function handler(event) {\n  throw new TypeError("bad input " + event);\n}');
    const result = await invoke(channel, 7);
    assert.equal(result.status, 'error');
    assert.equal(result.response, null);
    assert.equal(result.error?.type, 'TypeError');
    assert.equal(result.error?.message, 'bad input 7');
    assert.match(result.error?.stack ?? '', /TypeError: bad input 7\n\s+at handler \(function\.js:2:9\)/);
    assert.doesNotMatch(result.error?.stack ?? '', /agent\.mjs/);
  });

  test('thrown non-Error values and Error subclasses', async () => {
    const { channel } = agent();
    await load(channel, 'function handler() { throw "boom"; }');
    assert.deepEqual((await invoke(channel, {})).error, { type: 'Error', message: 'boom', stack: '' });
    await load(channel, 'class NotFound extends Error {}\nfunction handler() { throw new NotFound("gone"); }');
    const error = (await invoke(channel, {})).error;
    assert.equal(error?.type, 'NotFound');
    assert.equal(error?.message, 'gone');
  });

  test('undefined becomes null; the context carries the request id and version', async () => {
    const { channel } = agent();
    await load(channel, 'function handler() {}');
    assert.equal((await invoke(channel, {})).response, null);
    await load(
      channel,
      'function handler(e, ctx) { return [ctx.requestId, ctx.awsRequestId, ctx.functionVersion, ctx.getRemainingTimeInMillis()]; }',
      { version: 12 },
    );
    const response = (await invoke(channel, {}, 'abc')).response as [string, string, string, number];
    assert.deepEqual(response.slice(0, 3), ['abc', 'abc', '12']);
    assert.ok(response[3] > 3000 && response[3] <= 5000, `remaining ${response[3]}`);
  });

  test('non-serialisable results give SerializationError and the agent keeps working', async () => {
    const { channel } = agent();
    await load(channel, 'function handler(e) { if (e === "big") return { n: 1n }; const o = {}; o.self = o; return o; }');
    for (const event of ['big', 'circular']) {
      const result = await invoke(channel, event);
      assert.equal(result.status, 'error');
      assert.equal(result.response, null);
      assert.equal(result.error?.type, 'SerializationError');
      assert.match(result.error?.message ?? '', /not JSON-serialisable: .*(BigInt|circular)/);
    }
    await load(channel, 'function handler(e) { return e; }');
    assert.equal((await invoke(channel, 'fine')).response, 'fine');
  });

  test('a 5 MB event is echoed back intact', async () => {
    const { channel } = agent();
    await load(channel, 'async function handler(event) { return event; }');
    const event = { data: 'x'.repeat(5 * 1024 * 1024 - 64), unicode: 'é✓😀', nested: [1, { b: null }] };
    const result = await invoke(channel, event);
    assert.equal(result.status, 'success');
    assert.deepEqual(result.response, event);
  });

  test('a response over 6 MiB of JSON (UTF-8) is ResponseTooLarge from the agent itself; exactly 6 MiB passes', async () => {
    const { channel } = agent();
    await load(channel, 'function handler(e) { return (e.ascii ? "x" : "é").repeat(e.chars); }');
    await checkAgentResponseLimit((event) => invoke(channel, event));
  });

  test('50 overlapping invocations each get only their own logs', async () => {
    const { channel } = agent();
    await load(
      channel,
      `async function handler(event) {
        for (let line = 0; line < 4; line++) {
          console.log('inv %d line %d', event.i, line);
          await new Promise((resolve) => setTimeout(resolve, (event.i * 7 + line * 13) % 10));
          process.stdout.write('out ' + event.i + '\\n');
          await null;
          console.error('err', event.i);
        }
        return event.i;
      }`,
    );
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => invoke(channel, { i }, `req-${i}`)));
    results.forEach((result, i) => {
      assert.equal(result.response, i);
      const expected = [0, 1, 2, 3].flatMap((line) => [`inv ${i} line ${line}`, `out ${i}`, `err ${i}`]);
      assert.deepEqual(result.logs, expected);
    });
  });

  test('console formatting follows util.format and logs are split into lines', async () => {
    const { channel } = agent();
    await load(
      channel,
      'function handler() { console.log("%s=%d", "a", 5); console.info({ a: [1] }); console.warn("x\\ny"); process.stderr.write("no newline"); }',
    );
    assert.deepEqual((await invoke(channel, {})).logs, ['a=5', '{ a: [ 1 ] }', 'x', 'y', 'no newline']);
  });

  test('logs are capped at 1 MiB', async () => {
    const { channel } = agent();
    await load(channel, 'function handler() { for (let i = 0; i < 3000; i++) console.log("y".repeat(1000)); }');
    const { logs } = await invoke(channel, {});
    assert.equal(logs.at(-1), '[logs truncated]');
    const bytes = logs.slice(0, -1).reduce((sum, line) => sum + line.length + 1, 0);
    assert.ok(bytes <= 1024 * 1024 + 1 && bytes > 1000 * 1000, `captured ${bytes} bytes`);
  });

  test('output after an invocation finished goes to the agent stderr', async () => {
    const { channel, stderr } = agent();
    await load(channel, 'function handler() { console.log("now"); setTimeout(() => console.log("too late"), 20); }');
    assert.deepEqual((await invoke(channel, {})).logs, ['now']);
    await waitFor(() => stderr().includes('too late'), 'the late output on stderr');
    assert.deepEqual((await invoke(channel, {})).logs, ['now']);
  });

  test('an invocation in flight during a reload finishes on the old code', async () => {
    const { channel } = agent();
    const slowCode = 'async function handler() { await new Promise((r) => setTimeout(r, 200)); return "old"; }';
    await load(channel, slowCode, { version: 41 });
    const slow = invoke(channel, {}, 'slow'); // sent before the load: the agent starts it on version 41
    await load(channel, 'async function handler() { return "new"; }', { version: 42 });
    const fresh = await invoke(channel, {}, 'fresh');
    assert.deepEqual([fresh.response, fresh.version], ['new', 42]);
    const old = await slow;
    assert.deepEqual([old.response, old.version], ['old', 41]);
  });

  test('unhandled rejections and uncaught exceptions do not kill the agent', async () => {
    const { channel, stderr, process: child } = agent();
    await load(
      channel,
      `async function handler() {
        Promise.reject(new Error('nobody catches me'));
        setTimeout(() => { throw new Error('thrown from a timer'); }, 5);
        return 'ok';
      }`,
    );
    assert.equal((await invoke(channel, {})).response, 'ok');
    await waitFor(() => /thrown from a timer/.test(stderr()), 'the uncaught exception on stderr');
    assert.match(stderr(), /nobody catches me/);
    assert.equal((await invoke(channel, {})).response, 'ok');
    assert.equal(child.exitCode, null);
  });
});

// Every VM is a clone of one snapshot: the per-load `seed` must make their random values differ.
const newSeed = () => randomBytes(32).toString('hex');
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// One draw from every JS entry point to randomness, at top level and in the handler.
const RANDOM_SCRIPT = `
const crypto = require('node:crypto');
const atLoad = crypto.randomUUID();
function handler() {
  return {
    atLoad,
    uuid: crypto.randomUUID(),
    uuidUncached: crypto.randomUUID({ disableEntropyCache: true }),
    webUuid: globalThis.crypto.randomUUID(),
    math: [Math.random(), Math.random(), Math.random()],
    bytes: crypto.randomBytes(16).toString('hex'),
    values: Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex'),
    webValues: Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16))).toString('hex'),
    fill: crypto.randomFillSync(Buffer.alloc(16)).toString('hex'),
    int: crypto.randomInt(2 ** 47),
  };
}`;
const RANDOM_MODULE = `
import crypto, { randomUUID, randomBytes, randomInt } from 'node:crypto';
export async function handler() {
  const filled = await new Promise((resolve, reject) =>
    crypto.randomFill(Buffer.alloc(16), (error, buf) => (error ? reject(error) : resolve(buf.toString('hex')))));
  const callback = await new Promise((resolve, reject) =>
    randomBytes(16, (error, buf) => (error ? reject(error) : resolve(buf.toString('hex')))));
  return { uuid: randomUUID(), bytes: randomBytes(16).toString('hex'), int: randomInt(2 ** 47), filled, callback };
}`;

async function draw(channel: GuestChannel, code: string, seed?: string): Promise<Record<string, unknown>> {
  await load(channel, code, { seed });
  const result = await invoke(channel, null);
  assert.equal(result.status, 'success', JSON.stringify(result.error));
  return result.response as Record<string, unknown>;
}

function assertAllDiffer(a: Record<string, unknown>, b: Record<string, unknown>): void {
  assert.deepEqual(Object.keys(a), Object.keys(b));
  for (const key of Object.keys(a)) assert.notDeepEqual(a[key], b[key], `${key} is the same in both agents`);
}

describe('node agent: per-load random seed', () => {
  const first = sharedAgent();
  const second = sharedAgent();

  test('two agents loaded with the same code and different seeds draw different values', async () => {
    const [a, b] = await Promise.all([draw(first().channel, RANDOM_SCRIPT, newSeed()), draw(second().channel, RANDOM_SCRIPT, newSeed())]);
    assertAllDiffer(a, b);
    const [esmA, esmB] = await Promise.all([draw(first().channel, RANDOM_MODULE, newSeed()), draw(second().channel, RANDOM_MODULE, newSeed())]);
    assertAllDiffer(esmA, esmB);
  });

  test('the values stay well-formed and the API contracts hold', async () => {
    const code = `
      const crypto = require('node:crypto');
      async function handler() {
        const uuids = Array.from({ length: 1000 }, (_, i) => (i % 2 ? crypto.randomUUID() : globalThis.crypto.randomUUID()));
        const math = Array.from({ length: 10000 }, () => Math.random());
        const ints = Array.from({ length: 1000 }, () => crypto.randomInt(-3, 4));
        const words = crypto.randomFillSync(new Uint32Array(8), 2, 3); // fills elements 2, 3 and 4 only
        const halves = await new Promise((resolve) => crypto.randomFill(new Uint16Array(8), 5, (e, a) => resolve(a)));
        const errors = [];
        for (const bad of [
          () => crypto.randomBytes(-1),
          () => crypto.randomInt(5, 1),
          () => crypto.randomUUID({ disableEntropyCache: 'yes' }),
          () => crypto.getRandomValues(new Float64Array(2)),
          () => globalThis.crypto.getRandomValues(new Uint8Array(65537)),
          () => { const { randomUUID } = globalThis.crypto; randomUUID(); },
        ]) {
          try { bad(); errors.push(null); } catch (error) { errors.push(typeof error.code === 'string' ? error.code : error.name); }
        }
        const intCallback = await new Promise((resolve) => crypto.randomInt(10, 12, (e, n) => resolve(n)));
        return {
          uuids, mathMin: Math.min(...math), mathMax: Math.max(...math), mathMean: math.reduce((s, x) => s + x) / math.length,
          ints: [Math.min(...ints), Math.max(...ints)], intCallback,
          words: Array.from(words, (x) => x !== 0), halves: Array.from(halves, (x) => x !== 0),
          sizes: [crypto.randomBytes(0).length, crypto.randomBytes(100000).length, crypto.pseudoRandomBytes(7).length],
          array: (() => { const a = new Int32Array(4); return crypto.getRandomValues(a) === a; })(),
          errors,
        };
      }`;
    const r = (await draw(first().channel, code, newSeed())) as {
      uuids: string[]; mathMin: number; mathMax: number; mathMean: number; ints: number[]; intCallback: number;
      words: boolean[]; halves: boolean[]; sizes: number[]; array: boolean; errors: (string | null)[];
    };
    for (const uuid of r.uuids) assert.match(uuid, UUID_V4);
    assert.equal(new Set(r.uuids).size, r.uuids.length);
    assert.ok(r.mathMin >= 0 && r.mathMax < 1, `Math.random range [${r.mathMin}, ${r.mathMax}]`);
    assert.ok(r.mathMean > 0.45 && r.mathMean < 0.55, `Math.random mean ${r.mathMean}`);
    assert.deepEqual(r.ints, [-3, 3]);
    assert.ok(r.intCallback === 10 || r.intCallback === 11, `randomInt(10, 12) gave ${r.intCallback}`);
    // a random 32-bit word (16-bit half) is 0 with probability 2^-32 (2^-16): fine for a test
    assert.deepEqual(r.words, [false, false, true, true, true, false, false, false]);
    assert.deepEqual(r.halves, [false, false, false, false, false, true, true, true]);
    assert.deepEqual(r.sizes, [0, 100000, 7]);
    assert.equal(r.array, true);
    assert.deepEqual(r.errors, [
      'ERR_OUT_OF_RANGE', 'ERR_OUT_OF_RANGE', 'ERR_INVALID_ARG_TYPE', 'TypeMismatchError', 'QuotaExceededError',
      'ERR_INVALID_THIS',
    ]);
  });

  test('a load without a seed still works; a malformed seed is a ProtocolError', async () => {
    const { channel } = first();
    const response = (await draw(channel, RANDOM_SCRIPT)) as { uuid: string; math: number[] };
    assert.match(response.uuid, UUID_V4);
    await load(channel, 'function handler() { return "kept"; }', { version: 51, seed: newSeed() });
    for (const seed of ['abc', 'g'.repeat(64), newSeed().toUpperCase() + '0']) {
      await rejectsWith(load(channel, 'function handler() { return "new"; }', { seed }), 'ProtocolError');
    }
    await load(channel, 'function handler() { return "upper"; }', { seed: newSeed().toUpperCase() });
    assert.equal((await invoke(channel, null)).response, 'upper');
  });
});

// A stand-in for VM clones: two processes whose OpenSSL-backed sources return identical (zero) bytes, as
// clones restored from one snapshot do. Without a seed they collide; with different seeds they must not.
describe('node agent: clones with identical OpenSSL state', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fnvm-clone-'));
  const preload = join(dir, 'identical-entropy.cjs');
  writeFileSync(
    preload,
    `const crypto = require('node:crypto');
    const zero = (b) => { new Uint8Array(ArrayBuffer.isView(b) ? b.buffer : b, b.byteOffset || 0, b.byteLength).fill(0); return b; };
    const later = (callback, ...args) => process.nextTick(callback, ...args);
    crypto.randomBytes = (size, callback) => { const b = Buffer.alloc(size); if (!callback) return b; later(callback, null, b); };
    crypto.randomFillSync = (b) => zero(b);
    crypto.randomFill = (b, ...rest) => later(rest.find((a) => typeof a === 'function'), null, zero(b));
    crypto.randomInt = (min, max, callback) => {
      const low = max === undefined || typeof max === 'function' ? 0 : min;
      callback = typeof max === 'function' ? max : callback;
      if (!callback) return low;
      later(callback, undefined, low);
    };
    crypto.randomUUID = () => '00000000-0000-4000-8000-000000000000';
    const prototype = Object.getPrototypeOf(crypto.webcrypto);
    prototype.getRandomValues = (array) => zero(array);
    prototype.randomUUID = () => '00000000-0000-4000-8000-000000000000';
    Math.random = () => 0.5;
    `,
  );
  let clones: LocalAgent[] = [];
  before(() => {
    clones = [0, 1].map(() => startLocalAgent('node', { NODE_OPTIONS: `--require ${preload}` }));
  });
  after(async () => {
    await Promise.all(clones.map((clone) => clone.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('unseeded clones draw the same values (the problem); seeded ones differ everywhere', async () => {
    const [one, two] = clones;
    assert.ok(one && two);
    const drawBoth = (code: string, seeds: [string | undefined, string | undefined]) =>
      Promise.all([draw(one.channel, code, seeds[0]), draw(two.channel, code, seeds[1])]);
    const [a, b] = await drawBoth(RANDOM_SCRIPT, [undefined, undefined]);
    assert.deepEqual(a, b);
    const [seededA, seededB] = await drawBoth(RANDOM_SCRIPT, [newSeed(), newSeed()]);
    assertAllDiffer(seededA, seededB);
    assert.match(String(seededA.uuid), UUID_V4);
    const [esmA, esmB] = await drawBoth(RANDOM_MODULE, [newSeed(), newSeed()]);
    assertAllDiffer(esmA, esmB);
  });
});

describe('node agent: raw stdio', () => {
  test('stdout carries only frames; bad frames get ProtocolError replies', async () => {
    const child = spawn(process.execPath, [agentPaths.node], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      let stdout = Buffer.alloc(0);
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout = Buffer.concat([stdout, chunk])));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const raw = (text: string) => {
        const body = Buffer.from(text);
        const header = Buffer.alloc(4);
        header.writeUInt32BE(body.length, 0);
        child.stdin.write(Buffer.concat([header, body]));
      };
      const code =
        'console.log("top"); process.stdout.write("raw top\\n");\n' +
        'function handler() { console.log("in"); process.stdout.write("raw in\\n"); setTimeout(() => process.stdout.write("late\\n"), 10); return 1; }';
      child.stdin.write(encodeFrame({ id: 1, type: 'load', code, handler: 'handler', env: {}, version: 1 }));
      await waitFor(() => countFrames(stdout) === 1, 'the load reply'); // as the host does: invoke once loaded
      child.stdin.write(encodeFrame({ id: 2, type: 'invoke', request_id: 'r', event: null, timeout_ms: 1000 }));
      raw('{not json');
      raw('[1, 2]');
      raw(JSON.stringify({ id: 3, type: 'bogus' }));
      child.stdin.write(encodeFrame({ id: 4, type: 'ping' }));
      await waitFor(() => countFrames(stdout) === 6, 'six replies');
      await waitFor(() => stderr.includes('late'), 'the late output on stderr');
      child.stdin.end();
      assert.equal(await exited, 0);

      const replies = decodeAll(stdout);
      assert.equal(replies.length, 6);
      const byId = new Map(replies.filter((r) => r.id !== null).map((r) => [r.id, r]));
      assert.deepEqual((byId.get(1)?.result as LoadResult).logs, ['top', 'raw top']);
      assert.deepEqual((byId.get(2)?.result as InvokeResult).logs, ['in', 'raw in']);
      assert.equal(byId.get(3)?.error?.type, 'UnknownRequest');
      assert.equal(byId.get(4)?.ok, true);
      const nullReplies = replies.filter((r) => r.id === null);
      assert.equal(nullReplies.length, 2);
      for (const reply of nullReplies) {
        assert.equal(reply.ok, false);
        assert.equal(reply.error?.type, 'ProtocolError');
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

interface RawReply {
  id: number | null;
  ok: boolean;
  result?: unknown;
  error?: { type: string; message: string };
}

function countFrames(bytes: Buffer): number {
  let count = 0;
  for (let offset = 0; offset + 4 <= bytes.length; count++) {
    const end = offset + 4 + bytes.readUInt32BE(offset);
    if (end > bytes.length) break;
    offset = end;
  }
  return count;
}

/** Every byte must belong to a frame: any stray user output would break this. */
function decodeAll(bytes: Buffer): RawReply[] {
  const replies: RawReply[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    assert.ok(offset + 4 <= bytes.length, 'truncated frame header');
    const length = bytes.readUInt32BE(offset);
    assert.ok(offset + 4 + length <= bytes.length, 'truncated frame body');
    replies.push(JSON.parse(bytes.subarray(offset + 4, offset + 4 + length).toString('utf8')) as RawReply);
    offset += 4 + length;
  }
  return replies;
}
