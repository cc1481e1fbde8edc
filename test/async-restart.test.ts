// kill -9 of the server while it drains a few hundred asynchronous events, then a restart on the same data: every
// accepted event ends as exactly one success or exactly one dead letter after its 1 + retries attempts; none is
// lost, none runs more often than its attempts allow, and the restarted server finishes what the dead one left.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { processesUsing } from '../src/vm/orphans.js';
import { startCli, type CliServer } from './support/cli.js';
import { eventually } from './support/eventually.js';

const dataDir = mkdtempSync(join(tmpdir(), 'fnvm-async-restart-'));
const children: CliServer[] = [];
const events = 300;
const maxAttempts = 3; // Lambda's default: 2 retries

after(() => {
  for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

async function startServer(): Promise<CliServer> {
  const started = await startCli({ FNVM_DATA_DIR: dataDir, FNVM_ASYNC_RETRY_DELAY_MS: '300', FNVM_LOG_RETENTION: '100000' });
  children.push(started);
  return started;
}

async function api(base: string, path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(base + path, {
    method: init.method ?? 'GET',
    headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: response.status, body: await response.json() };
}

type Item = { request_id: string; attempt: number; async: boolean; status: string; invoked_at: string };

test('kill -9 while draining async events: each ends as one success or one dead letter, within its attempts', async () => {
  const first = await startServer();
  // Fails on every third event by its own number; slow enough (40 ms, 4 at once) that the kill lands mid-drain.
  const code = `exports.handler = async (event) => {
    await new Promise((r) => setTimeout(r, 40));
    if (event.n % 3 === 0) throw new Error('every third fails: ' + event.n);
    return event.n;
  };`;
  const created = await api(first.url, '/v1/functions', { method: 'POST', body: { name: 'drain', runtime: 'node', code, max_concurrency: 8 } });
  await eventually('drain to be ready', async () => ((await api(first.url, `/v1/functions/${created.body.id}`)).body.item.state === 'ready' ? true : undefined), 180_000);

  const accepted = new Map<string, number>(); // request_id -> n
  await Promise.all(Array.from({ length: 6 }, async (_, w) => {
    for (let n = w; n < events; n += 6) {
      const r = await api(first.url, '/v1/functions/drain/invoke', { method: 'POST', body: { event: { n } }, headers: { prefer: 'respond-async' } });
      assert.equal(r.status, 202);
      accepted.set(r.body.request_id, n);
    }
  }));
  assert.equal(accepted.size, events);
  const recordsAtKill = await eventually('the drain to be under way', async () => {
    const { body } = await api(first.url, '/v1/functions/drain/logs?limit=1');
    return body.total >= 60 ? body.total : undefined;
  });
  first.process.kill('SIGKILL');
  await first.exited;
  const killedAt = Date.now();
  const runDir = join(tmpdir(), `fnvm-${first.process.pid}`);
  await eventually('the dead server\'s QEMU processes to end', async () => (processesUsing(`${runDir}/`).length === 0 ? true : undefined), 10_000);

  const second = await startServer();
  await eventually('the queue to drain', async () => ((await api(second.url, '/v1/functions/drain/queue')).body.queued === 0 ? true : undefined), 180_000);
  const records: Item[] = (await api(second.url, '/v1/functions/drain/logs?limit=1000')).body.items;
  const dead: Array<{ request_id: string; attempts: number; reason: string; event: { n: number } }> = (await api(second.url, '/v1/functions/drain/dead-letters?limit=1000')).body.items;

  assert.ok(recordsAtKill < records.length, `the kill came mid-drain (${recordsAtKill} of ${records.length} records)`);
  assert.ok(records.some((r) => Date.parse(r.invoked_at) > killedAt), 'the restarted server ran what the dead one left');
  const byRequest = new Map<string, Item[]>();
  for (const record of records) {
    assert.ok(accepted.has(record.request_id), `record ${record.request_id} is of an accepted event`);
    assert.equal(record.async, true);
    byRequest.set(record.request_id, [...(byRequest.get(record.request_id) ?? []), record]);
  }
  const deadById = new Map(dead.map((d) => [d.request_id, d]));
  assert.equal(deadById.size, dead.length, 'one dead letter per event at most');
  let interrupted = 0;
  for (const [requestId, n] of accepted) {
    const attempts = byRequest.get(requestId) ?? [];
    const numbers = attempts.map((a) => a.attempt);
    assert.equal(new Set(numbers).size, numbers.length, `event ${n}: each attempt recorded once (${numbers.join()})`);
    assert.ok(numbers.every((a) => a >= 1 && a <= maxAttempts), `event ${n}: attempts within 1..${maxAttempts} (${numbers.join()})`);
    const successes = attempts.filter((a) => a.status === 'success');
    if (n % 3 === 0) {
      assert.equal(successes.length, 0, `event ${n} never succeeds`);
      const letter = deadById.get(requestId);
      assert.ok(letter, `event ${n} is a dead letter`);
      assert.equal(letter.attempts, maxAttempts, `event ${n} was attempted ${maxAttempts} times`);
      assert.equal(letter.reason, 'RetriesExhausted');
      assert.deepEqual(letter.event, { n });
      assert.ok(attempts.length >= maxAttempts - 1, `event ${n}: at most one attempt cut off by the kill (${numbers.join()})`);
    } else {
      assert.equal(successes.length, 1, `event ${n} succeeded exactly once (${attempts.map((a) => `${a.attempt}:${a.status}`).join()})`);
      assert.equal(deadById.has(requestId), false, `event ${n} is not a dead letter`);
      assert.ok(attempts.length <= 1, `event ${n}: a success needs no retry (${numbers.join()})`);
    }
    if (attempts.length < Math.max(...numbers, 0)) interrupted += 1;
  }
  assert.equal(dead.length, events / 3);
  process.stderr.write(`async kill -9: ${recordsAtKill} records at the kill, ${records.length} at the end, ${interrupted} events had an attempt cut off\n`);
  second.process.kill('SIGTERM');
  assert.equal(await second.exited, 0);
});
