// A batch's transaction on SQLite (see invocation-writer.ts): prepared statements run synchronously by
// better-sqlite3, so a batch is one uninterrupted transaction on the event loop (WAL, synchronous=NORMAL: a
// commit survives a crash of the process).
import type Database from 'better-sqlite3';
import { mergeBucket } from '../stats/bucket.js';
import { planBatch, type EventChange, type Write } from './invocation-writer.js';
import { bucketToRow, rowToBucket, type EventRow, type InvocationRow, type QueuedEventRow, type StatsRow } from './rows.js';

/**
 * Prepares the statements and returns the batch commit. `exclusive` runs a synchronous write while no other
 * transaction is open on the connection (the writer shares it with Kysely, whose transactions span awaits: a
 * BEGIN of ours inside one would only nest in it).
 */
export function sqliteBatchCommit(sqlite: Database.Database, exclusive: (write: () => void) => Promise<void>): (writes: readonly Write[]) => Promise<void> {
  const insert = sqlite.prepare<[InvocationRow]>(
    `INSERT INTO invocations (id, function_id, request_id, status, duration_ms, invoked_at, version, cold_start, logs, error, attempt, async)
     VALUES (@id, @function_id, @request_id, @status, @duration_ms, @invoked_at, @version, @cold_start, @logs, @error, @attempt, @async)`,
  );
  const enqueue = sqlite.prepare<[EventRow]>(
    `INSERT INTO async_events (request_id, function_id, payload, state, attempts, failures, enqueued_at, next_attempt_at, last_error, dead_reason, updated_at)
     VALUES (@request_id, @function_id, @payload, @state, @attempts, @failures, @enqueued_at, @next_attempt_at, @last_error, @dead_reason, @updated_at)`,
  );
  const save = sqlite.prepare<[QueuedEventRow]>(
    `UPDATE async_events SET state = @state, attempts = @attempts, failures = @failures, enqueued_at = @enqueued_at,
       next_attempt_at = @next_attempt_at, last_error = @last_error, dead_reason = @dead_reason, updated_at = @updated_at,
       lease_host = NULL, lease_expires_at = NULL
     WHERE request_id = @request_id`,
  );
  const remove = sqlite.prepare<[string]>('DELETE FROM async_events WHERE request_id = ?');
  const change = (event: EventChange) => {
    if ('insert' in event) enqueue.run(event.insert);
    else if ('update' in event) save.run(event.update);
    else remove.run(event.delete);
  };
  // Everything up to the newest record beyond the kept ones (NULL, deleting nothing, if there are not that many).
  const trim = sqlite.prepare<[string, string, number]>(
    `DELETE FROM invocations WHERE function_id = ? AND seq <= (
       SELECT seq FROM invocations WHERE function_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
  );
  const selectBucket = sqlite.prepare<[string, number, number], StatsRow>(
    'SELECT * FROM invocation_stats WHERE function_id = ? AND resolution = ? AND bucket_start = ?',
  );
  // An update of an existing row leaves its key, so the age index is written only when a bucket starts.
  const upsertBucket = sqlite.prepare<[StatsRow]>(
    `INSERT INTO invocation_stats (function_id, resolution, bucket_start, invocations, errors, timeouts, cold_starts,
       duration_sum, duration_min, duration_max, histogram)
     VALUES (@function_id, @resolution, @bucket_start, @invocations, @errors, @timeouts, @cold_starts,
       @duration_sum, @duration_min, @duration_max, @histogram)
     ON CONFLICT (function_id, resolution, bucket_start) DO UPDATE SET invocations = excluded.invocations,
       errors = excluded.errors, timeouts = excluded.timeouts, cold_starts = excluded.cold_starts,
       duration_sum = excluded.duration_sum, duration_min = excluded.duration_min, duration_max = excluded.duration_max,
       histogram = excluded.histogram`,
  );
  const commit = sqlite.transaction((writes: readonly Write[]) => {
    const plan = planBatch(writes);
    for (const row of plan.invocations) insert.run(row);
    for (const event of plan.events) change(event);
    for (const { functionId, retention } of plan.trims) trim.run(functionId, functionId, retention);
    // Read, merge, write: inside this transaction no other writer can come between.
    for (const batch of plan.buckets) {
      const row = selectBucket.get(batch.function_id, batch.resolution, batch.start);
      if (row === undefined) {
        upsertBucket.run(bucketToRow(batch));
        continue;
      }
      const stored = rowToBucket(row);
      mergeBucket(stored.bucket, batch.bucket);
      upsertBucket.run(bucketToRow(stored));
    }
  });
  return (writes) => exclusive(() => commit(writes));
}
