// A batch of invocation records folded into the buckets they touch: one minute and one hour bucket per function
// per record, merged in memory, so a store writes each bucket once per batch however many records it holds.
import { countInvocation, emptyBucket, type CountedInvocation, type StatsBucket } from './bucket.js';
import { bucketStart, resolutions, type Resolution } from './resolutions.js';

export interface BucketKey {
  function_id: string;
  resolution: Resolution;
  /** Unix seconds, UTC, a multiple of the resolution. */
  start: number;
}

export interface KeyedBucket extends BucketKey {
  bucket: StatsBucket;
}

export interface TimedInvocation extends CountedInvocation {
  function_id: string;
  /** ISO 8601: the invocation counts in the buckets of the time it started. */
  invoked_at: string;
}

export class BatchBuckets {
  private readonly buckets = new Map<string, KeyedBucket>();

  count(invocation: TimedInvocation): void {
    const ms = Date.parse(invocation.invoked_at);
    if (!Number.isFinite(ms)) throw new RangeError(`invoked_at is not a time: ${invocation.invoked_at}`);
    for (const resolution of resolutions) {
      const start = bucketStart(ms, resolution);
      const key = `${resolution}/${start}/${invocation.function_id}`;
      let keyed = this.buckets.get(key);
      if (!keyed) this.buckets.set(key, (keyed = { function_id: invocation.function_id, resolution, start, bucket: emptyBucket() }));
      countInvocation(keyed.bucket, invocation);
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  values(): IterableIterator<KeyedBucket> {
    return this.buckets.values();
  }
}
