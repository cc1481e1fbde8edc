// Per-function invocation statistics as the API answers them: a function's time series, and every function's
// totals over a range (the console's list). The buckets come from the store; folding them is src/stats.
import type { KeyedBucket } from '../stats/batch.js';
import { emptyBucket, summarise, type BucketSummary, type DurationSummary } from '../stats/bucket.js';
import { isoOf, seriesReads, toSeries, totalsByFunction, totalsReads, type RowRange, type SeriesPoint } from '../stats/series.js';
import type { FunctionRecord, Store } from '../store/types.js';
import { seriesRange, totalsRange } from './metrics-range.js';

export interface FunctionMetrics {
  function_id: string;
  name: string;
  since: string;
  until: string;
  step_seconds: number;
  resolution_seconds: number;
  points: SeriesPoint[];
  total: BucketSummary;
}

export interface MetricsSummaryItem {
  function_id: string;
  name: string;
  invocations: number;
  errors: number;
  timeouts: number;
  cold_starts: number;
  /** errors / invocations; null without invocations. */
  error_rate: number | null;
  duration_ms: DurationSummary;
}

export interface MetricsSummary {
  since: string;
  until: string;
  items: MetricsSummaryItem[];
}

export async function functionMetrics(store: Store, record: FunctionRecord, since: string | undefined, step: string | undefined, nowMs: number): Promise<FunctionMetrics> {
  const range = seriesRange(since, step, nowMs);
  const { points, total } = toSeries(await read(store, seriesReads(range), record.id), range);
  return {
    function_id: record.id,
    name: record.name,
    since: isoOf(range.since),
    until: isoOf(range.until),
    step_seconds: range.step,
    resolution_seconds: range.resolution,
    points,
    total,
  };
}

/** One item per function of `records`, in their order; zeros for one without invocations in the range. */
export async function metricsSummary(store: Store, records: readonly FunctionRecord[], since: string | undefined, nowMs: number): Promise<MetricsSummary> {
  const range = totalsRange(since, nowMs);
  const totals = totalsByFunction(await read(store, totalsReads(range.since, range.until, range.resolution)));
  const items = records.map((record): MetricsSummaryItem => {
    const { invocations, errors, timeouts, cold_starts, duration_ms } = summarise(totals.get(record.id) ?? emptyBucket());
    return {
      function_id: record.id,
      name: record.name,
      invocations,
      errors,
      timeouts,
      cold_starts,
      error_rate: invocations === 0 ? null : errors / invocations,
      duration_ms,
    };
  });
  return { since: isoOf(range.since), until: isoOf(range.until), items };
}

async function read(store: Store, reads: RowRange[], functionId?: string): Promise<KeyedBucket[]> {
  const parts = await Promise.all(reads.map((r) => store.readStats({ ...r, functionId })));
  return parts.flat();
}
