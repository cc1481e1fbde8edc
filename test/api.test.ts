// The Functions API of functions-api.md over real HTTP, real SQLite and real microVMs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { liveProcessCount } from '../src/vm/processes.js';
import { startTestServer, waitForState, type TestServer } from './support/server.js';

const nodeCode =
  'async function handler(event) { return { message: "Hello from Node.js!", timestamp: new Date().toISOString(), input: event }; }';
const pythonCode = [
  'def handler(event):',
  "    name = event.get('name')",
  "    value = event.get('value')",
  "    return {'message': f'Hello, {name}!', 'value': value * 2, 'timestamp': str(datetime.now())}",
].join('\n');

let fnvm: TestServer;

before(async () => {
  fnvm = await startTestServer();
});

after(async () => {
  await fnvm.stop();
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
});

async function deploy(body: Record<string, unknown>): Promise<any> {
  const created = await fnvm.api('/v1/functions', { method: 'POST', body });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  return waitForState(fnvm, created.body.id);
}

describe('the documented workflow', () => {
  test('curl examples: create, get, list, update, invoke, logs, delete (node)', async () => {
    const created = await fnvm.api('/v1/functions', {
      method: 'POST',
      body: { name: 'hello-nodejs', runtime: 'node', handler: 'handler', code: nodeCode, vcpu: 1, memory_mb: 256 },
    });
    assert.equal(created.status, 200);
    assert.deepEqual(Object.keys(created.body), ['id']);
    const id = created.body.id as string;
    assert.match(id, /^[0-9a-f-]{36}$/);

    const item = await waitForState(fnvm, id);
    assert.equal(item.state, 'ready', item.error);
    for (const field of ['id', 'name', 'runtime', 'code', 'handler', 'timeout_seconds', 'memory_mb', 'vcpu', 'vm_id',
      'guest_ip', 'port', 'state', 'created_at', 'updated_at', 'last_invoked_at', 'env_vars', 'version', 'error']) {
      assert.ok(field in item, `GET item has ${field}`);
    }
    assert.equal(item.timeout_seconds, 30);
    assert.equal(item.version, 1);
    assert.equal(item.last_invoked_at, null);
    assert.ok(item.vm_id);

    const list = await fnvm.api('/v1/functions');
    assert.ok(list.body.items.some((f: any) => f.id === id && f.state === 'ready'));

    const invoked = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event: { name: 'World', test: 123 } } });
    assert.equal(invoked.status, 200);
    assert.deepEqual(Object.keys(invoked.body).slice(0, 5), ['request_id', 'status', 'duration_ms', 'response', 'logs']);
    assert.equal(invoked.body.status, 'success');
    assert.equal(invoked.body.response.message, 'Hello from Node.js!');
    assert.deepEqual(invoked.body.response.input, { name: 'World', test: 123 });
    assert.deepEqual(invoked.body.logs, []);

    const updated = await fnvm.api(`/v1/functions/${id}`, {
      method: 'PUT',
      body: { code: 'async function handler(event) { return { message: "UPDATED CODE!", version: 2, input: event }; }' },
    });
    assert.equal(updated.status, 200);
    assert.equal(updated.body.item.state, 'ready');
    assert.equal(updated.body.item.version, 2);
    const again = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event: { name: 'World' } } });
    assert.deepEqual(again.body.response, { message: 'UPDATED CODE!', version: 2, input: { name: 'World' } });

    const logs = await fnvm.api(`/v1/functions/${id}/logs?limit=50`);
    assert.equal(logs.status, 200);
    assert.equal(logs.body.items.length, 2);
    assert.equal(logs.body.items[0].request_id, again.body.request_id, 'newest first');
    for (const field of ['id', 'function_id', 'status', 'duration_ms', 'request_id', 'invoked_at']) {
      assert.ok(field in logs.body.items[0], `log item has ${field}`);
    }
    const got = await fnvm.api(`/v1/functions/${id}`);
    assert.equal(got.body.item.last_invoked_at, logs.body.items[0].invoked_at);

    const deleted = await fnvm.api(`/v1/functions/${id}`, { method: 'DELETE' });
    assert.equal(deleted.status, 200);
    assert.deepEqual(deleted.body, { message: 'Function deleted' });
    assert.equal((await fnvm.api(`/v1/functions/${id}`)).status, 404);
    assert.equal((await fnvm.api(`/v1/functions/${id}/logs`)).status, 404);
  });

  for (const runtime of ['node', 'python'] as const) {
    test(`frontend integration example (${runtime})`, async () => {
      const code = runtime === 'node'
        ? 'async function handler(event) { return { message: "Hello!", input: event }; }'
        : pythonCode;
      const id = (await fnvm.api('/v1/functions', {
        method: 'POST', body: { name: `fe-${runtime}`, runtime, handler: 'handler', code, vcpu: 1, memory_mb: 256 },
      })).body.id;
      const item = await waitForState(fnvm, id);
      assert.equal(item.state, 'ready');
      const result = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event: { name: 'World', value: 123 } } });
      if (runtime === 'node') assert.deepEqual(result.body.response, { message: 'Hello!', input: { name: 'World', value: 123 } });
      else assert.equal(result.body.response.value, 246);
      const newCode = runtime === 'node'
        ? 'async function handler(event) { return { message: "Updated!", version: 2 }; }'
        : "def handler(event):\n    return {'message': 'Updated!', 'version': 2}";
      await fnvm.api(`/v1/functions/${id}`, { method: 'PUT', body: { code: newCode } });
      const result2 = await fnvm.api(`/v1/functions/${id}/invoke`, { method: 'POST', body: { event: {} } });
      assert.deepEqual(result2.body.response, { message: 'Updated!', version: 2 });
      await fnvm.api(`/v1/functions/${id}`, { method: 'DELETE' });
    });
  }
});

describe('errors', () => {
  const valid = { name: 'valid', runtime: 'node', code: nodeCode };
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['missing name', { runtime: 'node', code: 'x' }, 400, /name/],
    ['missing code', { name: 'a', runtime: 'node' }, 400, /code/],
    ['unknown runtime', { ...valid, runtime: 'ruby' }, 400, /unknown runtime/],
    ['vcpu too high', { ...valid, vcpu: 9 }, 400, /vcpu/],
    ['vcpu as a string', { ...valid, vcpu: '2' }, 400, /vcpu/],
    ['memory too small', { ...valid, memory_mb: 64 }, 400, /memory_mb/],
    ['timeout zero', { ...valid, timeout_seconds: 0 }, 400, /timeout_seconds/],
    ['bad handler name', { ...valid, handler: 'not a name' }, 400, /handler/],
    ['bad env var', { ...valid, env_vars: { 'A-B': 'x' } }, 400, /env_vars/],
    ['env var not a string', { ...valid, env_vars: { A: 1 } }, 400, /env_vars/],
    ['empty code', { ...valid, code: '  ' }, 400, /code/],
    ['body not an object', [1, 2], 400, /object/],
  ];
  for (const [label, body, status, message] of cases) {
    test(`create: ${label} -> ${status}`, async () => {
      const response = await fnvm.api('/v1/functions', { method: 'POST', body });
      assert.equal(response.status, status, JSON.stringify(response.body));
      assert.match(response.body.error, message);
    });
  }

  test('malformed JSON is a 400 with {"error"}', async () => {
    const response = await fnvm.api('/v1/functions', { method: 'POST', raw: '{"name": ' });
    assert.equal(response.status, 400);
    assert.equal(typeof response.body.error, 'string');
  });

  test('a body over 6 MB is a 413, also on create and update (their larger limit is for packages)', async () => {
    const response = await fnvm.api('/v1/functions', { method: 'POST', body: { ...valid, code: 'x'.repeat(7 * 1024 * 1024) } });
    assert.equal(response.status, 413);
    assert.equal(typeof response.body.error, 'string');
    const padded = await fnvm.api('/v1/functions', { method: 'POST', body: { ...valid, name: 'padded', padding: 'x'.repeat(7 * 1024 * 1024) } });
    assert.equal(padded.status, 413, JSON.stringify(padded.body));
    assert.match(padded.body.error, /without a package/);
    const list = (await fnvm.api('/v1/functions')).body.items;
    assert.ok(!list.some((f: { name: string }) => f.name === 'padded'), 'nothing was created');
    const put = await fnvm.api('/v1/functions/padded', { method: 'PUT', body: { padding: 'x'.repeat(7 * 1024 * 1024) } });
    assert.equal(put.status, 413, JSON.stringify(put.body));
  });

  test('unknown ids are 404 on every endpoint', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    for (const [method, path] of [['GET', ''], ['PUT', ''], ['DELETE', ''], ['POST', '/invoke'], ['GET', '/logs']] as const) {
      const response = await fnvm.api(`/v1/functions/${missing}${path}`, { method, body: method === 'GET' || method === 'DELETE' ? undefined : {} });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.match(response.body.error, /not found/);
    }
    assert.equal((await fnvm.api('/v1/nothing')).status, 404);
  });

  test('runtime aliases are normalised; names are unique and usable as ids', async () => {
    const first = await deploy({ name: 'alias-node', runtime: 'nodejs', code: 'exports.handler = () => 1' });
    assert.equal(first.runtime, 'node');
    const duplicate = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'alias-node', runtime: 'node', code: 'x' } });
    assert.equal(duplicate.status, 409);
    const second = await deploy({ name: 'alias-python', runtime: 'python3', code: 'def handler(e):\n    return 2' });
    assert.equal(second.runtime, 'python');
    assert.equal((await fnvm.api('/v1/functions/alias-python')).body.item.id, second.id);
    assert.equal((await fnvm.api('/v1/functions/alias-node/invoke', { method: 'POST', body: { event: {} } })).body.response, 1);
    const rename = await fnvm.api(`/v1/functions/${second.id}`, { method: 'PUT', body: { name: 'alias-node' } });
    assert.equal(rename.status, 409);
    await fnvm.api('/v1/functions/alias-node', { method: 'DELETE' });
    await fnvm.api('/v1/functions/alias-python', { method: 'DELETE' });
  });

  test('a syntax error or a missing handler puts the function in error, and invoking it is a 409', async () => {
    const broken = await deploy({ name: 'broken', runtime: 'node', code: 'function handler( {' });
    assert.equal(broken.state, 'error');
    assert.match(broken.error, /SyntaxError/);
    assert.equal(broken.vm_id, null);
    const invoked = await fnvm.api('/v1/functions/broken/invoke', { method: 'POST', body: { event: {} } });
    assert.equal(invoked.status, 409);
    assert.match(invoked.body.error, /SyntaxError/);
    const missing = await deploy({ name: 'no-handler', runtime: 'python', code: 'def other(event):\n    return 1' });
    assert.equal(missing.state, 'error');
    assert.match(missing.error, /HandlerNotFound/);

    // Fixing the code redeploys it.
    const fixed = await fnvm.api('/v1/functions/broken', { method: 'PUT', body: { code: 'function handler() { return "fixed"; }' } });
    assert.equal(fixed.status, 200);
    assert.equal((await waitForState(fnvm, broken.id)).state, 'ready');
    assert.equal((await fnvm.api('/v1/functions/broken/invoke', { method: 'POST', body: {} })).body.response, 'fixed');
    await fnvm.api('/v1/functions/broken', { method: 'DELETE' });
    await fnvm.api('/v1/functions/no-handler', { method: 'DELETE' });
  });

  test('an update whose code does not load is a 400 and changes nothing', async () => {
    const fn = await deploy({ name: 'keeps-old', runtime: 'node', code: 'exports.handler = () => "old"' });
    const bad = await fnvm.api('/v1/functions/keeps-old', { method: 'PUT', body: { code: 'exports.handler = (' } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /SyntaxError/);
    const item = (await fnvm.api('/v1/functions/keeps-old')).body.item;
    assert.equal(item.version, fn.version);
    assert.equal(item.code, 'exports.handler = () => "old"');
    assert.equal((await fnvm.api('/v1/functions/keeps-old/invoke', { method: 'POST', body: {} })).body.response, 'old');
    await fnvm.api('/v1/functions/keeps-old', { method: 'DELETE' });
  });
});

describe('invocations', () => {
  test('handler errors are reported with type, message and stack', async () => {
    await deploy({ name: 'thrower', runtime: 'node', code: 'exports.handler = () => { console.log("before"); throw new RangeError("too far"); }' });
    const result = await fnvm.api('/v1/functions/thrower/invoke', { method: 'POST', body: { event: {} } });
    assert.equal(result.status, 200);
    assert.equal(result.body.status, 'error');
    assert.equal(result.body.error.type, 'RangeError');
    assert.equal(result.body.error.message, 'too far');
    assert.match(result.body.error.stack, /too far/);
    assert.deepEqual(result.body.logs, ['before']);
    const logs = await fnvm.api('/v1/functions/thrower/logs');
    assert.equal(logs.body.items[0].status, 'error');
    assert.equal(logs.body.items[0].error.type, 'RangeError');
    assert.deepEqual(logs.body.items[0].logs, ['before']);
    await fnvm.api('/v1/functions/thrower', { method: 'DELETE' });
  });

  test('a handler that overruns timeout_seconds ends as timeout and the function keeps working', async () => {
    await deploy({
      name: 'sleeper', runtime: 'node', timeout_seconds: 1,
      code: 'exports.handler = (e) => e.hang ? new Promise(() => {}) : "awake"',
    });
    const started = Date.now();
    const hung = await fnvm.api('/v1/functions/sleeper/invoke', { method: 'POST', body: { event: { hang: true } } });
    assert.equal(hung.body.status, 'timeout');
    assert.ok(Date.now() - started < 2000 + 1000, 'within timeout_seconds + 1 s');
    const next = await fnvm.api('/v1/functions/sleeper/invoke', { method: 'POST', body: { event: {} } });
    assert.equal(next.body.status, 'success');
    assert.equal(next.body.response, 'awake');
    await fnvm.api('/v1/functions/sleeper', { method: 'DELETE' });
  });

  test('logs pagination: newest first, limit and offset, bad values are 400', async () => {
    await deploy({ name: 'pager', runtime: 'node', code: 'exports.handler = (e) => e.n' });
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) {
      ids.push((await fnvm.api('/v1/functions/pager/invoke', { method: 'POST', body: { event: { n } } })).body.request_id);
    }
    const page1 = await fnvm.api('/v1/functions/pager/logs?limit=2');
    const page2 = await fnvm.api('/v1/functions/pager/logs?limit=2&offset=2');
    const page3 = await fnvm.api('/v1/functions/pager/logs?limit=2&offset=4');
    assert.deepEqual(
      [...page1.body.items, ...page2.body.items, ...page3.body.items].map((i: any) => i.request_id),
      ids.reverse(),
    );
    assert.equal((await fnvm.api('/v1/functions/pager/logs')).body.items.length, 5);
    assert.equal(page2.body.total, 5);
    for (const bad of ['limit=0', 'limit=abc', 'offset=-1', 'limit=100000']) {
      assert.equal((await fnvm.api(`/v1/functions/pager/logs?${bad}`)).status, 400, bad);
    }
    await fnvm.api('/v1/functions/pager', { method: 'DELETE' });
  });

  test('hot reload under concurrent invoke load: zero failed invocations', async () => {
    const fn = await deploy({ name: 'reloader', runtime: 'node', code: 'exports.handler = () => 1' });
    let stop = false;
    const seen: number[] = [];
    const failures: unknown[] = [];
    const worker = async () => {
      while (!stop) {
        const r = await fnvm.api('/v1/functions/reloader/invoke', { method: 'POST', body: { event: {} } });
        if (r.status !== 200 || r.body.status !== 'success') failures.push(r.body);
        else seen.push(r.body.response);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    for (let v = 2; v <= 6; v++) {
      const put = await fnvm.api('/v1/functions/reloader', { method: 'PUT', body: { code: `exports.handler = () => ${v}` } });
      assert.equal(put.status, 200);
      assert.equal(put.body.item.version, fn.version + v - 1);
      const after = await fnvm.api('/v1/functions/reloader/invoke', { method: 'POST', body: {} });
      assert.equal(after.body.response, v, 'the update is live when PUT returns');
    }
    // A memory change moves the function to a new VM while the load continues.
    const moved = await fnvm.api('/v1/functions/reloader', { method: 'PUT', body: { memory_mb: 384 } });
    assert.equal(moved.status, 200);
    assert.notEqual(moved.body.item.vm_id, fn.vm_id);
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures, []);
    assert.ok(seen.length > 20, `invocations ran during the updates (${seen.length})`);
    assert.equal((await fnvm.api('/v1/functions/reloader/invoke', { method: 'POST', body: {} })).body.response, 6);
    await fnvm.api('/v1/functions/reloader', { method: 'DELETE' });
  });

  test('deleting during deploy leaves nothing behind', async () => {
    const before = liveProcessCount();
    const { body } = await fnvm.api('/v1/functions', { method: 'POST', body: { name: 'short-lived', runtime: 'python', code: 'def handler(e):\n    return 1' } });
    const deleted = await fnvm.api(`/v1/functions/${body.id}`, { method: 'DELETE' });
    assert.equal(deleted.status, 200);
    assert.equal((await fnvm.api(`/v1/functions/${body.id}`)).status, 404);
    assert.ok(!(await fnvm.api('/v1/functions')).body.items.some((f: any) => f.id === body.id));
    await fnvm.server.pool.settled();
    await new Promise((resolve) => setTimeout(resolve, 1500)); // any VM the deploy still obtained is stopped
    assert.ok(liveProcessCount() <= before, `no VM left for the deleted function (${liveProcessCount()} > ${before})`);
  });
});

describe('server', () => {
  test('health reports the accelerator, pool and images', async () => {
    const { body } = await fnvm.api('/v1/health');
    assert.ok(['kvm', 'tcg'].includes(body.accelerator));
    assert.equal(typeof body.pool, 'object');
    assert.ok(body.images.kernel);
  });

  test('CORS: localhost origins get preflight answers, others do not', async () => {
    const allowed = await fetch(`${fnvm.url}/v1/functions`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.equal(allowed.status, 204);
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://localhost:5173');
    const foreign = await fetch(`${fnvm.url}/v1/functions`, { headers: { origin: 'https://evil.example' } });
    assert.equal(foreign.headers.get('access-control-allow-origin'), null);
  });

  test('a restart keeps every function and its history, and redeploys it', async () => {
    const fn = await deploy({ name: 'survivor', runtime: 'python', code: "def handler(e):\n    return {'ok': True}" });
    const invoked = await fnvm.api('/v1/functions/survivor/invoke', { method: 'POST', body: {} });
    await fnvm.stop({ keepData: true });
    fnvm = await startTestServer({ dataDir: fnvm.dataDir });
    const item = await waitForState(fnvm, fn.id);
    assert.equal(item.state, 'ready');
    assert.equal(item.version, fn.version);
    const logs = await fnvm.api('/v1/functions/survivor/logs');
    assert.equal(logs.body.items[0].request_id, invoked.body.request_id);
    assert.deepEqual((await fnvm.api('/v1/functions/survivor/invoke', { method: 'POST', body: {} })).body.response, { ok: true });
  });
});
