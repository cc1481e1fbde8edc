// Stored buckets folded into the steps of a time series and into totals, exactly (merges add counts).
import { emptyBucket, mergeBucket, summarise, type BucketSummary, type StatsBucket } from './bucket.js';
import type { KeyedBucket } from './batch.js';
import type { Resolution } from './resolutions.js';

/** A series' range, unix seconds: since and until multiples of step, step a multiple of the resolution read. */
export interface SeriesRange {
  since: number;
  until: number;
  step: number;
  resolution: Resolution;
}

export interface SeriesPoint extends BucketSummary {
  /** ISO 8601 start of the step. */
  time: string;
}

export interface Series {
  points: SeriesPoint[];
  total: BucketSummary;
}

export const isoOf = (seconds: number) => new Date(seconds * 1000).toISOString();

/** One point per step from since to until, oldest first, empty steps included; buckets outside are ignored. */
export function toSeries(buckets: Iterable<{ start: number; bucket: StatsBucket }>, range: SeriesRange): Series {
  const steps = Array.from({ length: (range.until - range.since) / range.step }, emptyBucket);
  const total = emptyBucket();
  for (const { start, bucket } of buckets) {
    const step = steps[Math.floor((start - range.since) / range.step)];
    if (!step) continue;
    mergeBucket(step, bucket);
    mergeBucket(total, bucket);
  }
  return {
    points: steps.map((step, i) => ({ time: isoOf(range.since + i * range.step), ...summarise(step) })),
    total: summarise(total),
  };
}

/** Every bucket merged, per function. */
export function totalsByFunction(buckets: Iterable<KeyedBucket>): Map<string, StatsBucket> {
  const totals = new Map<string, StatsBucket>();
  for (const { function_id, bucket } of buckets) {
    let total = totals.get(function_id);
    if (!total) totals.set(function_id, (total = emptyBucket()));
    mergeBucket(total, bucket);
  }
  return totals;
}
