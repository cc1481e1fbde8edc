// The store-agnostic statistics code (src/stats) and the metrics query rules (src/functions/metrics-range.ts):
// the histogram's percentiles against exact ones on seeded random durations, exact merges, series folding.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FunctionError } from '../src/functions/errors.js';
import { parseSince, seriesRange, totalsRange } from '../src/functions/metrics-range.js';
import { BatchBuckets, type TimedInvocation } from '../src/stats/batch.js';
import { countInvocation, emptyBucket, mergeBucket, summarise, type StatsBucket } from '../src/stats/bucket.js';
import {
  addTo, binCount, decodeHistogram, emptyHistogram, encodeHistogram, maxCountedMs, mergeInto, quantile, relativeError, type Histogram,
} from '../src/stats/histogram.js';
import { seriesReads, toSeries, totalsReads } from '../src/stats/series.js';
import { normal, seededRandom as random } from './support/random.js';

/** Durations to the microsecond, as invocation records carry them. */
const micros = (ms: number) => Math.round(ms * 1000) / 1000;

const distributions: Record<string, (next: () => number) => number> = {
  uniform: (next) => 0.5 + next() * 200,
  lognormal: (next) => Math.exp(Math.log(5) + 1.5 * normal(next)),
  exponential: (next) => -20 * Math.log(1 - next()),
  // most invocations fast, some hitting a slow dependency
  bimodal: (next) => (next() < 0.9 ? Math.abs(2 + 0.3 * normal(next)) : 800 + 100 * next()),
  pareto: (next) => 1 / Math.pow(1 - next(), 1 / 1.2),
  'sub-millisecond': (next) => 0.01 + next() * 0.5,
  'up to the 15 min timeout': (next) => next() * 900_000,
  constant: () => 42.123,
};

/** The nearest-rank q-quantile: the ceil(q*n)-th smallest (what the histogram's bound is stated against). */
function exactQuantile(sorted: number[], q: number): number {
  const value = sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1];
  assert.ok(value !== undefined);
  return value;
}

function histogramOf(durations: number[]): Histogram {
  const histogram = emptyHistogram();
  for (const duration of durations) addTo(histogram, duration);
  return histogram;
}

function bucketOf(durations: number[]): StatsBucket {
  const bucket = emptyBucket();
  for (const duration_ms of durations) countInvocation(bucket, { status: 'success', duration_ms, cold_start: false });
  return bucket;
}

const quantiles = [0.5, 0.95, 0.99];

describe('duration histogram', () => {
  test('the stated error: 4.33% for bounds 2^(1/8) apart', () => {
    assert.ok(Math.abs(relativeError - 0.0433) < 0.0001, String(relativeError));
  });

  for (const [name, draw] of Object.entries(distributions)) {
    test(`p50/p95/p99 of 5,000 ${name} durations are within the stated error of the exact ones`, () => {
      const next = random(name.length * 7919);
      const durations = Array.from({ length: 5000 }, () => micros(draw(next)));
      const sorted = [...durations].sort((a, b) => a - b);
      const histogram = histogramOf(durations);
      const [min, max] = [sorted[0] ?? NaN, sorted.at(-1) ?? NaN];
      let worst = 0;
      for (const q of [...quantiles, 0.001, 0.25, 0.75, 0.999, 1]) {
        const exact = exactQuantile(sorted, q);
        const estimate = quantile(histogram, durations.length, q, min, max);
        assert.ok(estimate !== null);
        const error = Math.abs(estimate - exact) / exact;
        assert.ok(error <= relativeError * (1 + 1e-9), `${name} q=${q}: estimate ${estimate}, exact ${exact}, error ${(error * 100).toFixed(2)}%`);
        worst = Math.max(worst, error);
      }
      // As the API reports them (rounded to the microsecond), through a bucket.
      const summary = summarise(bucketOf(durations)).duration_ms;
      for (const [q, value] of [[0.5, summary.p50], [0.95, summary.p95], [0.99, summary.p99]] as const) {
        const exact = exactQuantile(sorted, q);
        assert.ok(value !== null && Math.abs(value - exact) <= relativeError * exact + 0.0005, `${name} summary q=${q}: ${value} vs ${exact}`);
      }
      assert.equal(summary.max, max);
      const mean = durations.reduce((a, b) => a + b, 0) / durations.length;
      assert.ok(summary.mean !== null && Math.abs(summary.mean - mean) <= 0.0005 + mean * 1e-12, `mean ${summary.mean} vs ${mean}`);
      if (name !== 'constant') assert.ok(worst > 0, 'estimates are not simply the exact values');
    });
  }

  test('a merge of two histograms is the histogram of the union, and so are its percentiles', () => {
    const next = random(42);
    const a = Array.from({ length: 3000 }, () => micros(distributions.lognormal?.(next) ?? NaN));
    const b = Array.from({ length: 2000 }, () => micros(distributions.bimodal?.(next) ?? NaN));
    const merged = histogramOf(a);
    mergeInto(merged, histogramOf(b));
    assert.deepEqual(merged, histogramOf([...a, ...b]));

    const bucket = bucketOf(a);
    mergeBucket(bucket, bucketOf(b));
    const union = bucketOf([...a, ...b]);
    assert.deepEqual(summarise(bucket), summarise(union));
    assert.equal(bucket.invocations, 5000);
  });

  test('durations below the first bound and beyond the last are counted and clamped to what was seen', () => {
    const durations = [0, 0.001, 0.004, 2_000_000, 1_500_000];
    const histogram = histogramOf(durations);
    assert.equal(histogram.reduce((a, b) => a + b, 0), durations.length);
    assert.equal(quantile(histogram, 5, 0.2, 0, 2_000_000), 0.00390625, 'bin 0 stands for half its bound');
    assert.equal(quantile(histogram, 5, 1, 0, 2_000_000), 2_000_000, 'the overflow bin is the max');
    assert.equal(quantile(histogramOf([0.001]), 1, 0.5, 0.001, 0.001), 0.001, 'clamped to the one value seen');
    addTo(histogram, NaN);
    addTo(histogram, -5);
    assert.equal(histogram[0], 5, 'NaN and negatives land in bin 0, not outside the array');
    assert.equal(quantile(emptyHistogram(), 0, 0.5, Infinity, -Infinity), null);
  });

  test('a duration no invocation can have (a guest\'s claim) is bounded: sums stay finite', () => {
    const bucket = emptyBucket();
    for (const duration_ms of [1e308, 1e308, -5, NaN, 10]) countInvocation(bucket, { status: 'success', duration_ms, cold_start: false });
    assert.equal(bucket.invocations, 5);
    assert.equal(bucket.duration_max, maxCountedMs);
    assert.equal(bucket.duration_min, 0);
    assert.equal(bucket.duration_sum, 2 * maxCountedMs + 10);
  });

  test('the stored form round-trips and anything else is refused', () => {
    const next = random(7);
    const histogram = histogramOf(Array.from({ length: 1000 }, () => distributions.pareto?.(next) ?? NaN));
    const text = encodeHistogram(histogram);
    assert.deepEqual(decodeHistogram(text), histogram);
    assert.equal(encodeHistogram(emptyHistogram()), '[]');
    for (const bad of ['{}', '[1]', '[1.5,2]', `[${binCount},1]`, '[-1,1]', '[3,-2]', '[3,"2"]', 'nope']) {
      assert.throws(() => decodeHistogram(bad), Error, bad);
    }
  });
});

describe('buckets and series', () => {
  const invocation = (function_id: string, invoked_at: string, status: TimedInvocation['status'], duration_ms: number, cold_start = false): TimedInvocation =>
    ({ function_id, invoked_at, status, duration_ms, cold_start });

  test('a batch folds into one minute and one hour bucket per function and time', () => {
    const batch = new BatchBuckets();
    batch.count(invocation('a', '2026-12-01T10:00:59.999Z', 'success', 10, true));
    batch.count(invocation('a', '2026-12-01T10:01:00.000Z', 'error', 20));
    batch.count(invocation('a', '2026-12-01T10:01:30.000Z', 'timeout', 1000));
    batch.count(invocation('b', '2026-12-01T10:01:30.000Z', 'success', 5));
    const keyed = [...batch.values()].map(({ function_id, resolution, start, bucket }) =>
      ({ function_id, resolution, time: new Date(start * 1000).toISOString(), invocations: bucket.invocations, errors: bucket.errors, timeouts: bucket.timeouts, cold_starts: bucket.cold_starts }));
    const sorted = keyed.sort((x, y) => `${x.resolution}${x.time}${x.function_id}`.localeCompare(`${y.resolution}${y.time}${y.function_id}`));
    assert.deepEqual(sorted, [
      { function_id: 'a', resolution: 3600, time: '2026-12-01T10:00:00.000Z', invocations: 3, errors: 2, timeouts: 1, cold_starts: 1 },
      { function_id: 'b', resolution: 3600, time: '2026-12-01T10:00:00.000Z', invocations: 1, errors: 0, timeouts: 0, cold_starts: 0 },
      { function_id: 'a', resolution: 60, time: '2026-12-01T10:00:00.000Z', invocations: 1, errors: 0, timeouts: 0, cold_starts: 1 },
      { function_id: 'a', resolution: 60, time: '2026-12-01T10:01:00.000Z', invocations: 2, errors: 2, timeouts: 1, cold_starts: 0 },
      { function_id: 'b', resolution: 60, time: '2026-12-01T10:01:00.000Z', invocations: 1, errors: 0, timeouts: 0, cold_starts: 0 },
    ]);
    assert.throws(() => batch.count(invocation('a', 'yesterday', 'success', 1)), /not a time/);
  });

  test('a series has every step, empty ones zero, and its points sum to its total', () => {
    const at = (iso: string) => Date.parse(iso) / 1000;
    const bucket = (durations: number[]) => bucketOf(durations);
    const buckets = [
      { start: at('2026-12-01T09:59:00Z'), bucket: bucket([1]) }, // before since: ignored
      { start: at('2026-12-01T10:00:00Z'), bucket: bucket([1, 2, 3]) },
      { start: at('2026-12-01T10:04:00Z'), bucket: bucket([10]) }, // same 5 min step
      { start: at('2026-12-01T10:12:00Z'), bucket: bucket([100, 200]) },
      { start: at('2026-12-01T10:15:00Z'), bucket: bucket([5]) }, // at until: ignored
    ];
    const { points, total } = toSeries(buckets, { since: at('2026-12-01T10:00:00Z'), until: at('2026-12-01T10:15:00Z'), step: 300, resolution: 60 });
    assert.deepEqual(points.map((p) => [p.time, p.invocations, p.duration_ms.max]), [
      ['2026-12-01T10:00:00.000Z', 4, 10],
      ['2026-12-01T10:05:00.000Z', 0, null],
      ['2026-12-01T10:10:00.000Z', 2, 200],
    ]);
    assert.deepEqual(points[1], { time: '2026-12-01T10:05:00.000Z', invocations: 0, errors: 0, timeouts: 0, cold_starts: 0, duration_ms: { p50: null, p95: null, p99: null, max: null, mean: null } });
    assert.deepEqual(total, summarise(bucketOf([1, 2, 3, 10, 100, 200])));
  });
});

describe('which rows a query reads', () => {
  const at = (iso: string) => Date.parse(iso) / 1000;

  test('totals: whole hours from hour rows, the minutes at either end from minute rows', () => {
    assert.deepEqual(totalsReads(at('2026-11-30T10:17:00Z'), at('2026-12-01T10:18:00Z'), 60), [
      { resolution: 60, from: at('2026-11-30T10:17:00Z'), to: at('2026-11-30T11:00:00Z') },
      { resolution: 3600, from: at('2026-11-30T11:00:00Z'), to: at('2026-12-01T10:00:00Z') },
      { resolution: 60, from: at('2026-12-01T10:00:00Z'), to: at('2026-12-01T10:18:00Z') },
    ]);
    assert.deepEqual(totalsReads(at('2026-12-01T09:00:00Z'), at('2026-12-01T10:00:00Z'), 60), [
      { resolution: 3600, from: at('2026-12-01T09:00:00Z'), to: at('2026-12-01T10:00:00Z') },
    ]);
    assert.deepEqual(totalsReads(at('2026-12-01T09:17:00Z'), at('2026-12-01T10:18:00Z'), 60), [
      { resolution: 60, from: at('2026-12-01T09:17:00Z'), to: at('2026-12-01T10:18:00Z') },
    ], 'no whole hour inside');
    assert.deepEqual(totalsReads(at('2026-11-01T10:00:00Z'), at('2026-12-01T11:00:00Z'), 3600), [
      { resolution: 3600, from: at('2026-11-01T10:00:00Z'), to: at('2026-12-01T11:00:00Z') },
    ]);
  });

  test('series: hour rows when the steps are whole hours, else the resolution\'s rows', () => {
    const range = { since: at('2026-11-30T10:00:00Z'), until: at('2026-12-01T11:00:00Z'), resolution: 60 } as const;
    assert.deepEqual(seriesReads({ ...range, step: 3600 }), [{ resolution: 3600, from: range.since, to: range.until }]);
    assert.deepEqual(seriesReads({ ...range, step: 300 }), [{ resolution: 60, from: range.since, to: range.until }]);
  });
});

describe('metrics query rules', () => {
  const now = Date.parse('2026-12-01T10:17:30.250Z');
  const message = (run: () => unknown): string => {
    try {
      run();
    } catch (error) {
      assert.ok(error instanceof FunctionError && error.kind === 'invalid', String(error));
      return error.message;
    }
    assert.fail('no error');
  };

  test('since: durations back, ISO times with a zone, 1 h by default', () => {
    assert.equal(parseSince(undefined, now), now - 3600_000);
    assert.equal(parseSince('15m', now), now - 15 * 60_000);
    assert.equal(parseSince('24h', now), now - 86_400_000);
    assert.equal(parseSince('30d', now), now - 30 * 86_400_000);
    assert.equal(parseSince('2026-12-01T09:00:00Z', now), Date.parse('2026-12-01T09:00:00Z'));
    assert.equal(parseSince('2026-12-01T10:00:00+01:00', now), Date.parse('2026-12-01T09:00:00Z'));
    assert.equal(parseSince('2026-11-30', now), Date.parse('2026-11-30T00:00:00Z'));
    for (const bad of ['abc', '1w', '-1h', '1.5h', '2026-11-31T00:00:00Z', '2026-12-01T09:00:00', 'Dec 1, 2026', '1 h']) {
      assert.match(message(() => parseSince(bad, now)), /^since must be an ISO 8601 time with a zone .* or a duration back from now/, bad);
    }
    assert.match(message(() => parseSince('31d', now)), /since reaches back at most 30 days/);
    assert.match(message(() => parseSince('2026-12-01T10:18:00Z', now)), /since must not be in the future/);
  });

  test('step: minute rows within 24 h, hour rows beyond or for steps over 1 h, aligned to the step', () => {
    assert.deepEqual(seriesRange(undefined, undefined, now), {
      since: Date.parse('2026-12-01T09:17:00Z') / 1000, until: Date.parse('2026-12-01T10:18:00Z') / 1000, step: 60, resolution: 60,
    });
    assert.deepEqual(seriesRange('24h', '1h', now), {
      since: Date.parse('2026-11-30T10:00:00Z') / 1000, until: Date.parse('2026-12-01T11:00:00Z') / 1000, step: 3600, resolution: 60,
    });
    assert.deepEqual(seriesRange('30d', undefined, now), {
      since: Date.parse('2026-11-01T10:00:00Z') / 1000, until: Date.parse('2026-12-01T11:00:00Z') / 1000, step: 3600, resolution: 3600,
    });
    assert.deepEqual(seriesRange('1h', '1d', now), {
      since: Date.parse('2026-12-01T00:00:00Z') / 1000, until: Date.parse('2026-12-02T00:00:00Z') / 1000, step: 86_400, resolution: 3600,
    });
    assert.equal(seriesRange('15m', '300', now).step, 300);
    assert.equal(seriesRange('15m', '5m', now).step, 300);
    assert.equal((seriesRange('24h', '60', now).until - seriesRange('24h', '60', now).since) / 60, 1441, 'the longest minute series');
    assert.match(message(() => seriesRange('1h', '45', now)), /^step must be a multiple of 60 s \(1m\), got 45 s$/);
    assert.match(message(() => seriesRange('2d', '60', now)), /^step must be a multiple of 3600 s \(1h\) for a since more than 24 h back/);
    assert.match(message(() => seriesRange('1h', '90m', now)), /^step must be a multiple of 3600 s \(1h\) for steps over 1 h/);
    for (const bad of ['0', '-60', '1.5m', '1w', 'x']) assert.match(message(() => seriesRange('1h', bad, now)), /^step must be a number of seconds/, bad);
  });

  test('totals: since aligned down and now up to the resolution', () => {
    assert.deepEqual(totalsRange('15m', now), { since: Date.parse('2026-12-01T10:02:00Z') / 1000, until: Date.parse('2026-12-01T10:18:00Z') / 1000, resolution: 60 });
    assert.deepEqual(totalsRange('7d', now), { since: Date.parse('2026-11-24T10:00:00Z') / 1000, until: Date.parse('2026-12-01T11:00:00Z') / 1000, resolution: 3600 });
  });
});
