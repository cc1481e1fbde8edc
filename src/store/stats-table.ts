// The invocation_stats table on SQLite: row codec, and the per-batch bucket upsert run inside the invocation
// writer's transaction (a read of the stored bucket, a merge, one write; no other writer can come between).
import type Database from 'better-sqlite3';
import type { KeyedBucket } from '../stats/batch.js';
import { mergeBucket, type StatsBucket } from '../stats/bucket.js';
import { decodeHistogram, encodeHistogram } from '../stats/histogram.js';
import { isResolution } from '../stats/resolutions.js';

/** A bucket as a row: its key, its counts, its histogram in the stored form. */
export interface StatsRow extends Omit<StatsBucket, 'histogram'> {
  function_id: string;
  resolution: number;
  bucket_start: number;
  histogram: string;
}

export function rowToBucket(row: StatsRow): KeyedBucket {
  const { function_id, resolution, bucket_start, histogram, ...counts } = row;
  if (!isResolution(resolution)) throw new Error(`invocation_stats: unknown resolution ${resolution}`);
  return { function_id, resolution, start: bucket_start, bucket: { ...counts, histogram: decodeHistogram(histogram) } };
}

function bucketToRow({ function_id, resolution, start, bucket }: KeyedBucket): StatsRow {
  const { histogram, ...counts } = bucket;
  return { function_id, resolution, bucket_start: start, ...counts, histogram: encodeHistogram(histogram) };
}

export class StatsUpserter {
  private readonly select: Database.Statement<[string, number, number], StatsRow>;
  private readonly upsert: Database.Statement<[StatsRow]>;

  constructor(sqlite: Database.Database) {
    this.select = sqlite.prepare<[string, number, number], StatsRow>(
      'SELECT * FROM invocation_stats WHERE function_id = ? AND resolution = ? AND bucket_start = ?',
    );
    // An update of an existing row leaves its key, so the age index is written only when a bucket starts.
    this.upsert = sqlite.prepare<[StatsRow]>(
      `INSERT INTO invocation_stats (function_id, resolution, bucket_start, invocations, errors, timeouts, cold_starts,
         duration_sum, duration_min, duration_max, histogram)
       VALUES (@function_id, @resolution, @bucket_start, @invocations, @errors, @timeouts, @cold_starts,
         @duration_sum, @duration_min, @duration_max, @histogram)
       ON CONFLICT (function_id, resolution, bucket_start) DO UPDATE SET invocations = excluded.invocations,
         errors = excluded.errors, timeouts = excluded.timeouts, cold_starts = excluded.cold_starts,
         duration_sum = excluded.duration_sum, duration_min = excluded.duration_min, duration_max = excluded.duration_max,
         histogram = excluded.histogram`,
    );
  }

  /** Adds a batch's bucket to the stored one (inside the caller's transaction). */
  add(batch: KeyedBucket): void {
    const row = this.select.get(batch.function_id, batch.resolution, batch.start);
    if (row === undefined) {
      this.upsert.run(bucketToRow(batch));
      return;
    }
    const stored = rowToBucket(row);
    mergeBucket(stored.bucket, batch.bucket);
    this.upsert.run(bucketToRow(stored));
  }
}
