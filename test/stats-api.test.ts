// GET /v1/functions/{id}/metrics and GET /v1/metrics over real HTTP, real SQLite and real microVMs: a function
// invoked a known mix of successes, errors and timeouts; the answers checked against its invocation records.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { relativeError } from '../src/stats/histogram.js';
import { liveProcessCount } from '../src/vm/processes.js';
import { normal, seededRandom } from './support/random.js';
import { deployReady, startTestServer, type TestServer } from './support/server.js';

// Sleeps as long as the event says, then throws if asked to; timeout_seconds 1 makes a long sleep a timeout.
const sleeper = [
  'async function handler(event) {',
  '  if (event.sleep_ms > 0) await new Promise((resolve) => setTimeout(resolve, event.sleep_ms));',
  '  if (event.fail) throw new Error("asked to fail");',
  '  return { slept: event.sleep_ms };',
  '}',
].join('\n');

let fnvm: TestServer;

before(async () => {
  fnvm = await startTestServer();
});

after(async () => {
  await fnvm.stop();
  assert.equal(liveProcessCount(), 0, 'no QEMU process outlives the server');
});

interface Planned { sleep_ms: number; fail: boolean; expect: 'success' | 'error' | 'timeout' }
interface InvocationItem { status: string; duration_ms: number; invoked_at: string; cold_start: boolean }

/** The nearest-rank q-quantile, the definition the histogram's error bound is stated against. */
function exactQuantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1] ?? NaN;
}

/** Counts and duration figures of `records` as the API should report them (percentiles checked with their error). */
function assertSummary(summary: any, records: InvocationItem[], label: string): void {
  const failed = records.filter((r) => r.status !== 'success');
  assert.deepEqual(
    { invocations: summary.invocations, errors: summary.errors, timeouts: summary.timeouts, cold_starts: summary.cold_starts },
    { invocations: records.length, errors: failed.length, timeouts: records.filter((r) => r.status === 'timeout').length, cold_starts: records.filter((r) => r.cold_start).length },
    label,
  );
  const durations = records.map((r) => r.duration_ms);
  if (records.length === 0) {
    assert.deepEqual(summary.duration_ms, { p50: null, p95: null, p99: null, max: null, mean: null }, label);
    return;
  }
  for (const [field, q] of [['p50', 0.5], ['p95', 0.95], ['p99', 0.99]] as const) {
    const exact = exactQuantile(durations, q);
    const reported = summary.duration_ms[field];
    // the stated error, plus the rounding of the reported value to the microsecond
    assert.ok(Math.abs(reported - exact) <= relativeError * exact + 0.0005, `${label}: ${field} ${reported} vs exact ${exact} (${durations.length} records)`);
  }
  assert.equal(summary.duration_ms.max, Math.max(...durations), `${label}: max`);
  const mean = durations.reduce((a, b) => a + b, 0) / durations.length;
  assert.ok(Math.abs(summary.duration_ms.mean - mean) <= 0.0005 + 1e-9, `${label}: mean ${summary.duration_ms.mean} vs ${mean}`);
}

/** Two totals over ranges holding the same invocations: equal (means to the microsecond: sums add in another order). */
function assertSameTotal(a: any, b: any, label: string): void {
  assert.deepEqual({ ...a, duration_ms: { ...a.duration_ms, mean: undefined } }, { ...b, duration_ms: { ...b.duration_ms, mean: undefined } }, label);
  assert.ok(Math.abs(a.duration_ms.mean - b.duration_ms.mean) <= 0.001, `${label}: mean`);
}

describe('invocation metrics', () => {
  let fn: any;
  let idle: any;
  let records: InvocationItem[];
  let planned: Planned[];

  before(async () => {
    fn = await deployReady(fnvm, { name: 'stats-sleeper', runtime: 'node', code: sleeper, timeout_seconds: 1 });
    idle = await deployReady(fnvm, { name: 'stats-idle', runtime: 'node', code: 'async function handler() { return 1; }' });
    const next = seededRandom(11);
    const quick: Planned[] = [];
    // Successes with log-normally spread sleeps (median 20 ms, a tail into the hundreds), errors after short sleeps.
    for (let i = 0; i < 48; i++) {
      const sleep = Math.min(600, Math.round(Math.exp(Math.log(20) + 1.2 * normal(next))));
      quick.push({ sleep_ms: sleep, fail: false, expect: 'success' });
    }
    for (let i = 0; i < 10; i++) quick.push({ sleep_ms: Math.round(next() * 50), fail: true, expect: 'error' });
    const shuffled = quick.map((p) => ({ p, key: next() })).sort((a, b) => a.key - b.key).map(({ p }) => p);
    const answers: any[] = [];
    const invoke = async (p: Planned) => {
      const { status, body } = await fnvm.api(`/v1/functions/${fn.id}/invoke`, { method: 'POST', body: { event: { sleep_ms: p.sleep_ms, fail: p.fail } } });
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.status, p.expect, JSON.stringify(body));
      answers.push(body);
    };
    // Four at a time: records that finish together share a commit (and a bucket write).
    for (let i = 0; i < shuffled.length; i += 4) await Promise.all(shuffled.slice(i, i + 4).map(invoke));
    // Timeouts alone: each replaces the VM, which would fail invocations in flight beside it.
    const timeouts: Planned[] = [{ sleep_ms: 3000, fail: false, expect: 'timeout' }, { sleep_ms: 5, fail: false, expect: 'success' }];
    for (const p of [...timeouts, ...timeouts]) await invoke(p);
    planned = [...quick, ...timeouts, ...timeouts];

    const logs = await fnvm.api(`/v1/functions/${fn.id}/logs?limit=1000`);
    records = logs.body.items;
    assert.equal(records.length, planned.length, 'every invocation has its record');
    assert.deepEqual(records.map((r) => r.duration_ms).sort(), answers.map((a) => a.duration_ms).sort(), 'the records are the answers');
    const timedOut = records.filter((r) => r.status === 'timeout');
    assert.ok(timedOut.every((r) => r.duration_ms >= 1000 && r.duration_ms < 3000), `a timeout lasts about timeout_seconds: ${timedOut.map((r) => r.duration_ms).join(', ')}`);
  });

  test('a function\'s series: counts equal what was done, percentiles within the stated error, every minute present', async (t) => {
    const asked = Date.now();
    const { status, body } = await fnvm.api('/v1/functions/stats-sleeper/metrics?since=15m');
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(Object.keys(body), ['function_id', 'name', 'since', 'until', 'step_seconds', 'resolution_seconds', 'points', 'total']);
    assert.equal(body.function_id, fn.id);
    assert.equal(body.name, 'stats-sleeper');
    assert.equal(body.step_seconds, 60);
    assert.equal(body.resolution_seconds, 60);
    const [since, until] = [Date.parse(body.since), Date.parse(body.until)];
    assert.equal(since % 60_000, 0, 'since aligned to the step');
    assert.equal(until % 60_000, 0, 'until aligned to the step');
    assert.ok(since <= asked - 15 * 60_000 && asked - 15 * 60_000 < since + 60_000 + 1000, `since ${body.since} for 15m back from ${new Date(asked).toISOString()}`);
    assert.ok(until >= asked && until < asked + 60_000 + 1000, `until ${body.until}`);

    assert.equal(body.points.length, (until - since) / 60_000);
    const failed = planned.filter((p) => p.expect !== 'success').length;
    assert.equal(body.total.invocations, planned.length);
    assert.equal(body.total.errors, failed);
    assert.equal(body.total.timeouts, planned.filter((p) => p.expect === 'timeout').length);
    assertSummary(body.total, records, 'total');
    t.diagnostic(`total: ${JSON.stringify(body.total)}`);

    let empty = 0;
    body.points.forEach((point: any, i: number) => {
      const start = since + i * 60_000;
      assert.equal(point.time, new Date(start).toISOString(), 'oldest first, one per step');
      const inStep = records.filter((r) => Date.parse(r.invoked_at) >= start && Date.parse(r.invoked_at) < start + 60_000);
      assertSummary(point, inStep, `point ${point.time}`);
      if (inStep.length === 0) empty++;
    });
    assert.ok(empty >= 10, `empty minutes are points too (${empty})`);
    const sum = (field: string) => body.points.reduce((total: number, p: any) => total + p[field], 0);
    for (const field of ['invocations', 'errors', 'timeouts', 'cold_starts']) assert.equal(sum(field), body.total[field], `points sum to the total: ${field}`);
    assert.equal(Math.max(...body.points.map((p: any) => p.duration_ms.max ?? 0)), body.total.duration_ms.max);
  });

  test('other steps, an ISO since and hour rows give the same totals', async () => {
    const base = (await fnvm.api(`/v1/functions/${fn.id}/metrics?since=15m`)).body;
    const fiveMinutes = (await fnvm.api(`/v1/functions/${fn.id}/metrics?since=1h&step=5m`)).body;
    assert.equal(fiveMinutes.step_seconds, 300);
    assert.equal(fiveMinutes.points.length, (Date.parse(fiveMinutes.until) - Date.parse(fiveMinutes.since)) / 300_000);
    assertSameTotal(fiveMinutes.total, base.total, 'since=1h&step=5m');

    const firstRecord = Math.min(...records.map((r) => Date.parse(r.invoked_at)));
    const iso = new Date(Math.floor(firstRecord / 60_000) * 60_000).toISOString();
    const fromIso = await fnvm.api(`/v1/functions/${fn.id}/metrics?since=${encodeURIComponent(iso)}&step=60`);
    assert.equal(fromIso.status, 200, JSON.stringify(fromIso.body));
    assert.equal(fromIso.body.since, iso);
    assertSameTotal(fromIso.body.total, base.total, `since=${iso}`);

    const hours = (await fnvm.api(`/v1/functions/${fn.id}/metrics?since=2d`)).body;
    assert.equal(hours.resolution_seconds, 3600);
    assert.equal(hours.step_seconds, 3600);
    assert.equal(Date.parse(hours.since) % 3_600_000, 0);
    assertSameTotal(hours.total, base.total, 'since=2d (hour rows)');
    const byHour = (await fnvm.api(`/v1/functions/${fn.id}/metrics?since=24h&step=1h`)).body;
    assert.equal(byHour.resolution_seconds, 60);
    assert.equal(byHour.points.length, (Date.parse(byHour.until) - Date.parse(byHour.since)) / 3_600_000);
    assertSameTotal(byHour.total, base.total, 'since=24h&step=1h');
    const byDay = (await fnvm.api(`/v1/functions/${fn.id}/metrics?since=24h&step=1d`)).body;
    assert.equal(byDay.resolution_seconds, 3600);
    assertSameTotal(byDay.total, base.total, 'since=24h&step=1d');
  });

  test('/v1/metrics: every function, in the list\'s order, with its totals and error rate', async () => {
    const list = (await fnvm.api('/v1/functions')).body.items.map((item: any) => item.id);
    for (const query of ['', '?since=15m', '?since=24h', '?since=3d']) {
      const { status, body } = await fnvm.api(`/v1/metrics${query}`);
      assert.equal(status, 200, JSON.stringify(body));
      assert.deepEqual(Object.keys(body), ['since', 'until', 'items']);
      assert.deepEqual(body.items.map((item: any) => item.function_id), list);
      const mine = body.items.find((item: any) => item.function_id === fn.id);
      assert.equal(mine.name, 'stats-sleeper');
      assertSummary(mine, records, `/v1/metrics${query}`);
      assert.equal(mine.error_rate, planned.filter((p) => p.expect !== 'success').length / planned.length, 'errors and timeouts over all');
      const quiet = body.items.find((item: any) => item.function_id === idle.id);
      assert.deepEqual(quiet, {
        function_id: idle.id, name: 'stats-idle', invocations: 0, errors: 0, timeouts: 0, cold_starts: 0, error_rate: null,
        duration_ms: { p50: null, p95: null, p99: null, max: null, mean: null },
      });
    }
    const series = (await fnvm.api(`/v1/functions/${fn.id}/metrics?since=1h`)).body;
    const summary = (await fnvm.api('/v1/metrics?since=1h')).body;
    assert.equal(summary.since, series.since);
    assert.equal(summary.until, series.until);
    const { function_id: _id, name: _name, error_rate: _rate, ...counts } = summary.items.find((item: any) => item.function_id === fn.id);
    assertSameTotal(counts, series.total, 'summary = series total');
  });

  test('deleting a function deletes its metrics', async () => {
    const doomed = await deployReady(fnvm, { name: 'stats-doomed', runtime: 'node', code: 'async function handler() { return 1; }' });
    assert.equal((await fnvm.api(`/v1/functions/${doomed.id}/invoke`, { method: 'POST', body: {} })).body.status, 'success');
    assert.equal((await fnvm.api(`/v1/functions/${doomed.id}/metrics`)).body.total.invocations, 1);
    assert.equal((await fnvm.api(`/v1/functions/${doomed.id}`, { method: 'DELETE' })).status, 200);
    assert.equal((await fnvm.api(`/v1/functions/${doomed.id}/metrics`)).status, 404);
    const again = await deployReady(fnvm, { name: 'stats-doomed', runtime: 'node', code: 'async function handler() { return 1; }' });
    assert.equal((await fnvm.api('/v1/functions/stats-doomed/metrics')).body.total.invocations, 0, 'a new function of the same name starts from zero');
    assert.equal((await fnvm.api(`/v1/functions/${again.id}`, { method: 'DELETE' })).status, 200);
  });
});

describe('metrics: bad input', () => {
  test('bad since or step: 400 naming the parameter and what is allowed; an unknown function: 404', async () => {
    const { body: list } = await fnvm.api('/v1/functions');
    const id = list.items[0]?.id ?? 'stats-sleeper';
    const future = new Date(Date.now() + 3600_000).toISOString();
    const cases: [string, RegExp][] = [
      [`/v1/functions/${id}/metrics?since=abc`, /^since must be an ISO 8601 time with a zone .* or a duration back from now \(15m, 1h, 24h, 30d\), got "abc"$/],
      [`/v1/functions/${id}/metrics?since=31d`, /^since reaches back at most 30 days/],
      [`/v1/functions/${id}/metrics?since=${encodeURIComponent(future)}`, /^since must not be in the future/],
      [`/v1/functions/${id}/metrics?since=2026-02-30T00:00:00Z`, /^since must be an ISO 8601 time/],
      [`/v1/functions/${id}/metrics?since=1h&since=2h`, /^since must be given once$/],
      [`/v1/functions/${id}/metrics?step=45`, /^step must be a multiple of 60 s \(1m\), got 45 s$/],
      [`/v1/functions/${id}/metrics?since=2d&step=60`, /^step must be a multiple of 3600 s \(1h\) for a since more than 24 h back/],
      [`/v1/functions/${id}/metrics?step=0`, /^step must be a number of seconds \(60\) or a duration \(1m, 5m, 1h, 1d\), got "0"$/],
      [`/v1/functions/${id}/metrics?step=1w`, /^step must be a number of seconds/],
      ['/v1/metrics?since=yesterday', /^since must be an ISO 8601 time/],
      ['/v1/metrics?since=40d', /^since reaches back at most 30 days/],
    ];
    for (const [path, message] of cases) {
      const { status, body } = await fnvm.api(path);
      assert.equal(status, 400, `${path}: ${JSON.stringify(body)}`);
      assert.deepEqual(Object.keys(body), ['error']);
      assert.match(body.error, message, path);
    }
    for (const missing of ['00000000-0000-4000-8000-000000000000', 'no-such-function']) {
      const { status, body } = await fnvm.api(`/v1/functions/${missing}/metrics`);
      assert.equal(status, 404);
      assert.deepEqual(body, { error: `function ${missing} not found` });
    }
  });
});
