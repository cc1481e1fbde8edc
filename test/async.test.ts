// Asynchronous invocations on real VMs: `Prefer: respond-async` over /v1 and Event over the Lambda API (the real
// SDK) answer 202 and run the event; a failing one is attempted 1 + retries times with the policy's delays, every
// attempt a record with the same request_id and its number, then becomes a dead letter with its error, which a
// redrive runs again (once, even when asked twice at once); discard; errors kept bounded; the depth limit (429,
// counting events still committing), the size limit (413), the age cutoff; async work stays within its share of
// max_concurrency while synchronous invocations keep being served; the event invoke config.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  GetFunctionEventInvokeConfigCommand, InvokeCommand, LambdaClient, PutFunctionEventInvokeConfigCommand,
} from '@aws-sdk/client-lambda';
import { eventually } from './support/eventually.js';
import { parseExposition } from './support/prometheus.js';
import { deployReady, startTestServer, type TestServer } from './support/server.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const retryDelayMs = 250;
const flaky = `exports.handler = async (event) => {
  console.log('attempt for', event.n);
  if (event.sleepMs) await new Promise((r) => setTimeout(r, event.sleepMs));
  if (event.fail) throw new Error('failing on purpose: ' + event.n);
  return { n: event.n };
};`;

type Item = { request_id: string; attempt: number; async: boolean; status: string; invoked_at: string; duration_ms: number; error: { message: string } | null };

describe('asynchronous invocations', () => {
  let fnvm: TestServer;

  const enqueue = (fn: string, event: unknown) =>
    fnvm.api(`/v1/functions/${fn}/invoke`, { method: 'POST', body: { event }, headers: { prefer: 'respond-async' } });
  const recordsOf = async (fn: string, requestId: string): Promise<Item[]> =>
    ((await fnvm.api(`/v1/functions/${fn}/logs?limit=1000`)).body.items as Item[]).filter((i) => i.request_id === requestId).reverse();
  const queue = async (fn: string) => (await fnvm.api(`/v1/functions/${fn}/queue`)).body;
  const settled = (fn: string) => eventually(`${fn}'s queue to drain`, async () => ((await queue(fn)).queued === 0 ? true : undefined));

  before(async () => {
    fnvm = await startTestServer({ asyncRetryDelayMs: retryDelayMs });
    await deployReady(fnvm, { name: 'flaky', runtime: 'node', code: flaky });
  });
  after(async () => {
    await fnvm?.stop();
  });

  test('an accepted event runs once, as attempt 1, and succeeds', async () => {
    const accepted = await enqueue('flaky', { n: 1 });
    assert.equal(accepted.status, 202);
    assert.equal(accepted.body.status, 'queued');
    assert.match(accepted.body.request_id, /^[0-9a-f-]{36}$/);
    await settled('flaky');
    await new Promise((resolve) => setTimeout(resolve, 3 * retryDelayMs)); // time for a wrong second run to show
    const records = await recordsOf('flaky', accepted.body.request_id);
    assert.deepEqual(records.map((r) => [r.attempt, r.async, r.status]), [[1, true, 'success']]);
    assert.deepEqual((await fnvm.api('/v1/functions/flaky/dead-letters')).body, { items: [], total: 0 });
  });

  test('a failing event: 3 attempts with the retry delays, then a dead letter; a redrive after a fix succeeds', async () => {
    const accepted = await enqueue('flaky', { n: 2, fail: true });
    const { request_id } = accepted.body;
    const dead = await eventually('a dead letter', async () => {
      const { body } = await fnvm.api('/v1/functions/flaky/dead-letters');
      return body.total === 1 ? body : undefined;
    });
    const records = await recordsOf('flaky', request_id);
    assert.deepEqual(records.map((r) => [r.attempt, r.async, r.status]), [[1, true, 'error'], [2, true, 'error'], [3, true, 'error']]);
    // Attempt k+1 starts at least the k-th delay (250 ms, then 500 ms) after attempt k ended.
    for (let k = 1; k < 3; k++) {
      const previous = records[k - 1]!;
      const ended = Date.parse(previous.invoked_at) + previous.duration_ms;
      const gap = Date.parse(records[k]!.invoked_at) - ended;
      assert.ok(gap >= retryDelayMs * 2 ** (k - 1) - 5, `attempt ${k + 1} began ${gap} ms after attempt ${k} ended`);
    }
    assert.equal(dead.items.length, 1);
    const letter = dead.items[0];
    assert.equal(letter.request_id, request_id);
    assert.deepEqual(letter.event, { n: 2, fail: true });
    assert.equal(letter.attempts, 3);
    assert.equal(letter.reason, 'RetriesExhausted');
    assert.deepEqual(letter.error, { type: 'Error', message: 'failing on purpose: 2' });
    assert.deepEqual(await queue('flaky'), { queued: 0, running: 0, dead_letters: 1, oldest_queued_at: null });

    // Fixed code, then a redrive: the same event runs again as attempt 4 and succeeds.
    const fixed = await fnvm.api('/v1/functions/flaky', { method: 'PUT', body: { code: flaky.replace("if (event.fail) throw new Error('failing on purpose: ' + event.n);", '') } });
    assert.equal(fixed.status, 200);
    const redriven = await fnvm.api('/v1/functions/flaky/dead-letters/redrive', { method: 'POST', body: {} });
    assert.deepEqual(redriven.body, { redriven: 1 });
    await settled('flaky');
    const after = await recordsOf('flaky', request_id);
    assert.deepEqual(after.map((r) => [r.attempt, r.status]), [[1, 'error'], [2, 'error'], [3, 'error'], [4, 'success']]);
    assert.deepEqual((await fnvm.api('/v1/functions/flaky/dead-letters')).body, { items: [], total: 0 });
    await fnvm.api('/v1/functions/flaky', { method: 'PUT', body: { code: flaky } });
  });

  test('retries 0 means one attempt; discard deletes a dead letter; named redrive; bad settings and payloads', async () => {
    const set = await fnvm.api('/v1/functions/flaky', { method: 'PUT', body: { async_max_retries: 0 } });
    assert.equal(set.status, 200);
    assert.equal(set.body.item.async_max_retries, 0);
    assert.ok(Math.abs(Date.parse(set.body.item.async_configured_at) - Date.now()) < 10_000);
    const a = (await enqueue('flaky', { n: 3, fail: true })).body.request_id;
    const b = (await enqueue('flaky', { n: 4, fail: true })).body.request_id;
    await eventually('two dead letters', async () => ((await queue('flaky')).dead_letters === 2 ? true : undefined));
    for (const id of [a, b]) assert.deepEqual((await recordsOf('flaky', id)).map((r) => r.attempt), [1]);

    assert.equal((await fnvm.api(`/v1/functions/flaky/dead-letters/${a}`, { method: 'DELETE' })).status, 200);
    assert.equal((await fnvm.api(`/v1/functions/flaky/dead-letters/${a}`, { method: 'DELETE' })).status, 404);
    const named = await fnvm.api('/v1/functions/flaky/dead-letters/redrive', { method: 'POST', body: { request_ids: [b, 'not-a-dead-letter'] } });
    assert.deepEqual(named.body, { redriven: 1 });
    await eventually('the redriven one to fail again', async () => ((await recordsOf('flaky', b)).length === 2 ? true : undefined));
    assert.deepEqual((await recordsOf('flaky', b)).map((r) => r.attempt), [1, 2]);
    await eventually('it to be a dead letter again', async () => ((await queue('flaky')).dead_letters === 1 ? true : undefined));
    // Two redrives at once requeue the letter once: it runs once more, as attempt 3.
    const both = await Promise.all([1, 2].map(() => fnvm.api('/v1/functions/flaky/dead-letters/redrive', { method: 'POST', body: {} })));
    assert.deepEqual(both.map((r) => r.body.redriven).sort(), [0, 1]);
    await eventually('a dead letter once more', async () => ((await recordsOf('flaky', b)).length === 3 && (await queue('flaky')).dead_letters === 1 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 3 * retryDelayMs)); // time for a wrong extra run to show
    assert.deepEqual((await recordsOf('flaky', b)).map((r) => r.attempt), [1, 2, 3]);
    assert.deepEqual(await queue('flaky'), { queued: 0, running: 0, dead_letters: 1, oldest_queued_at: null });
    // A dead letter keeps a bounded error: user code chose it.
    const long = (await enqueue('flaky', { n: 'y'.repeat(5000), fail: true })).body.request_id;
    const letter = await eventually('the long error\'s dead letter', async () =>
      ((await fnvm.api('/v1/functions/flaky/dead-letters')).body.items as { request_id: string; error: { message: string } }[]).find((l) => l.request_id === long));
    assert.equal(letter.error.message, `failing on purpose: ${'y'.repeat(5000)}`.slice(0, 1024) + '... [truncated]');
    assert.equal((await fnvm.api(`/v1/functions/flaky/dead-letters/${long}`, { method: 'DELETE' })).status, 200);
    // Ten dead letters of 1 MB: a page stops early past its byte budget; the next page (by offset) has the rest.
    const big = await Promise.all(Array.from({ length: 10 }, (_, n) => enqueue('flaky', { n, fail: true, blob: String(n).repeat(1_000_000) })));
    await eventually('eleven dead letters', async () => ((await queue('flaky')).dead_letters === 11 ? true : undefined));
    type Letter = { request_id: string; event: { n?: number; blob?: string } };
    const first = (await fnvm.api('/v1/functions/flaky/dead-letters?limit=100')).body as { items: Letter[]; total: number };
    assert.equal(first.total, 11);
    assert.ok(first.items.length > 0 && first.items.length < 11, `a first page of ${first.items.length}`);
    const rest = (await fnvm.api(`/v1/functions/flaky/dead-letters?limit=100&offset=${first.items.length}`)).body as { items: Letter[] };
    const letters = [...first.items, ...rest.items];
    assert.deepEqual(letters.map((l) => l.request_id).sort(), [b, ...big.map((r) => r.body.request_id as string)].sort());
    for (const l of letters) if (l.request_id !== b) assert.equal(l.event.blob, String(l.event.n).repeat(1_000_000));
    for (const r of big) assert.equal((await fnvm.api(`/v1/functions/flaky/dead-letters/${r.body.request_id}`, { method: 'DELETE' })).status, 200);

    for (const body of [{ async_max_retries: 3 }, { async_max_retries: -1 }, { async_max_event_age_seconds: 59 }, { async_max_event_age_seconds: 21_601 }]) {
      const refused = await fnvm.api('/v1/functions/flaky', { method: 'PUT', body });
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.match(refused.body.error, /async_max/);
    }
    const tooBig = await enqueue('flaky', { blob: 'x'.repeat(1024 * 1024) });
    assert.equal(tooBig.status, 413);
    assert.equal((await enqueue('no-such-function', {})).status, 404);
    assert.equal((await fnvm.api('/v1/functions/flaky/dead-letters/redrive', { method: 'POST', body: { request_ids: 'all' } })).status, 400);
    await fnvm.api('/v1/functions/flaky', { method: 'PUT', body: { async_max_retries: 2 } });
  });

  test('async work holds at most half of max_concurrency; synchronous invocations keep being served meanwhile', async () => {
    const { id } = await deployReady(fnvm, { name: 'narrow', runtime: 'node', code: flaky, max_concurrency: 4 });
    const service = fnvm.server.service;
    const ids = await Promise.all(Array.from({ length: 16 }, async (_, n) => (await enqueue('narrow', { n, sleepMs: 150 })).body.request_id as string));
    let maxInflight = 0;
    let maxRunning = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxInflight = Math.max(maxInflight, service.inflight(id));
        maxRunning = Math.max(maxRunning, service.queueFigures(id).running);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const sync: number[] = [];
    await eventually('async running', async () => (service.queueFigures(id).running > 0 ? true : undefined));
    for (let i = 0; i < 10; i++) sync.push((await fnvm.api('/v1/functions/narrow/invoke', { method: 'POST', body: { event: { n: 100 + i } } })).status);
    await settled('narrow');
    sampling = false;
    await sampler;
    assert.deepEqual(sync, Array(10).fill(200), 'every synchronous invocation was served while async work ran');
    assert.equal(maxRunning, 2, 'async attempts used their share (2 of 4) and no more');
    assert.ok(maxInflight <= 4, `in flight reached ${maxInflight}`);
    for (const requestId of ids) assert.deepEqual((await recordsOf('narrow', requestId)).map((r) => r.status), ['success']);
  });

  test('metrics: queue depth and oldest age while events wait, then what happened to each', async () => {
    await deployReady(fnvm, { name: 'metered', runtime: 'node', code: flaky, max_concurrency: 2, async_max_retries: 1 });
    const scrape = async () => parseExposition(await (await fetch(`${fnvm.url}/metrics`)).text());
    const first = Date.now();
    for (const event of [{ n: 1, sleepMs: 400 }, { n: 2, sleepMs: 400 }, { n: 3, sleepMs: 400, fail: true }, { n: 4, sleepMs: 400 }]) {
      assert.equal((await enqueue('metered', event)).status, 202);
    }
    const waiting = await scrape();
    const sinceFirst = (Date.now() - first) / 1000;
    const depth = waiting.value('fnvm_async_queue_depth', { function: 'metered' }) ?? -1;
    assert.ok(depth >= 3 && depth <= 4, `depth ${depth}: one at a time runs (share 1 of 2), the others wait`);
    const age = waiting.value('fnvm_async_oldest_event_age_seconds', { function: 'metered' }) ?? -1;
    assert.ok(age > 0 && age <= sinceFirst + 0.05, `oldest age ${age} s, first accepted ${sinceFirst} s ago`);
    await eventually('a dead letter', async () => ((await queue('metered')).dead_letters === 1 ? true : undefined));
    await settled('metered');
    const done = await scrape();
    const outcome = (o: string) => done.value('fnvm_async_events_total', { function: 'metered', outcome: o }) ?? 0;
    assert.deepEqual(['accepted', 'succeeded', 'retried', 'dead'].map(outcome), [4, 3, 1, 1]);
    assert.equal(done.value('fnvm_async_queue_depth', { function: 'metered' }), 0);
    assert.equal(done.value('fnvm_async_oldest_event_age_seconds', { function: 'metered' }), 0);
    assert.equal(done.value('fnvm_async_dead_letters', { function: 'metered' }), 1);
    // Five attempts ran (3 successes, a failure and its retry): as many invocations counted, none as a 429.
    assert.equal((done.value('fnvm_invocations_total', { function: 'metered', status: 'success' }) ?? 0) + (done.value('fnvm_invocations_total', { function: 'metered', status: 'error' }) ?? 0), 5);
    assert.equal(done.value('fnvm_throttles_total', { function: 'metered' }) ?? 0, 0);
  });

  test('Event over the Lambda API, with the SDK; the event invoke config maps to the async settings', async () => {
    const lambda = new LambdaClient({ endpoint: fnvm.url, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
    try {
      await assert.rejects(lambda.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'narrow' })), (error: Error) => error.name === 'ResourceNotFoundException');
      const put = await lambda.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'narrow', MaximumRetryAttempts: 1, MaximumEventAgeInSeconds: 3600 }));
      assert.equal(put.MaximumRetryAttempts, 1);
      assert.equal(put.FunctionArn, 'arn:aws:lambda:us-east-1:000000000000:function:narrow:$LATEST');
      assert.ok(put.LastModified instanceof Date && Math.abs(put.LastModified.getTime() - Date.now()) < 10_000, String(put.LastModified));
      const got = await lambda.send(new GetFunctionEventInvokeConfigCommand({ FunctionName: 'narrow' }));
      assert.deepEqual([got.MaximumRetryAttempts, got.MaximumEventAgeInSeconds], [1, 3600]);
      const item = (await fnvm.api('/v1/functions/narrow')).body.item;
      assert.deepEqual([item.async_max_retries, item.async_max_event_age_seconds], [1, 3600]);
      await assert.rejects(
        lambda.send(new PutFunctionEventInvokeConfigCommand({ FunctionName: 'narrow', DestinationConfig: { OnFailure: { Destination: 'arn:aws:sqs:us-east-1:000000000000:q' } } })),
        (error: Error) => error.name === 'InvalidParameterValueException',
      );

      const ok = await lambda.send(new InvokeCommand({ FunctionName: 'narrow', InvocationType: 'Event', Payload: JSON.stringify({ n: 'lambda' }) }));
      assert.equal(ok.StatusCode, 202);
      const requestId = ok.$metadata.requestId ?? '';
      await eventually('the Event to run', async () => ((await recordsOf('narrow', requestId)).length === 1 ? true : undefined));
      assert.deepEqual((await recordsOf('narrow', requestId)).map((r) => [r.attempt, r.async, r.status]), [[1, true, 'success']]);
      // One retry now: a failing Event runs twice, then is a dead letter.
      const failing = await lambda.send(new InvokeCommand({ FunctionName: 'narrow', InvocationType: 'Event', Payload: JSON.stringify({ n: 'f', fail: true }) }));
      const failingId = failing.$metadata.requestId ?? '';
      await eventually('its dead letter', async () => ((await queue('narrow')).dead_letters === 1 ? true : undefined));
      assert.deepEqual((await recordsOf('narrow', failingId)).map((r) => r.attempt), [1, 2]);
    } finally {
      lambda.destroy();
    }
  });
});

describe('asynchronous limits', () => {
  let fnvm: TestServer;

  before(async () => {
    // A first retry 61 s away is past a 60 s maximum age: the event gives up at once.
    fnvm = await startTestServer({ asyncRetryDelayMs: 61_000, asyncQueueDepth: 3 });
    await deployReady(fnvm, { name: 'slow', runtime: 'node', code: flaky, max_concurrency: 2, async_max_event_age_seconds: 60 });
  });
  after(async () => {
    await fnvm?.stop();
  });

  test('the depth limit: 429 once the queue holds FNVM_ASYNC_QUEUE_DEPTH events', async () => {
    const statuses: number[] = [];
    for (let n = 0; n < 5; n++) statuses.push((await fnvm.api('/v1/functions/slow/invoke', { method: 'POST', body: { event: { n, sleepMs: 1500 } }, headers: { prefer: 'respond-async' } })).status);
    assert.deepEqual(statuses, [202, 202, 202, 429, 429]);
    // The Lambda API says it as Lambda does.
    const lambda = new LambdaClient({ endpoint: fnvm.url, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
    try {
      await assert.rejects(lambda.send(new InvokeCommand({ FunctionName: 'slow', InvocationType: 'Event', Payload: '{}' })), (error: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(error.name, 'TooManyRequestsException');
        assert.equal(error.$metadata?.httpStatusCode, 429);
        return true;
      });
    } finally {
      lambda.destroy();
    }
    await eventually('the queue to drain', async () => ((await fnvm.api('/v1/functions/slow/queue')).body.queued === 0 ? true : undefined));
    const records = (await fnvm.api('/v1/functions/slow/logs')).body.items;
    assert.equal(records.length, 3);
    // Events still committing count too: of 8 sent at once (each runs 1.5 s, so none is done meanwhile), 3 are taken.
    const together = await Promise.all(Array.from({ length: 8 }, (_, n) =>
      fnvm.api('/v1/functions/slow/invoke', { method: 'POST', body: { event: { n, sleepMs: 1500 } }, headers: { prefer: 'respond-async' } })));
    assert.deepEqual(together.map((r) => r.status).sort(), [202, 202, 202, 429, 429, 429, 429, 429]);
    await eventually('the queue to drain again', async () => ((await fnvm.api('/v1/functions/slow/queue')).body.queued === 0 ? true : undefined));
    assert.equal((await fnvm.api('/v1/functions/slow/logs')).body.items.length, 6);
  });

  test('an event whose retry would pass its maximum age is a dead letter after one attempt', async () => {
    const accepted = await fnvm.api('/v1/functions/slow/invoke', { method: 'POST', body: { event: { n: 9, fail: true } }, headers: { prefer: 'respond-async' } });
    assert.equal(accepted.status, 202);
    const dead = await eventually('the dead letter', async () => {
      const { body } = await fnvm.api('/v1/functions/slow/dead-letters');
      return body.total === 1 ? body.items[0] : undefined;
    });
    assert.equal(dead.reason, 'EventAgeExceeded');
    assert.equal(dead.attempts, 1);
  });
});
