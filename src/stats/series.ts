// Stored buckets folded into the steps of a time series and into totals, exactly (merges add counts).
import { emptyBucket, mergeBucket, summarise, type BucketSummary, type StatsBucket } from './bucket.js';
import type { KeyedBucket } from './batch.js';
import { hour, minute, type Resolution } from './resolutions.js';

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

/** Rows of one resolution with from <= start < to (unix seconds). */
export interface RowRange {
  resolution: Resolution;
  from: number;
  to: number;
}

/**
 * The rows that hold [from, to) (multiples of the resolution) for totals, fewest first: an hour row is exactly
 * the merge of its minute rows (both are written from the same records in one transaction), so the whole hours
 * inside come from hour rows and only the minutes at either end from minute rows (a day: ~24 + up to 118 rows,
 * not 1,440).
 */
export function totalsReads(from: number, to: number, resolution: Resolution): RowRange[] {
  const firstHour = Math.ceil(from / hour) * hour;
  const lastHour = Math.floor(to / hour) * hour;
  if (resolution === hour || firstHour >= lastHour) return [{ resolution, from, to }];
  const reads: RowRange[] = [
    { resolution: minute, from, to: firstHour },
    { resolution: hour, from: firstHour, to: lastHour },
    { resolution: minute, from: lastHour, to },
  ];
  return reads.filter((read) => read.from < read.to);
}

/** The rows a series folds: hour rows when its steps are whole hours (the same sums), else its resolution's. */
export function seriesReads(range: SeriesRange): RowRange[] {
  if (range.step % hour === 0) return [{ resolution: hour, from: range.since, to: range.until }];
  return [{ resolution: range.resolution, from: range.since, to: range.until }];
}

/**
 * One point per step from since to until, oldest first, empty steps included; buckets outside are ignored.
 * Buckets must not straddle steps: of the range's resolution, or hour rows when steps are whole hours.
 */
export function toSeries(buckets: Iterable<{ start: number; bucket: StatsBucket }>, range: SeriesRange): Series {
  const steps = Array.from({ length: (range.until - range.since) / range.step }, emptyBucket);
  for (const { start, bucket } of buckets) {
    const step = steps[Math.floor((start - range.since) / range.step)];
    if (step) mergeBucket(step, bucket);
  }
  const total = emptyBucket();
  for (const step of steps) mergeBucket(total, step);
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
