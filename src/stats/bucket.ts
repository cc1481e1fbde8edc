// One time bucket of a function's invocation statistics (a minute or an hour), the unit every store keeps, and
// its summary as the API shows it. Store-agnostic: SQLite and PostgreSQL keep it alike.
import { addTo, emptyHistogram, maxCountedMs, mergeInto, quantile, type Histogram } from './histogram.js';

export interface StatsBucket {
  invocations: number;
  /** Every invocation that did not succeed (status error or timeout), as Lambda's Errors metric counts. */
  errors: number;
  /** Those of the errors that timed out. */
  timeouts: number;
  cold_starts: number;
  /** Sum, min and max of duration_ms; min and max are Infinity / -Infinity while empty. */
  duration_sum: number;
  duration_min: number;
  duration_max: number;
  histogram: Histogram;
}

/** What a bucket needs to know of one invocation record. */
export interface CountedInvocation {
  status: 'success' | 'error' | 'timeout';
  duration_ms: number;
  cold_start: boolean;
}

export function emptyBucket(): StatsBucket {
  return {
    invocations: 0,
    errors: 0,
    timeouts: 0,
    cold_starts: 0,
    duration_sum: 0,
    duration_min: Infinity,
    duration_max: -Infinity,
    histogram: emptyHistogram(),
  };
}

export function countInvocation(bucket: StatsBucket, invocation: CountedInvocation): void {
  // The duration is the guest's word: one that no invocation can have (negative, over the longest timeout) is
  // bounded, so a lying guest cannot make a month of sums Infinity or NaN.
  const duration = Math.min(Math.max(invocation.duration_ms, 0), maxCountedMs) || 0;
  bucket.invocations++;
  if (invocation.status !== 'success') bucket.errors++;
  if (invocation.status === 'timeout') bucket.timeouts++;
  if (invocation.cold_start) bucket.cold_starts++;
  bucket.duration_sum += duration;
  bucket.duration_min = Math.min(bucket.duration_min, duration);
  bucket.duration_max = Math.max(bucket.duration_max, duration);
  addTo(bucket.histogram, duration);
}

/** Adds `from` into `into`: exact, whatever the buckets' times or resolutions. */
export function mergeBucket(into: StatsBucket, from: StatsBucket): void {
  into.invocations += from.invocations;
  into.errors += from.errors;
  into.timeouts += from.timeouts;
  into.cold_starts += from.cold_starts;
  into.duration_sum += from.duration_sum;
  into.duration_min = Math.min(into.duration_min, from.duration_min);
  into.duration_max = Math.max(into.duration_max, from.duration_max);
  mergeInto(into.histogram, from.histogram);
}

export interface DurationSummary {
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

export interface BucketSummary {
  invocations: number;
  errors: number;
  timeouts: number;
  cold_starts: number;
  duration_ms: DurationSummary;
}

/** Milliseconds to the microsecond, as invocation records give them. */
export const toMicros = (ms: number): number => Math.round(ms * 1000) / 1000;

export function summarise(bucket: StatsBucket): BucketSummary {
  const { invocations: n, duration_min: min, duration_max: max, histogram } = bucket;
  const at = (q: number) => {
    const value = quantile(histogram, n, q, min, max);
    return value === null ? null : toMicros(value);
  };
  return {
    invocations: n,
    errors: bucket.errors,
    timeouts: bucket.timeouts,
    cold_starts: bucket.cold_starts,
    duration_ms: {
      p50: at(0.5),
      p95: at(0.95),
      p99: at(0.99),
      max: n === 0 ? null : toMicros(max),
      mean: n === 0 ? null : toMicros(bucket.duration_sum / n),
    },
  };
}
