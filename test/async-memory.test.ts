// The asynchronous queue over a real SQLite store holds queued events without their payloads: 300 events of
// 1 MiB each, waiting for a slot, grow the heap by far less than their 300 MiB; once slots free up, each attempt
// reads its own payload back from the store intact.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { AsyncQueue } from '../src/functions/async-queue.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { eventually } from './support/eventually.js';

const dir = mkdtempSync(join(tmpdir(), 'fnvm-async-memory-'));
after(() => rmSync(dir, { recursive: true, force: true }));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void; // V8's own gc
const heapAfterGc = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const events = 300;
const payloadBytes = 1024 * 1024;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

test('300 queued events of 1 MiB add well under 64 MiB to the heap, and each attempt gets its own payload', async () => {
  const store = await openSqliteStore(join(dir, 'fnvm.sqlite'));
  try {
    const fn = await store.createFunction({
      id: 'fn', name: 'fn', runtime: 'node', code: 'x', handler: 'index.handler', env_vars: {}, timeout_seconds: 30,
      memory_mb: 128, vcpu: 1, max_concurrency: 8, vm_id: null, guest_ip: null, port: null, state: 'ready', error: null, version: 1,
    });
    const expected = new Map<string, string>(); // request id -> the payload's hash
    const delivered = new Map<string, string>();
    let open = false; // no slot until the measurement is done
    const queue = new AsyncQueue({
      store,
      settings: () => ({ maxRetries: 2, maxEventAgeSeconds: 3600, retryDelayMs: 1000, attemptLeaseMs: 60_000 }),
      capacity: () => ({ inflight: open ? 0 : 8, max: 8 }),
      run: async (event, settle) => {
        const payload = await store.eventPayload(event.request_id);
        assert.ok(payload !== undefined, `the payload of ${event.request_id}`);
        delivered.set(event.request_id, sha256(payload));
        await store.recordInvocation({
          id: `i-${event.request_id}`, function_id: fn.id, request_id: event.request_id, status: 'success', duration_ms: 1,
          invoked_at: new Date().toISOString(), version: 1, cold_start: false, logs: [], error: null, attempt: event.attempts, async: true,
        }, 1000, settle({ status: 'success', error: null }));
      },
      maxDepth: 1000,
      maxRunning: 32,
      onOutcome: () => {},
      log: (message) => assert.fail(message),
    });

    const before = heapAfterGc();
    for (let n = 0; n < events; n++) {
      const payload = JSON.stringify(randomBytes(payloadBytes / 2 - 8).toString('hex'));
      expected.set(`req-${n}`, sha256(payload));
      await queue.enqueue(fn.id, `req-${n}`, payload);
    }
    const grown = heapAfterGc() - before;
    assert.equal(queue.figures(fn.id).queued, events);
    assert.ok(grown < 64 * 1024 * 1024, `the heap grew by ${(grown / 1024 / 1024).toFixed(1)} MiB holding ${events} queued events of 1 MiB`);

    open = true;
    queue.poke();
    await eventually('the queue to drain', async () => (queue.figures(fn.id).queued === 0 ? true : undefined));
    await queue.close();
    assert.deepEqual([...delivered].sort(), [...expected].sort());
    assert.equal(await store.countInvocations(fn.id), events);
    assert.deepEqual(await store.listQueuedEvents(), []);
  } finally {
    await store.close();
  }
});
