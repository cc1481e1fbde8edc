// A fleet on one machine: three `fnvm serve` processes (distinct ports and data directories) on one real
// PostgreSQL. A function created through host A is invoked through B and C (forwarded to its owner); an update
// through C is what A serves at once and reaches every host's event stream within 100 ms; GET /v1/hosts shows
// the three and what each holds, and a host's console shows a function's host; placement respects a host's
// capacity; the internal API refuses calls without the cluster secret; kill -9 of the owner during invoke and
// async traffic: the others answer 503 (never hang) until the function is placed and ready on another host,
// every acknowledged invocation has its record, every event ends as one success, and the killed host,
// restarted, serves nothing it no longer owns; SIGTERM hands a host's functions to the others first.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { availableParallelism } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { InvokeCommand, LambdaClient, ServiceException } from '@aws-sdk/client-lambda';
import { openConsole } from './support/browser.js';
import { eventually } from './support/eventually.js';
import { TestFleet } from './support/fleet.js';
import { follow, until } from './support/sse.js';

const secret = 'fleet-test-secret-0123456789abcdef';

type Answer = { status: number; body: any };

async function api(base: string, path: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Answer> {
  const response = await fetch(base + path, {
    method: init.method ?? 'GET',
    headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(init.timeoutMs ?? 30_000),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : JSON.parse(text) };
}

describe('a fleet of three hosts on one PostgreSQL', () => {
  const fleet = new TestFleet(secret);
  const { hosts } = fleet;
  const [startHost, url] = [fleet.start.bind(fleet), fleet.url.bind(fleet)];
  /** The host holding a function; undefined while it is being placed (the API answers 503 for it then). */
  const ownerOf = async (fn: string, via = 'b'): Promise<string | undefined> => {
    const { status, body } = await api(url(via), `/v1/functions/${fn}`);
    if (status === 503) return undefined;
    assert.equal(status, 200, JSON.stringify(body));
    return body.item.host_id ?? undefined;
  };

  before(async () => {
    await fleet.open();
    // No host has room for 4096 MiB (the largest function); C takes functions of 128 MiB at most, one at a time.
    await startHost('a', { FNVM_HOST_MEMORY_MB: '2048', FNVM_LOG_LEVEL: 'info' }); // its request log is read below
    await startHost('b', { FNVM_HOST_MEMORY_MB: '2048', FNVM_LOG_LEVEL: 'info' }); // and its
    await startHost('c', { FNVM_HOST_MEMORY_MB: '200' });
  });
  after(() => fleet.stop());

  test('create via A, invoke via B and C; update via C is what A serves at once; hosts list', async () => {
    const code = 'exports.handler = async (event) => ({ version: 1, n: event.n });';
    const created = await api(url('a'), '/v1/functions', { method: 'POST', body: { name: 'echo', runtime: 'node', code, memory_mb: 256 } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const item = await eventually('echo to be ready', async () => {
      const { body } = await api(url('c'), '/v1/functions/echo');
      return body.item?.state === 'ready' ? body.item : undefined;
    }, 120_000);
    assert.equal(item.host_id, 'a', 'the host that took the create had room, so it holds the function');
    for (const via of ['b', 'c', 'a']) {
      const invoked = await api(url(via), '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: via } } });
      assert.equal(invoked.status, 200, `via ${via}: ${JSON.stringify(invoked.body)}`);
      assert.deepEqual(invoked.body.response, { version: 1, n: via });
    }
    // A's request log names the client of a request B forwarded (from 127.0.0.2 here), and B.
    const fromAddress = await new Promise<number>((resolve, reject) => {
      const req = request(`${url('b')}/v1/functions/echo/invoke`, { method: 'POST', localAddress: '127.0.0.2', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume().on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject).end(JSON.stringify({ event: { n: 'logged' } }));
    });
    assert.equal(fromAddress, 200);
    const logged = await eventually("A's log of it", async () => hosts.get('a')?.output().split('\n').find((line) => line.includes('"remoteAddress":"127.0.0.2"')), 5_000);
    assert.match(logged, /"forwardedBy":"b"/);
    // The Lambda API is forwarded as well.
    const lambda = await fetch(`${url('b')}/2015-03-31/functions/echo/invocations`, { method: 'POST', body: '{"n":"lambda"}' });
    assert.equal(lambda.status, 200);
    assert.deepEqual(await lambda.json(), { version: 1, n: 'lambda' });
    assert.ok(lambda.headers.get('x-amzn-requestid'));
    // Invocations of a function whose owner B remembers are forwarded before B routes them: they are in A's log
    // (above), not in B's. Of five sent in a row (four, then a Lambda one) at most one is routed: the one that finds
    // B's memory of the owner, good for the owner's lease as looked up (>= 3 s), run out.
    const routedByB = (path: string) => (hosts.get('b')?.output() ?? '').split('\n').filter((line) => line.includes('"msg":"incoming request"') && line.includes(`"url":"${path}"`)).length;
    const routed = () => routedByB('/v1/functions/echo/invoke') + routedByB('/2015-03-31/functions/echo/invocations');
    const routedBefore = routed();
    for (let i = 0; i < 4; i++) assert.equal((await api(url('b'), '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: i } } })).status, 200);
    assert.equal((await fetch(`${url('b')}/2015-03-31/functions/echo/invocations`, { method: 'POST', body: '{}' })).status, 200);
    // A request B routes for sure: once it is in B's log, so would be the ones before it.
    assert.equal((await api(url('b'), '/v1/functions/echo?flushed')).status, 200);
    await eventually("B's log of a routed request", async () => (routedByB('/v1/functions/echo?flushed') === 1 ? true : undefined), 5_000);
    assert.ok(routed() - routedBefore <= 1, `B routed ${routed() - routedBefore} of 5 invocations`);

    // Every host's event stream sees the change, whichever host it went through.
    const streams = await Promise.all(['b', 'c'].map((via) => follow(`${url(via)}/v1/events`)));
    await until('the streams to open', () => streams.every((sse) => sse.events.some((e) => e.event === 'hello')), 10_000);
    const updated = await api(url('c'), '/v1/functions/echo', { method: 'PUT', body: { code: code.replace('version: 1', 'version: 2') } });
    const answeredAt = Date.now();
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.equal(updated.body.item.version, 2);
    const seenAt = await Promise.all(streams.map(async (sse) => {
      await until('version 2 on the stream', () => sse.events.some((e) => e.event === 'function' && JSON.parse(e.data).item.version === 2), 5_000);
      return Date.now();
    }));
    for (const sse of streams) sse.abort();
    for (const at of seenAt) assert.ok(at - answeredAt <= 100, `a change reached another host's stream ${at - answeredAt} ms after the PUT answered`);
    for (const via of ['a', 'b']) {
      const invoked = await api(url(via), '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: 0 } } });
      assert.deepEqual([invoked.body.version, invoked.body.response], [2, { version: 2, n: 0 }], `via ${via} right after the update`);
    }

    const listed = (await api(url('c'), '/v1/functions')).body.items.map((f: { name: string; host_id: string }) => [f.name, f.host_id]);
    assert.deepEqual(listed, [['echo', 'a']], 'every host lists every function');
    const view = new Map((await api(url('b'), '/v1/hosts')).body.items.map((h: { id: string }) => [h.id, h]));
    assert.deepEqual([...view.keys()].sort(), ['a', 'b', 'c']);
    for (const name of ['a', 'b', 'c']) {
      const h: any = view.get(name);
      assert.equal(h.alive, true);
      assert.equal(h.url, url(name));
      assert.equal(h.functions, name === 'a' ? 1 : 0);
    }
    assert.deepEqual((view.get('a') as any).used, { vcpu: 1, memory_mb: 256 });
    // The console of another host shows the function's host.
    const browser = await openConsole(url('c'), 20_000);
    try {
      await browser.page.goto(`/functions/${item.id}`);
      await browser.page.getByTestId('host').waitFor();
      assert.equal(await browser.page.getByTestId('host').innerText(), 'a');
      assert.deepEqual(browser.pageErrors, []);
    } finally {
      await browser.browser.close();
    }
    assert.deepEqual((view.get('c') as any).capacity, { vcpu: availableParallelism(), memory_mb: 200, max_functions: 500, max_live_vms: 64 });
  });

  test('placement respects capacity: a full host gets nothing; a function no host has room for is refused', async () => {
    const huge = await api(url('b'), '/v1/functions', { method: 'POST', body: { name: 'huge', runtime: 'node', code: 'exports.handler = async () => 0;', memory_mb: 4096 } });
    assert.equal(huge.status, 503, JSON.stringify(huge.body));
    assert.match(huge.body.error, /^no host in the fleet has room for another function of 4096 MiB/);
    assert.equal((await api(url('a'), '/v1/functions/huge')).status, 404, 'nothing stored');
    const taken = await api(url('b'), '/v1/functions', { method: 'POST', body: { name: 'echo', runtime: 'node', code: 'exports.handler = async () => 0;', memory_mb: 4096 } });
    assert.equal(taken.status, 409, 'a name already taken is the answer, not a 503 to retry');

    // Through C, which has room for neither: another host takes them.
    const big = await api(url('c'), '/v1/functions', { method: 'POST', body: { name: 'big', runtime: 'node', code: 'exports.handler = async () => 1;', memory_mb: 256 } });
    assert.equal(big.status, 200);
    const owner = await eventually('big to be placed', () => ownerOf('big'), 30_000);
    assert.notEqual(owner, 'c');
    const small = await api(url('c'), '/v1/functions', { method: 'POST', body: { name: 'small', runtime: 'node', code: 'exports.handler = async () => 2;', memory_mb: 128 } });
    assert.equal(small.status, 200);
    assert.equal(await eventually('small to be placed', () => ownerOf('small'), 30_000), 'c', 'C has room for 128 MiB');
    const more = await api(url('c'), '/v1/functions', { method: 'POST', body: { name: 'more', runtime: 'node', code: 'exports.handler = async () => 3;', memory_mb: 128 } });
    assert.equal(more.status, 200);
    assert.notEqual(await eventually('more to be placed', () => ownerOf('more'), 30_000), 'c', 'C is full');
    for (const name of ['big', 'small', 'more']) {
      await eventually(`${name} to be ready`, async () => ((await api(url('a'), `/v1/functions/${name}`)).body.item?.state === 'ready' ? true : undefined), 120_000);
      assert.equal((await api(url('b'), `/v1/functions/${name}/invoke`, { method: 'POST', body: { event: {} } })).status, 200);
      assert.equal((await api(url('a'), `/v1/functions/${name}`, { method: 'DELETE' })).status, 200);
    }
  });

  test('the internal API refuses calls without the cluster secret', async () => {
    assert.equal((await api(url('a'), '/internal/v1/host')).status, 401);
    assert.equal((await api(url('a'), '/internal/v1/host', { headers: { 'x-fnvm-cluster-secret': `${secret}x` } })).status, 401);
    const ok = await api(url('a'), '/internal/v1/host', { headers: { 'x-fnvm-cluster-secret': secret } });
    assert.equal(ok.status, 200);
    assert.deepEqual([ok.body.id, ok.body.state], ['a', 'member']);
    // A client cannot pass for a host that forwarded its request.
    const forged = await api(url('b'), '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: 'f' } }, headers: { 'x-fnvm-forwarded-by': 'a', 'x-fnvm-cluster-secret': 'wrong' } });
    assert.equal(forged.status, 200);
  });

  test('kill -9 of the owner during invoke traffic: 503s, then served elsewhere; no acknowledged record lost; back, it serves nothing twice', async () => {
    assert.equal(await ownerOf('echo'), 'a');
    // Asynchronous events queued on A as well: taken over with the function, each run to one success.
    const slow = 'exports.handler = async (event) => { await new Promise((r) => setTimeout(r, 300)); return event.n; };';
    assert.equal((await api(url('a'), '/v1/functions', { method: 'POST', body: { name: 'slowq', runtime: 'node', code: slow, timeout_seconds: 2, max_concurrency: 2 } })).status, 200);
    await eventually('slowq to be ready on A', async () => ((await api(url('a'), '/v1/functions/slowq')).body.item?.state === 'ready' ? true : undefined), 120_000);
    assert.equal(await ownerOf('slowq'), 'a');
    const events: string[] = [];
    for (let n = 0; n < 30; n++) {
      const accepted = await api(url('b'), '/v1/functions/slowq/invoke', { method: 'POST', body: { event: { n } }, headers: { prefer: 'respond-async' } });
      assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
      events.push(accepted.body.request_id);
    }
    const acknowledged: string[] = [];
    const statuses = new Map<number, number>();
    let firstFailureAt = 0;
    let servedAgainAt = 0;
    let killedAt = 0;
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const started = Date.now();
        const answer = await api(url('b'), '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: 1 } }, timeoutMs: 20_000 })
          .catch((error: Error) => ({ status: 0, body: { error: error.message } }));
        assert.ok(Date.now() - started < 20_000, 'no request hangs');
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status === 200) {
          acknowledged.push(answer.body.request_id);
          if (killedAt > 0 && firstFailureAt > 0 && servedAgainAt === 0) servedAgainAt = Date.now();
        } else {
          assert.equal(answer.status, 503, JSON.stringify(answer.body));
          assert.match(answer.body.error, /unreachable|being placed/);
          if (firstFailureAt === 0) firstFailureAt = Date.now();
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    })();
    await eventually('some invocations through B', async () => (acknowledged.length >= 20 ? true : undefined));
    const a = hosts.get('a');
    a?.process.kill('SIGKILL');
    killedAt = Date.now();
    await a?.exited;
    // A Lambda client meanwhile gets the Lambda API's error: a ServiceException (the SDKs retry it), not fnvm's shape.
    const lambda = new LambdaClient({ endpoint: url('c'), region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'anything' }, maxAttempts: 1 });
    const refused = await lambda.send(new InvokeCommand({ FunctionName: 'echo', Payload: Buffer.from('{"n":1}') })).then(() => undefined, (error: unknown) => error);
    lambda.destroy();
    assert.ok(refused instanceof ServiceException, `a ServiceException, not ${String(refused)}`);
    assert.equal(refused.$metadata.httpStatusCode, 503);
    assert.match(refused.message, /^host a at .* is unreachable/, 'its lease still runs: the forward is what fails');
    await eventually('echo to be served again', async () => (servedAgainAt > 0 ? true : undefined), 60_000);
    await eventually('a few more invocations', async () => (acknowledged.length >= 40 ? true : undefined));
    stop = true;
    await traffic;
    const outage = servedAgainAt - killedAt;
    process.stderr.write(`[fleet] served again ${outage} ms after the kill; answers ${JSON.stringify([...statuses])}\n`);
    assert.ok(outage < 15_000, `served again ${outage} ms after the kill`);
    const owner = await ownerOf('echo');
    assert.ok(owner === 'b' || owner === 'c', `now held by ${owner}`);

    const records: Array<{ request_id: string }> = (await api(url('c'), '/v1/functions/echo/logs?limit=1000')).body.items;
    const stored = new Set(records.map((r) => r.request_id));
    for (const id of acknowledged) assert.ok(stored.has(id), `acknowledged invocation ${id} has its record`);
    assert.equal(new Set(acknowledged).size, acknowledged.length);
    // Every event ran to exactly one success, wherever it ran, within its attempts.
    await eventually('slowq\'s queue to drain on its new host', async () => ((await api(url('b'), '/v1/functions/slowq/queue')).body.queued === 0 ? true : undefined), 90_000);
    const attempts: Array<{ request_id: string; status: string; attempt: number; invoked_at: string }> = (await api(url('b'), '/v1/functions/slowq/logs?limit=1000')).body.items;
    for (const id of events) {
      const mine = attempts.filter((r) => r.request_id === id);
      assert.equal(mine.filter((r) => r.status === 'success').length, 1, `event ${id}: ${JSON.stringify(mine)}`);
      assert.ok(mine.every((r) => r.attempt <= 3));
    }
    assert.ok(attempts.length >= events.length);
    assert.ok(attempts.some((r) => Date.parse(r.invoked_at) > killedAt), 'the new host ran what A left');
    assert.ok(attempts.some((r) => Date.parse(r.invoked_at) < killedAt), 'A ran some before it died');
    assert.notEqual(await ownerOf('slowq'), 'a');

    // The killed host comes back under a new generation: it holds nothing, and serves echo by forwarding it.
    const back = await startHost('a');
    const self = await api(back.url, '/internal/v1/host', { headers: { 'x-fnvm-cluster-secret': secret } });
    assert.equal(self.body.functions, 0);
    assert.ok(self.body.generation >= 2);
    const invoked = await api(back.url, '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: 'back' } } });
    assert.deepEqual([invoked.status, invoked.body.response], [200, { version: 2, n: 'back' }]);
    assert.equal(await ownerOf('echo'), owner, 'the owner did not change back');
  });

  test('SIGTERM drains: the host hands its functions to the others before it exits', async () => {
    const host = (await ownerOf('echo', 'a')) ?? assert.fail('echo has an owner');
    const other = ['a', 'b', 'c'].find((name) => name !== host) ?? 'a';
    const leaving = hosts.get(host) ?? assert.fail(`no host ${host}`);
    leaving.process.kill('SIGTERM');
    assert.equal(await leaving.exited, 0, leaving.output());
    const next = await ownerOf('echo', other);
    assert.ok(next !== undefined && next !== host, `owned by ${next} once ${host} has exited`);
    const invoked = await api(url(other), '/v1/functions/echo/invoke', { method: 'POST', body: { event: { n: 'drained' } } });
    assert.deepEqual([invoked.status, invoked.body.response], [200, { version: 2, n: 'drained' }], JSON.stringify(invoked.body));
    const view = (await api(url(other), '/v1/hosts')).body.items.find((h: { id: string }) => h.id === host);
    assert.deepEqual([view.alive, view.functions], [false, 0]);
  });
});
