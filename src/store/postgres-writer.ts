// A batch's transaction on PostgreSQL (see invocation-writer.ts), on one pooled connection with named (prepared
// once per connection) statements. Rows go in as arrays through unnest, so a batch costs the same handful of
// round trips however many records it holds. Several hosts may write the same statistics buckets at once: a
// bucket is merged under its row lock (SELECT ... FOR UPDATE, after an INSERT ... ON CONFLICT DO NOTHING made
// sure it exists), and every transaction takes its locks in one order (trims by function, buckets by key).
import { DatabaseError, type Pool, type PoolClient } from 'pg';
import type { KeyedBucket } from '../stats/batch.js';
import { mergeBucket } from '../stats/bucket.js';
import { planBatch, type BatchPlan, type EventChange, type Write } from './invocation-writer.js';
import { escapeValue, unescapeRow } from './postgres-text.js';
import { bucketToRow, queuedEventColumns, rowToBucket, type EventRow, type InvocationRow, type QueuedEventRow, type StatsRow } from './rows.js';

/** A batch that deadlocked or hit a serialization failure is run again this many times before it fails. */
const TRANSIENT_RETRIES = 3;

const invocationColumns = ['id', 'function_id', 'request_id', 'status', 'duration_ms', 'invoked_at', 'version', 'cold_start', 'logs', 'error', 'attempt', 'async'] as const;
const eventColumns = ['request_id', 'function_id', 'payload', 'state', 'attempts', 'failures', 'enqueued_at', 'next_attempt_at', 'last_error', 'dead_reason', 'updated_at'] as const;
const statsColumns = ['function_id', 'resolution', 'bucket_start', 'invocations', 'errors', 'timeouts', 'cold_starts', 'duration_sum', 'duration_min', 'duration_max', 'histogram'] as const;
const statsTypes = 'text[], int[], bigint[], int[], int[], int[], int[], float8[], float8[], float8[], text[]';

const statements = {
  // WITH ORDINALITY ... ORDER BY: rows are inserted, and take their seq, in call order.
  insertInvocations: `INSERT INTO invocations (${invocationColumns.join(', ')})
    SELECT ${invocationColumns.join(', ')} FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[], $7::int[], $8::int[],
      $9::text[], $10::text[], $11::int[], $12::int[]) WITH ORDINALITY AS r(${invocationColumns.join(', ')}, n) ORDER BY n`,
  insertEvent: `INSERT INTO async_events (${eventColumns.join(', ')}) VALUES (${eventColumns.map((_, i) => `$${i + 1}`).join(', ')})`,
  // Every column but the payload, which a save never rewrites (up to 1 MiB).
  updateEvent: `UPDATE async_events SET ${queuedEventColumns.slice(1).map((column, i) => `${column} = $${i + 2}`).join(', ')},
    lease_host = NULL, lease_expires_at = NULL WHERE request_id = $1`,
  deleteEvent: 'DELETE FROM async_events WHERE request_id = $1',
  // Per function: everything up to the newest record beyond the kept ones (none if there are not that many). The
  // cut is found once per function (LATERAL), then the delete is a range of the (function_id, seq) index.
  trim: `DELETE FROM invocations i USING unnest($1::text[], $2::int[]) AS t(function_id, keep)
    CROSS JOIN LATERAL (SELECT seq FROM invocations WHERE function_id = t.function_id ORDER BY seq DESC LIMIT 1 OFFSET t.keep) AS cut
    WHERE i.function_id = t.function_id AND i.seq <= cut.seq`,
  // A bucket nobody has yet is the batch's own; the rest come back as conflicts, to be merged.
  insertBuckets: `INSERT INTO invocation_stats (${statsColumns.join(', ')})
    SELECT ${statsColumns.join(', ')} FROM unnest(${statsTypes.split(', ').map((type, i) => `$${i + 1}::${type}`).join(', ')})
      WITH ORDINALITY AS b(${statsColumns.join(', ')}, n) ORDER BY n
    ON CONFLICT DO NOTHING RETURNING function_id, resolution, bucket_start`,
  // The newest committed version of each row, locked until the commit: no other host merges into it meanwhile.
  lockBuckets: `SELECT s.* FROM invocation_stats s
    JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS k(function_id, resolution, bucket_start) USING (function_id, resolution, bucket_start)
    ORDER BY s.function_id COLLATE "C", s.resolution, s.bucket_start FOR UPDATE OF s`,
  updateBuckets: `UPDATE invocation_stats s SET ${statsColumns.slice(3).map((column) => `${column} = b.${column}`).join(', ')}
    FROM unnest(${statsTypes.split(', ').map((type, i) => `$${i + 1}::${type}`).join(', ')}) AS b(${statsColumns.join(', ')})
    WHERE s.function_id = b.function_id AND s.resolution = b.resolution AND s.bucket_start = b.bucket_start`,
} as const;

type StatementName = keyof typeof statements;

/** The batch commit of the PostgreSQL store. */
export function postgresBatchCommit(pool: Pool): (writes: readonly Write[]) => Promise<void> {
  return async (writes) => {
    const plan = planBatch(writes);
    for (let attempt = 1; ; attempt++) {
      try {
        return await inTransaction(pool, (client) => runPlan(client, plan));
      } catch (error) {
        if (attempt > TRANSIENT_RETRIES || !isTransient(error)) throw error;
      }
    }
  };
}

/**
 * Whether a failed batch is worth retrying write by write: the server refused a statement (a function deleted
 * meanwhile) and the transaction rolled back. After a lost connection (or one the server is ending: classes 08
 * and 57) it is not known whether the COMMIT arrived, so the writes fail rather than risk being stored twice.
 */
export function refusedByServer(error: unknown): boolean {
  return error instanceof DatabaseError && !/^(08|57)/.test(error.code ?? '');
}

/** Deadlock (two hosts' batches locking rows in different orders after all) or serialization failure. */
function isTransient(error: unknown): boolean {
  return error instanceof DatabaseError && (error.code === '40P01' || error.code === '40001');
}

async function inTransaction(pool: Pool, run: (client: PoolClient) => Promise<void>): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await run(client);
    await client.query('COMMIT');
  } catch (error) {
    // A connection that cannot even roll back is broken: it leaves the pool.
    const rolledBack = await client.query('ROLLBACK').then(() => true, () => false);
    client.release(!rolledBack);
    throw error;
  }
  client.release();
}

async function runPlan(client: PoolClient, plan: BatchPlan): Promise<void> {
  if (plan.invocations.length > 0) await execute(client, 'insertInvocations', columns<InvocationRow>(plan.invocations, invocationColumns));
  for (const change of plan.events) await changeEvent(client, change);
  if (plan.trims.length > 0) {
    await execute(client, 'trim', [plan.trims.map((t) => t.functionId), plan.trims.map((t) => t.retention)]);
  }
  await addBuckets(client, plan.buckets);
}

function changeEvent(client: PoolClient, change: EventChange): Promise<unknown> {
  if ('insert' in change) return execute(client, 'insertEvent', fields<EventRow>(change.insert, eventColumns));
  if ('update' in change) return execute(client, 'updateEvent', fields<QueuedEventRow>(change.update, queuedEventColumns));
  return execute(client, 'deleteEvent', [change.delete]);
}

async function addBuckets(client: PoolClient, buckets: readonly KeyedBucket[]): Promise<void> {
  if (buckets.length === 0) return;
  const inserted = await execute<StatsRow>(client, 'insertBuckets', columns<StatsRow>(buckets.map(bucketToRow), statsColumns));
  const isNew = new Set(inserted.map((row) => bucketKey(row.function_id, row.resolution, row.bucket_start)));
  const toMerge = new Map<string, KeyedBucket>();
  for (const b of buckets) {
    const key = bucketKey(b.function_id, b.resolution, b.start);
    if (!isNew.has(key)) toMerge.set(key, b);
  }
  if (toMerge.size === 0) return;
  const keys = [...toMerge.values()];
  const stored = await execute<StatsRow>(client, 'lockBuckets', [keys.map((b) => b.function_id), keys.map((b) => b.resolution), keys.map((b) => b.start)]);
  const merged = stored.map((row) => {
    const keyed = rowToBucket(row);
    const batch = toMerge.get(bucketKey(row.function_id, row.resolution, row.bucket_start));
    if (batch) mergeBucket(keyed.bucket, batch.bucket);
    return bucketToRow(keyed);
  });
  await execute(client, 'updateBuckets', columns<StatsRow>(merged, statsColumns));
}

function bucketKey(functionId: string, resolution: number, start: number): string {
  return `${resolution}/${start}/${functionId}`;
}

/** Runs a named statement (PostgreSQL prepares it once per connection) and returns its rows, unescaped. */
async function execute<R extends object = object>(client: PoolClient, name: StatementName, values: unknown[]): Promise<R[]> {
  const result = await client.query<R>({ name: `fnvm_${name}`, text: statements[name], values: values.map(escapeValue) });
  return result.rows.map(unescapeRow);
}

/** Rows as one array per column, the form unnest takes. */
function columns<R>(rows: readonly R[], names: readonly (keyof R)[]): unknown[][] {
  return names.map((name) => rows.map((row) => row[name]));
}

function fields<R>(row: R, names: readonly (keyof R)[]): unknown[] {
  return names.map((name) => row[name]);
}
