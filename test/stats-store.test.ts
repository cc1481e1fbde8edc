// Invocation statistics in both stores (SQLite files, a real PostgreSQL): written with the records, kept apart
// from their retention, pruned by age at each resolution, deleted with their function, kept across a reopen,
// exact when two stores (hosts) write the same buckets at once.
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { countInvocation, emptyBucket, summarise, type BucketSummary, type StatsBucket } from '../src/stats/bucket.js';
import { relativeError } from '../src/stats/histogram.js';
import { hour, minute, type Resolution } from '../src/stats/resolutions.js';
import { totalsByFunction } from '../src/stats/series.js';
import { functionMetrics, metricsSummary } from '../src/functions/metrics.js';
import type { StoreOptions } from '../src/store/kysely-store.js';
import type { InvocationRecord, NewFunction, Store } from '../src/store/types.js';
import { forEachStore } from './support/stores.js';

let next = 0;

function newFunction(): NewFunction {
  const id = `fn-${next++}`;
  return {
    id, name: id, runtime: 'node', code: 'x', handler: 'handler', env_vars: {}, timeout_seconds: 1, memory_mb: 128, vcpu: 1,
    max_concurrency: 10, vm_id: null, guest_ip: null, port: null, state: 'ready', error: null, version: 1,
  };
}

function invocation(functionId: string, invokedAt: number, status: InvocationRecord['status'], durationMs: number, coldStart = false): InvocationRecord {
  const id = `inv-${next++}`;
  return {
    id, function_id: functionId, request_id: id, status, duration_ms: durationMs, invoked_at: new Date(invokedAt).toISOString(),
    version: 1, cold_start: coldStart, logs: [], error: null, attempt: 1, async: false,
  };
}

const hours = (n: number) => n * 3600_000;
const days = (n: number) => n * 86_400_000;

/** A function's totals over every stored row of one resolution. */
async function totals(store: Store, functionId: string, resolution: Resolution): Promise<BucketSummary> {
  const buckets = await store.readStats({ functionId, resolution, from: 0, to: 2 ** 40 });
  const total = totalsByFunction(buckets).get(functionId);
  return summarise(total ?? emptyBucket());
}

forEachStore((backend) => {
  async function openStore(t: TestContext, database?: string, options: StoreOptions = {}): Promise<Store> {
    const store = await backend.open(database ?? await backend.fresh(), options);
    t.after(() => store.close());
    return store;
  }

  /** Statistics rows in the database, read beside the store. */
  async function rawCount(t: TestContext, database: string, functionId?: string): Promise<number> {
    let query = backend.raw(t, database).selectFrom('invocation_stats').select((eb) => eb.fn.countAll<number | string>().as('n'));
    if (functionId !== undefined) query = query.where('function_id', '=', functionId);
    return Number((await query.executeTakeFirstOrThrow()).n);
  }

  describe('statistics in the store', () => {
    test('retention trims records, never statistics: 10 invocations with retention 2 stay 10 at both resolutions', async (t) => {
      const store = await openStore(t);
      const fn = await store.createFunction(newFunction());
      const now = Date.now();
      const durations = [5, 7, 9, 11, 13, 15, 17, 19, 1000, 21];
      const statuses: InvocationRecord['status'][] = ['success', 'error', 'success', 'success', 'error', 'success', 'success', 'success', 'timeout', 'success'];
      for (const [i, duration] of durations.entries()) {
        await store.recordInvocation(invocation(fn.id, now, statuses[i] ?? 'success', duration, i === 0), 2);
      }
      assert.equal(await store.countInvocations(fn.id), 2);
      for (const resolution of [minute, hour]) {
        const total = await totals(store, fn.id, resolution);
        assert.deepEqual({ ...total, duration_ms: undefined }, { invocations: 10, errors: 3, timeouts: 1, cold_starts: 1, duration_ms: undefined }, `resolution ${resolution}`);
        assert.equal(total.duration_ms.max, 1000);
        assert.equal(total.duration_ms.mean, 111.7);
        const p50 = total.duration_ms.p50 ?? NaN;
        assert.ok(Math.abs(p50 - 13) <= relativeError * 13 + 0.0005, `p50 ${p50}: the 5th smallest is 13`);
      }
      // With a retention of 0 nothing is kept, and everything is still counted.
      await store.recordInvocation(invocation(fn.id, now, 'success', 3), 0);
      assert.equal(await store.countInvocations(fn.id), 0);
      assert.equal((await totals(store, fn.id, minute)).invocations, 11);
    });

    test('one batch (records arriving together) is one write per bucket with every record in it', async (t) => {
      const path = await backend.fresh();
      const store = await openStore(t, path);
      const [a, b] = [await store.createFunction(newFunction()), await store.createFunction(newFunction())];
      const now = Date.now();
      await Promise.all(Array.from({ length: 60 }, (_, i) => store.recordInvocation(invocation(i % 3 === 0 ? b.id : a.id, now, 'success', i + 1), 1000)));
      assert.equal((await totals(store, a.id, minute)).invocations, 40);
      assert.equal((await totals(store, b.id, hour)).invocations, 20);
      assert.equal(await rawCount(t, path), 4, 'a minute and an hour row per function');
      assert.equal((await totals(store, a.id, minute)).duration_ms.max, 60);
    });

    test('minute rows go after 25 h, hour rows after 31 days: a 26 h old bucket still counts by the hour', async (t) => {
      const path = await backend.fresh();
      const store = await openStore(t, path);
      const fn = await store.createFunction(newFunction());
      const now = Date.now();
      for (const [age, count] of [[0, 3], [hours(26), 2], [days(32), 4]] as const) {
        for (let i = 0; i < count; i++) await store.recordInvocation(invocation(fn.id, now - age, 'success', 10), 1000);
      }
      assert.equal((await totals(store, fn.id, minute)).invocations, 9, 'written at both resolutions, whatever their age');
      assert.equal((await totals(store, fn.id, hour)).invocations, 9);

      assert.equal(await store.pruneStats(now), 3, 'the 26 h and 32 d minute rows, the 32 d hour row');
      assert.equal((await totals(store, fn.id, minute)).invocations, 3);
      assert.equal((await totals(store, fn.id, hour)).invocations, 5);
      assert.equal(await store.pruneStats(now), 0);

      // A store opened six days later (its clock moved, not waited for) prunes at open: the minute rows go.
      await store.close();
      const later = await openStore(t, path, { now: () => now + days(6) });
      assert.equal((await totals(later, fn.id, minute)).invocations, 0);
      assert.equal((await totals(later, fn.id, hour)).invocations, 5);
      await later.close();
      const muchLater = await openStore(t, path, { now: () => now + days(31) - hours(1) });
      assert.equal((await totals(muchLater, fn.id, hour)).invocations, 3, 'the 26 h old hour is past 31 days now, the newest is not');
    });

    test('deleting a function deletes its statistics, through the store and by the foreign key', async (t) => {
      const path = await backend.fresh();
      const store = await openStore(t, path);
      const [gone, kept, dropped] = [await store.createFunction(newFunction()), await store.createFunction(newFunction()), await store.createFunction(newFunction())];
      for (const fn of [gone, kept, dropped]) await store.recordInvocation(invocation(fn.id, Date.now(), 'success', 1), 10);
      assert.equal(await rawCount(t, path), 6);
      assert.equal(await store.deleteFunction(gone.id), true);
      assert.equal(await rawCount(t, path, gone.id), 0);
      assert.equal(await rawCount(t, path, kept.id), 2);

      await backend.raw(t, path).deleteFrom('functions').where('id', '=', dropped.id).execute();
      assert.equal(await rawCount(t, path, dropped.id), 0, 'ON DELETE CASCADE');
      assert.equal(await rawCount(t, path), 2);
    });

    test('reopening the file keeps the statistics as they were', async (t) => {
      const path = await backend.fresh();
      const first = await openStore(t, path);
      const fn = await first.createFunction(newFunction());
      const now = Date.now();
      for (let i = 0; i < 50; i++) await first.recordInvocation(invocation(fn.id, now - (i % 5) * 60_000, i % 7 === 0 ? 'error' : 'success', 0.5 + i * 3.25, i === 0), 5);
      const before = await first.readStats({ functionId: fn.id, resolution: minute, from: 0, to: 2 ** 40 });
      const beforeTotal = await totals(first, fn.id, hour);
      await first.close();

      const reopened = await openStore(t, path);
      assert.deepEqual(await reopened.readStats({ functionId: fn.id, resolution: minute, from: 0, to: 2 ** 40 }), before);
      assert.deepEqual(await totals(reopened, fn.id, hour), beforeTotal);
      assert.equal(beforeTotal.invocations, 50);
      assert.equal(beforeTotal.errors, 8);
      assert.ok(before.length >= 5 && before.length <= 6, `5 minutes (6 if a minute boundary fell inside): ${before.length}`);
    });

    test('two stores writing the same buckets at once, as the hosts of a fleet do, keep every count exact', async (t) => {
      const database = await backend.fresh();
      const [a, b] = [await openStore(t, database), await openStore(t, database)];
      const fns = [await a.createFunction(newFunction()), await a.createFunction(newFunction()), await a.createFunction(newFunction())];
      const expected = new Map(fns.map((fn) => [fn.id, emptyBucket()]));
      const now = Date.now();
      const written: Promise<void>[] = [];
      for (let round = 0; round < 20; round++) {
        // A round is a batch per store, both in flight at once, each touching every function's buckets of two minutes.
        for (const [s, store] of [a, b].entries()) {
          for (let i = 0; i < 24; i++) {
            const fn = fns[(i + s) % fns.length] ?? assert.fail();
            const record = invocation(fn.id, now - (i % 2) * 60_000, i % 7 === 0 ? 'error' : i % 11 === 0 ? 'timeout' : 'success', 0.5 + round * 3 + i + s * 100, i % 5 === 0);
            countInvocation(expected.get(fn.id) ?? assert.fail(), record);
            written.push(store.recordInvocation(record, 10_000));
          }
        }
        await Promise.all(written);
      }
      for (const fn of fns) {
        const want: StatsBucket = expected.get(fn.id) ?? assert.fail();
        for (const resolution of [minute, hour]) {
          assert.deepEqual(await totals(b, fn.id, resolution), summarise(want), `${fn.id} at ${resolution} s`);
        }
        assert.equal(await a.countInvocations(fn.id), want.invocations);
      }
      assert.equal(expected.get(fns[0]?.id ?? '')?.invocations, 320);
    });

    test('readStats returns the range asked for, of one function or of all', async (t) => {
      const store = await openStore(t);
      const [a, b] = [await store.createFunction(newFunction()), await store.createFunction(newFunction())];
      const start = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
      for (let i = 0; i < 10; i++) {
        await store.recordInvocation(invocation(a.id, start + i * 60_000, 'success', 1), 100);
        await store.recordInvocation(invocation(b.id, start + i * 60_000 + 30_000, 'success', 1), 100);
      }
      const from = start / 1000 + 120;
      const to = start / 1000 + 300;
      const one = await store.readStats({ functionId: a.id, resolution: minute, from, to });
      assert.deepEqual(one.map((x) => x.start), [from, from + 60, from + 120]);
      const all = await store.readStats({ resolution: minute, from, to });
      const [first, second] = a.id < b.id ? [a.id, b.id] : [b.id, a.id]; // by start, then function id
      assert.deepEqual(all.map((x) => [x.start - from, x.function_id]), [[0, first], [0, second], [60, first], [60, second], [120, first], [120, second]]);
    });

    test('hour rows are exactly their minutes merged: series and totals read from either agree', async (t) => {
      const store = await openStore(t);
      const fn = await store.createFunction(newFunction());
      const other = await store.createFunction(newFunction());
      const now = Date.now();
      const recorded: InvocationRecord[] = [];
      for (let i = 0; i < 400; i++) {
        const record = invocation(i % 4 === 0 ? other.id : fn.id, now - i * 37_000, i % 9 === 0 ? 'timeout' : i % 5 === 0 ? 'error' : 'success', 1 + ((i * 7919) % 1000) / 7, i % 11 === 0);
        recorded.push(record);
        await store.recordInvocation(record, 10);
      }
      // 400 records 37 s apart: about 4 h, so whole hours inside and minutes at both ends.
      const byMinutes = await totals(store, fn.id, minute);
      const summary = await metricsSummary(store, [fn, other], '24h', now);
      const { function_id: _id, name: _name, error_rate: _rate, ...fromPlan } = summary.items[0] ?? assert.fail('no item');
      assert.deepEqual({ ...fromPlan, duration_ms: { ...fromPlan.duration_ms, mean: null } }, { ...byMinutes, duration_ms: { ...byMinutes.duration_ms, mean: null } });
      assert.ok(Math.abs((fromPlan.duration_ms.mean ?? NaN) - (byMinutes.duration_ms.mean ?? NaN)) <= 0.001);
      assert.equal(fromPlan.invocations, recorded.filter((r) => r.function_id === fn.id).length);

      const hourly = await functionMetrics(store, fn, '24h', '1h', now);
      const minutely = await functionMetrics(store, fn, '24h', '60', now);
      assert.equal(hourly.resolution_seconds, 60, 'the step rules of a range within 24 h');
      for (const point of hourly.points) {
        const start = Date.parse(point.time);
        const minutes = minutely.points.filter((p) => Date.parse(p.time) >= start && Date.parse(p.time) < start + 3600_000);
        assert.equal(point.invocations, minutes.reduce((sum, p) => sum + p.invocations, 0), point.time);
        assert.equal(point.errors, minutes.reduce((sum, p) => sum + p.errors, 0), point.time);
        assert.equal(point.duration_ms.max, minutes.reduce<number | null>((max, p) => (p.duration_ms.max === null ? max : Math.max(max ?? 0, p.duration_ms.max)), null), point.time);
      }
      assert.equal(hourly.total.invocations, minutely.total.invocations);
      assert.deepEqual(hourly.total.duration_ms.p99, minutely.total.duration_ms.p99);
    });
  });
});
