// Unit tests of the Python guest agent (guest/python/agent.py), run as a local process over stdin/stdout.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GuestRequestError } from '../src/guest/channel.js';
import { encodeFrame, FrameDecoder } from '../src/guest/framing.js';
import { startLocalAgent, type LocalAgent } from '../src/guest/local-agent.js';
import type { InvokeResult, LoadResult } from '../src/guest/protocol.js';
import { agentPaths } from '../src/paths.js';
import { checkAgentResponseLimit } from './support/response-limit.js';

const REPLY_MS = 10_000; // generous: a hung agent fails the test instead of hanging it
let nextVersion = 1;

/** Strips the common leading indentation so Python snippets can be indented with the test code. */
function py(source: string): string {
  const lines = source.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

async function withAgent(fn: (agent: LocalAgent) => Promise<void>): Promise<void> {
  const agent = startLocalAgent('python');
  try {
    await fn(agent);
  } finally {
    await agent.stop();
  }
}

function load(
  agent: LocalAgent,
  code: string,
  handler = 'handler',
  env: Record<string, string> = {},
  version = nextVersion++,
): Promise<LoadResult> {
  return agent.channel.request('load', { code, handler, env, version }, REPLY_MS);
}

function invoke(agent: LocalAgent, event: unknown, requestId = 'req-1'): Promise<InvokeResult> {
  return agent.channel.request('invoke', { request_id: requestId, event, timeout_ms: 30_000 }, REPLY_MS);
}

/** The `ok: false` error of a request that must fail. */
async function requestError(promise: Promise<unknown>): Promise<GuestRequestError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GuestRequestError, `expected GuestRequestError, got ${String(error)}`);
    return error;
  }
  assert.fail('request succeeded but was expected to fail');
}

// The example of ../shared/functions-api.md, "Python Function", verbatim (it uses datetime without importing it).
const FUNCTIONS_API_EXAMPLE = `def handler(event):
    # Access event data
    name = event.get('name')
    value = event.get('value')

    # Return response (must be dict)
    return {
        'message': f'Hello, {name}!',
        'value': value * 2,
        'timestamp': str(datetime.now())
    }
`;

describe('python agent', { timeout: 30_000 }, () => {
  // One agent serves most tests (each loads its own code): starting Python is most of a test's time.
  let shared: LocalAgent;
  before(() => {
    shared = startLocalAgent('python');
  });
  after(() => shared.stop());
  const withShared = (fn: (agent: LocalAgent) => Promise<void>) => fn(shared);

  test('ping describes the runtime; invoke before any load is NotLoaded', () =>
    withAgent(async (agent) => {
      const ping = await agent.channel.request('ping', {}, REPLY_MS);
      assert.equal(ping.runtime, 'python');
      assert.match(ping.runtime_version, /^3\.\d+\.\d+/);
      assert.equal(ping.agent_version, 2);
      assert.ok(Math.abs(ping.time_ms - Date.now()) < 5000, 'time_ms is the wall clock');
      assert.ok(ping.monotonic_ms > 0);
      assert.equal(ping.loaded_version, null);
      const error = await requestError(invoke(agent, {}));
      assert.equal(error.info.type, 'NotLoaded');
      const stats = await agent.channel.request('stats', {}, REPLY_MS);
      assert.equal(stats.inflight, 0);
      assert.equal(stats.loaded_version, null);
      assert.ok(stats.memory_rss > 1_000_000);
    }));

  test('a package load needs the VM (the task disk) and empty code; the code loaded before stays', () =>
    withShared(async (agent) => {
      await load(agent, 'def handler(event):\n    return "before"\n');
      const request = { code: '', handler: 'lambda_function.lambda_handler', env: {}, version: nextVersion++, package: true };
      const error = await requestError(agent.channel.request('load', request, REPLY_MS));
      assert.equal(error.info.type, 'PackageMountError');
      assert.match(error.info.message, /packages need a VM/);
      const withCode = await requestError(agent.channel.request('load', { ...request, code: 'x = 1' }, REPLY_MS));
      assert.equal(withCode.info.type, 'ProtocolError');
      assert.equal((await invoke(agent, {})).response, 'before');
    }));

  test('as a local process, renew and clock leave the host clock alone; bad arguments are a ProtocolError', () =>
    withShared(async (agent) => {
      const seed = randomBytes(32).toString('hex');
      const renewed = await agent.channel.request('renew', { seed, time_ms: Date.now() - 365 * 86_400_000 }, REPLY_MS);
      assert.equal(renewed.system, false);
      assert.ok(Math.abs(renewed.time_ms - Date.now()) < 5000, 'the host clock was not set a year back');
      const stepped = await agent.channel.request('clock', { adjust_ms: -86_400_000 }, REPLY_MS);
      assert.equal(stepped.system, false);
      assert.ok(Math.abs(Date.now() - stepped.time_ms) < 5000);
      for (const params of [{ seed: 'nope', time_ms: Date.now() }, { seed, time_ms: -1 }]) {
        assert.equal((await requestError(agent.channel.request('renew', params, REPLY_MS))).info.type, 'ProtocolError');
      }
      const bad = await requestError(agent.channel.request('clock', { adjust_ms: 'soon' as unknown as number }, REPLY_MS));
      assert.equal(bad.info.type, 'ProtocolError');
    }));

  test('runs the functions-api.md example verbatim', () =>
    withShared(async (agent) => {
      const loaded = await load(agent, FUNCTIONS_API_EXAMPLE, 'handler', {}, 7);
      assert.equal(loaded.version, 7);
      assert.deepEqual(loaded.logs, []);
      assert.equal(typeof loaded.duration_ms, 'number');
      const result = await invoke(agent, { name: 'World', value: 21 });
      assert.equal(result.status, 'success', JSON.stringify(result.error));
      assert.equal(result.version, 7);
      assert.equal(result.error, null);
      const response = result.response as Record<string, unknown>;
      assert.equal(response.message, 'Hello, World!');
      assert.equal(response.value, 42);
      assert.match(String(response.timestamp), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$/);
      assert.equal(typeof result.duration_ms, 'number');
      assert.equal((await agent.channel.request('ping', {}, REPLY_MS)).loaded_version, 7);
    }));

  test('async def handler, Lambda-style file.name handler and (event, context)', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        import asyncio
        async def handler(event):
            await asyncio.sleep(0.01)
            print('async says hi')
            return {'doubled': event['n'] * 2}
      `));
      const asyncResult = await invoke(agent, { n: 4 });
      assert.equal(asyncResult.status, 'success', JSON.stringify(asyncResult.error));
      assert.deepEqual(asyncResult.response, { doubled: 8 });
      assert.deepEqual(asyncResult.logs, ['async says hi']);

      await load(agent, py(`
        def handler(event, context):
            return {'id': context.aws_request_id, 'same': context.request_id,
                    'remaining': context.get_remaining_time_in_millis(), 'version': context.function_version}
      `), 'index.handler', {}, 12);
      const result = await invoke(agent, null, 'req-42');
      assert.equal(result.status, 'success', JSON.stringify(result.error));
      const response = result.response as Record<string, unknown>;
      assert.equal(response.id, 'req-42');
      assert.equal(response.same, 'req-42');
      assert.equal(response.version, '12');
      assert.ok(Number(response.remaining) > 25_000 && Number(response.remaining) <= 30_000);
    }));

  test('env is applied to os.environ; keys of the previous load are removed, others kept', () =>
    withShared(async (agent) => {
      const code = py(`
        import os
        def handler(event):
            return {k: os.environ.get(k) for k in ('FNVM_A', 'FNVM_B', 'PATH')}
      `);
      await load(agent, code, 'handler', { FNVM_A: '1', FNVM_B: 'two' });
      const first = (await invoke(agent, {})).response as Record<string, string | null>;
      assert.equal(first.FNVM_A, '1');
      assert.equal(first.FNVM_B, 'two');
      assert.ok(first.PATH);

      await load(agent, code, 'handler', { FNVM_A: '3' });
      const second = (await invoke(agent, {})).response as Record<string, string | null>;
      assert.equal(second.FNVM_A, '3');
      assert.equal(second.FNVM_B, null);
      assert.equal(second.PATH, first.PATH);

      // A load whose top-level code raises fails with that error, and leaves code and env as they were.
      const error = await requestError(load(agent, "raise RuntimeError('no start')\n", 'handler', { FNVM_A: 'bad', FNVM_C: 'x' }));
      assert.equal(error.info.type, 'RuntimeError');
      assert.equal(error.info.message, 'no start');
      assert.match(error.info.stack, /function\.py", line 1/);
      const third = await invoke(agent, {});
      assert.deepEqual(third.response, second);
    }));

  test('50 overlapping sync invocations each get only their own logs', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        import sys, time
        def handler(event):
            n = event['n']
            for i in range(3):
                print(f'{n}:{i}')
                time.sleep(0.01)
            sys.stderr.write(f'{n}:err\\n')
            return n
      `));
      const stderrBefore = agent.stderr().length;
      const results = await Promise.all(Array.from({ length: 50 }, (_, n) => invoke(agent, { n }, `req-${n}`)));
      results.forEach((result, n) => {
        assert.equal(result.status, 'success', JSON.stringify(result.error));
        assert.equal(result.response, n);
        assert.deepEqual(result.logs, [`${n}:0`, `${n}:1`, `${n}:2`, `${n}:err`]);
      });
      assert.equal(agent.stderr().slice(stderrBefore), '', 'nothing leaked to the agent stderr');
    }));

  test('50 overlapping async invocations each get only their own logs', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        import asyncio
        async def handler(event):
            n = event['n']
            for i in range(3):
                print(f'{n}:{i}')
                await asyncio.sleep(0.01)
            return n
      `));
      const results = await Promise.all(Array.from({ length: 50 }, (_, n) => invoke(agent, { n }, `req-${n}`)));
      results.forEach((result, n) => {
        assert.equal(result.status, 'success', JSON.stringify(result.error));
        assert.equal(result.response, n);
        assert.deepEqual(result.logs, [`${n}:0`, `${n}:1`, `${n}:2`]);
      });
    }));

  test('blocking sync handlers run concurrently and do not block ping or stats', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        import time
        def handler(event):
            time.sleep(0.5)
            return 'slept'
      `));
      const started = Date.now();
      const pending = Promise.all(Array.from({ length: 20 }, (_, n) => invoke(agent, {}, `req-${n}`)));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const pingStarted = Date.now();
      await agent.channel.request('ping', {}, REPLY_MS);
      const stats = await agent.channel.request('stats', {}, REPLY_MS);
      assert.ok(Date.now() - pingStarted < 300, 'ping/stats waited for the handlers');
      assert.equal(stats.inflight, 20);
      const results = await pending;
      const elapsed = Date.now() - started;
      assert.ok(results.every((r) => r.response === 'slept'));
      assert.ok(elapsed < 5_000, `20 x 0.5 s took ${elapsed} ms`);
      assert.equal((await agent.channel.request('stats', {}, REPLY_MS)).inflight, 0);
    }));

  test('reload swaps the code; a reload with a syntax error fails and the old code keeps answering', () =>
    withShared(async (agent) => {
      await load(agent, "print('loading v1')\ndef handler(event):\n    return 'v1'\n", 'handler', {}, 1);
      assert.equal((await invoke(agent, {})).response, 'v1');
      const loaded = await load(agent, "print('loading v2')\ndef handler(event):\n    return 'v2'\n", 'handler', {}, 2);
      assert.deepEqual(loaded.logs, ['loading v2']);
      const swapped = await invoke(agent, {});
      assert.equal(swapped.response, 'v2');
      assert.equal(swapped.version, 2);

      const error = await requestError(load(agent, 'def handler(event):\n    return (\n', 'handler', {}, 3));
      assert.equal(error.info.type, 'SyntaxError');
      assert.match(error.info.message, /line \d+/);
      const after = await invoke(agent, {});
      assert.equal(after.response, 'v2');
      assert.equal(after.version, 2);
      assert.equal((await agent.channel.request('ping', {}, REPLY_MS)).loaded_version, 2);
    }));

  test('a missing handler fails the load with HandlerNotFound', () =>
    withShared(async (agent) => {
      const before = (await agent.channel.request('ping', {}, REPLY_MS)).loaded_version;
      const error = await requestError(load(agent, 'def main(event):\n    return 1\n', 'handler'));
      assert.equal(error.info.type, 'HandlerNotFound');
      assert.match(error.info.message, /handler/);
      const notCallable = await requestError(load(agent, 'handler = 3\n', 'index.handler'));
      assert.equal(notCallable.info.type, 'HandlerNotFound');
      assert.equal((await agent.channel.request('ping', {}, REPLY_MS)).loaded_version, before);
    }));

  test('a handler that raises gives status error with type, message and traceback', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        def handler(event):
            print('about to fail')
            raise ValueError('bad value: ' + str(event['x']))
      `));
      const result = await invoke(agent, { x: 5 });
      assert.equal(result.status, 'error');
      assert.equal(result.response, null);
      assert.equal(result.error?.type, 'ValueError');
      assert.equal(result.error?.message, 'bad value: 5');
      assert.match(result.error?.stack ?? '', /Traceback[\s\S]*function\.py", line 3, in handler[\s\S]*ValueError: bad value: 5/);
      assert.deepEqual(result.logs, ['about to fail']);
    }));

  test('a non-serialisable result is a SerializationError and the agent keeps working', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        def handler(event):
            if event == 'set':
                return {1, 2, 3}
            if event == 'nan':
                return float('nan')
            return None
      `));
      const result = await invoke(agent, 'set');
      assert.equal(result.status, 'error');
      assert.equal(result.error?.type, 'SerializationError');
      assert.match(result.error?.message ?? '', /set/);
      assert.equal((await invoke(agent, 'nan')).error?.type, 'SerializationError');
      const ok = await invoke(agent, 'none');
      assert.equal(ok.status, 'success');
      assert.equal(ok.response, null);
    }));

  test('a 5 MB event is echoed back intact', () =>
    withShared(async (agent) => {
      await load(agent, 'def handler(event):\n    return event\n');
      const event = { blob: 'x'.repeat(5 * 1024 * 1024), text: 'héllo ✓ 🚀', nested: { list: [1, 2.5, true, null] } };
      const result = await invoke(agent, event);
      assert.equal(result.status, 'success');
      assert.deepEqual(result.response, event);
    }));

  test('a response over 6 MiB of JSON (UTF-8, unescaped) is ResponseTooLarge from the agent; exactly 6 MiB passes', () =>
    withShared(async (agent) => {
      // 'é' is 2 bytes of UTF-8 but 6 characters escaped (\u00e9): the limit counts the 2, and it still fits a frame.
      await load(agent, "def handler(event):\n    return ('x' if event['ascii'] else 'é') * event['chars']\n");
      await checkAgentResponseLimit((event) => invoke(agent, event));
    }));

  test('sys.exit() and os-level writes in a handler do not kill or corrupt the agent', () =>
    withShared(async (agent) => {
      await load(agent, py(`
        import os, sys
        def handler(event):
            if event == 'exit':
                sys.exit()
            os.system('echo written to fd 1')
            return 'alive'
      `));
      const exited = await invoke(agent, 'exit');
      assert.equal(exited.status, 'error');
      assert.equal(exited.error?.type, 'SystemExit');
      assert.equal((await invoke(agent, 'shell')).response, 'alive');
      assert.equal((await agent.channel.request('ping', {}, REPLY_MS)).runtime, 'python');
      assert.equal(agent.process.exitCode, null);
    }));

  test('logs past 1 MiB are cut with a final [logs truncated] line', () =>
    withShared(async (agent) => {
      await load(agent, "def handler(event):\n    for i in range(3000):\n        print('y' * 1000)\n    return 'done'\n");
      const result = await invoke(agent, {});
      assert.equal(result.response, 'done');
      assert.equal(result.logs.at(-1), '[logs truncated]');
      const size = result.logs.slice(0, -1).reduce((sum, line) => sum + line.length + 1, 0);
      assert.ok(size <= 1024 * 1024 + 1 && size > 1000 * 1000, `captured ${size} bytes`);
    }));

  test('unknown request types fail with UnknownRequest', () =>
    withShared(async (agent) => {
      const request = agent.channel.request as (type: string, params: object, timeoutMs: number) => Promise<unknown>;
      const error = await requestError(request.call(agent.channel, 'reboot', {}, REPLY_MS));
      assert.equal(error.info.type, 'UnknownRequest');
    }));

  test('a frame nested too deep to decode is still answered (the id comes first), not left to time out', () =>
    withShared(async (agent) => {
      await agent.channel.request('load', { code: 'def handler(event):\n    return 1', handler: 'handler', env: {}, version: 1 });
      let event: unknown = 0;
      for (let i = 0; i < 3000; i++) event = [event]; // past Python's recursion limit, within the host's
      const error = await requestError(agent.channel.request('invoke', { request_id: 'deep', event, timeout_ms: 5000 }, REPLY_MS));
      assert.equal(error.info.type, 'ProtocolError');
      assert.equal((await agent.channel.request('invoke', { request_id: 'after', event: {}, timeout_ms: 5000 })).response, 1);
    }));

  test('a frame that is not JSON gets a ProtocolError reply with id null, then the agent goes on', async () => {
    const child = spawn('python3', ['-u', agentPaths.python], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const decoder = new FrameDecoder();
      const replies: unknown[] = [];
      const twoReplies = new Promise<void>((resolve) =>
        child.stdout.on('data', (chunk: Buffer) => {
          replies.push(...decoder.push(chunk));
          if (replies.length >= 2) resolve();
        }),
      );
      const garbage = Buffer.from('{not json', 'utf8');
      const header = Buffer.alloc(4);
      header.writeUInt32BE(garbage.length, 0);
      child.stdin.write(Buffer.concat([header, garbage]));
      child.stdin.write(encodeFrame({ id: 1, type: 'ping' }));
      await twoReplies;
      const [bad, ping] = replies as Array<{ id: number | null; ok: boolean; error?: { type: string } }>;
      assert.equal(bad?.id, null);
      assert.equal(bad?.ok, false);
      assert.equal(bad?.error?.type, 'ProtocolError');
      assert.equal(ping?.id, 1);
      assert.equal(ping?.ok, true);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

// Every VM is a clone of one snapshot: the per-load `seed` must make their random values differ.
describe('python agent: per-load random seed', { timeout: 30_000 }, () => {
  const newSeed = () => randomBytes(32).toString('hex');
  const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const RANDOM_CODE = py(`
    import random, uuid
    at_load = random.random()
    def handler(event):
        return {'at_load': at_load, 'random': [random.random() for _ in range(3)], 'uuid4': str(uuid.uuid4())}
  `);

  async function draw(agent: LocalAgent, code: string, seed?: string): Promise<Record<string, unknown>> {
    const request = { code, handler: 'handler', env: {}, version: nextVersion++, ...(seed === undefined ? {} : { seed }) };
    await agent.channel.request('load', request, REPLY_MS);
    const result = await invoke(agent, null);
    assert.equal(result.status, 'success', JSON.stringify(result.error));
    return result.response as Record<string, unknown>;
  }

  async function withTwoAgents(env: Record<string, string>, fn: (a: LocalAgent, b: LocalAgent) => Promise<void>) {
    const a = startLocalAgent('python', env);
    const b = startLocalAgent('python', env);
    try {
      await fn(a, b);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  }

  test('two agents loaded with the same code and different seeds draw different values', () =>
    withTwoAgents({}, async (a, b) => {
      const [one, two] = await Promise.all([draw(a, RANDOM_CODE, newSeed()), draw(b, RANDOM_CODE, newSeed())]);
      for (const key of ['at_load', 'random', 'uuid4']) assert.notDeepEqual(one[key], two[key], `${key} is the same`);
    }));

  test('values stay well-formed; loads without a seed work; a malformed seed is a ProtocolError', () =>
    withAgent(async (agent) => {
      const code = py(`
        import random, uuid
        def handler(event):
            values = [random.random() for _ in range(10000)]
            return {'min': min(values), 'max': max(values), 'mean': sum(values) / len(values),
                    'uuids': [str(uuid.uuid4()) for _ in range(100)]}
      `);
      for (const seed of [newSeed(), undefined, newSeed().toUpperCase()]) {
        const r = (await draw(agent, code, seed)) as { min: number; max: number; mean: number; uuids: string[] };
        assert.ok(r.min >= 0 && r.max < 1, `random.random range [${r.min}, ${r.max}]`);
        assert.ok(r.mean > 0.45 && r.mean < 0.55, `random.random mean ${r.mean}`);
        for (const uuid of r.uuids) assert.match(uuid, UUID_V4);
      }
      for (const seed of ['abc', 'g'.repeat(64), ` ${newSeed().slice(1)}`, 42]) {
        const request = { code: 'def handler(event): return 1', handler: 'handler', env: {}, version: 99, seed };
        const error = await requestError(agent.channel.request('load', request as never, REPLY_MS));
        assert.equal(error.info.type, 'ProtocolError');
      }
      assert.equal((await invoke(agent, null)).version, nextVersion - 1); // the last good load still serves
    }));

  // A stand-in for VM clones: `random` seeded alike and os.urandom returning zeros in both processes. The
  // kernel reseed that makes uuid4 / os.urandom diverge in the VM cannot be simulated here; `random` can.
  test('clones with identical random state collide without a seed and differ with seeds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fnvm-clone-'));
    try {
      writeFileSync(join(dir, 'sitecustomize.py'), 'import os, random\nos.urandom = lambda n: bytes(n)\nrandom.seed(0)\n');
      await withTwoAgents({ PYTHONPATH: dir }, async (a, b) => {
        const [one, two] = await Promise.all([draw(a, RANDOM_CODE), draw(b, RANDOM_CODE)]);
        assert.deepEqual(one, two); // the problem: same state, same values (uuid4 too, with os.urandom faked)
        const [three, four] = await Promise.all([draw(a, RANDOM_CODE, newSeed()), draw(b, RANDOM_CODE, newSeed())]);
        assert.notDeepEqual(three.at_load, four.at_load);
        assert.notDeepEqual(three.random, four.random);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
