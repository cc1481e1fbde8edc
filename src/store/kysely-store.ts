// The Store's queries, written once with Kysely for SQLite and PostgreSQL alike; a store adds how it connects,
// how it group-commits (invocation-writer.ts) and how its database reports a taken name.
import type { ExpressionBuilder, Kysely } from 'kysely';
import { sql, SqliteAdapter } from 'kysely';
import type { KeyedBucket } from '../stats/batch.js';
import { resolutions, retentionCutoff } from '../stats/resolutions.js';
import type { InvocationWriter } from './invocation-writer.js';
import { newFunctionRow, patchToRow, queuedEventColumns, rowToBucket, rowToEvent, rowToFunction, rowToInvocation, timestamp, type Tables } from './rows.js';
import {
  NameTakenError,
  type AsyncEvent,
  type EventSettlement,
  type QueuedEvent,
  type FunctionPatch,
  type FunctionRecord,
  type InvocationRecord,
  type NewFunction,
  type StatsQuery,
  type Store,
} from './types.js';

/** Statistics past their retention are deleted this often (and at open), off the request path. */
export const statsPruneIntervalMs = 10 * 60_000;

export interface StoreOptions {
  /** The clock statistics are pruned by (tests move it instead of waiting a day). */
  now?: () => number;
  /** Where a failed background prune (or, on PostgreSQL, a lost idle connection) is reported. */
  log?: (message: string) => void;
}

export abstract class KyselyStore implements Store {
  private readonly now: () => number;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(
    protected readonly db: Kysely<Tables>,
    protected readonly writer: InvocationWriter,
    options: StoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    const log = options.log ?? (() => {});
    this.pruneTimer = setInterval(() => {
      this.pruneStats().catch((error: unknown) => log(`pruning statistics failed: ${(error as Error).message}`));
    }, statsPruneIntervalMs).unref();
  }

  /** Whether a failed write clashed with the unique function name. */
  protected abstract isNameClash(error: unknown): boolean;

  /** Releases what the store holds beyond its Kysely instance (called once writes are drained, before destroy). */
  protected abstract release(): Promise<void>;

  async createFunction(fn: NewFunction): Promise<FunctionRecord> {
    const row = newFunctionRow(fn, timestamp());
    const created = await this.guardName(fn.name, () =>
      this.db.insertInto('functions').values(row).returningAll().executeTakeFirstOrThrow(),
    );
    return rowToFunction({ ...created, last_invoked_at: null });
  }

  getFunction(id: string): Promise<FunctionRecord | undefined> {
    return this.findFunction('id', id);
  }

  getFunctionByName(name: string): Promise<FunctionRecord | undefined> {
    return this.findFunction('name', name);
  }

  async listFunctions(): Promise<FunctionRecord[]> {
    // rowid is insertion order (PostgreSQL's is an identity column of that name); created_at alone ties within a ms.
    const rows = await this.selectFunctions().orderBy('created_at').orderBy(sql`functions.rowid`).execute();
    return rows.map(rowToFunction);
  }

  async updateFunction(id: string, patch: FunctionPatch): Promise<FunctionRecord | undefined> {
    const row = { ...patchToRow(patch), updated_at: timestamp() };
    const updated = await this.guardName(patch.name, () =>
      this.db.updateTable('functions').set(row).where('id', '=', id).returningAll().returning(lastInvokedAt).executeTakeFirst(),
    );
    return updated && rowToFunction(updated);
  }

  deleteFunction(id: string): Promise<boolean> {
    // Deletes the history explicitly too, so it does not rely on SQLite's foreign key pragma being on.
    return this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('invocations').where('function_id', '=', id).execute();
      await trx.deleteFrom('invocation_stats').where('function_id', '=', id).execute();
      await trx.deleteFrom('async_events').where('function_id', '=', id).execute();
      const { numDeletedRows } = await trx.deleteFrom('functions').where('id', '=', id).executeTakeFirst();
      return numDeletedRows > 0n;
    });
  }

  // The hot path (once per invocation): group commit, see invocation-writer.ts.
  async recordInvocation(invocation: InvocationRecord, retention: number, settle?: EventSettlement): Promise<void> {
    if (!Number.isInteger(retention) || retention < 0) {
      throw new RangeError(`retention must be a non-negative integer, got ${retention}`);
    }
    return this.writer.write({ kind: 'record', invocation, retention, ...(settle && { settle }) });
  }

  enqueueEvent(event: AsyncEvent): Promise<void> {
    return this.writer.write({ kind: 'enqueue', event });
  }

  async claimEvent(event: QueuedEvent, host: string, leaseMs: number): Promise<boolean> {
    const sqlite = this.db.getExecutor().adapter instanceof SqliteAdapter;
    const now = sqlite ? sql<number>`${Date.now()}` : sql<number>`(extract(epoch from clock_timestamp()) * 1000)::bigint`;
    const claimable = this.db.selectFrom('async_events').select('request_id')
      .where('request_id', '=', event.request_id).where('state', '=', 'queued')
      .where((eb) => eb.or([eb('lease_host', 'is', null), eb('lease_host', '=', host), eb('lease_expires_at', '<', now)]));
    // PostgreSQL: a row another host's claim has locked is skipped, not waited for (that claim decides it).
    const target = sqlite ? claimable : claimable.forUpdate().skipLocked();
    const { numUpdatedRows } = await this.db.updateTable('async_events')
      .set({
        attempts: event.attempts, failures: event.failures, next_attempt_at: event.next_attempt_at, updated_at: event.updated_at,
        lease_host: host, lease_expires_at: sql`${now} + ${leaseMs}`,
      })
      .where('request_id', '=', (eb) => eb.selectFrom(target.as('claimable')).select('claimable.request_id'))
      .executeTakeFirst();
    return numUpdatedRows > 0n;
  }

  saveEvent(event: QueuedEvent): Promise<void> {
    return this.writer.write({ kind: 'save', event });
  }

  async deleteEvent(requestId: string): Promise<boolean> {
    const { numDeletedRows } = await this.db.deleteFrom('async_events').where('request_id', '=', requestId).executeTakeFirst();
    return numDeletedRows > 0n;
  }

  async getEvent(requestId: string): Promise<AsyncEvent | undefined> {
    const row = await this.db.selectFrom('async_events').select([...queuedEventColumns, 'payload']).where('request_id', '=', requestId).executeTakeFirst();
    return row && rowToEvent(row);
  }

  async eventPayload(requestId: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('async_events').select('payload').where('request_id', '=', requestId).executeTakeFirst();
    return row?.payload;
  }

  async listQueuedEvents(functionId?: string): Promise<QueuedEvent[]> {
    let query = this.db.selectFrom('async_events').select(queuedEventColumns).where('state', '=', 'queued');
    if (functionId !== undefined) query = query.where('function_id', '=', functionId);
    return (await query.execute()).map(rowToEvent);
  }

  async listDeadLetters(functionId: string, limit: number, offset: number): Promise<AsyncEvent[]> {
    return (await this.deadEvents(functionId, limit, offset).select('payload').execute()).map(rowToEvent);
  }

  async listDeadEvents(functionId: string, limit: number, offset: number): Promise<QueuedEvent[]> {
    return (await this.deadEvents(functionId, limit, offset).execute()).map(rowToEvent);
  }

  private deadEvents(functionId: string, limit: number, offset: number) {
    return this.db
      .selectFrom('async_events')
      .select(queuedEventColumns)
      .where('function_id', '=', functionId)
      .where('state', '=', 'dead')
      .orderBy('updated_at', 'desc')
      .orderBy('request_id')
      .limit(limit)
      .offset(offset);
  }

  async countDeadLetters(functionId?: string): Promise<Map<string, number>> {
    let query = this.db
      .selectFrom('async_events')
      .select((eb) => ['function_id', eb.fn.countAll<number>().as('count')])
      .where('state', '=', 'dead');
    if (functionId !== undefined) query = query.where('function_id', '=', functionId);
    const rows = await query.groupBy('function_id').execute();
    return new Map(rows.map((r) => [r.function_id, Number(r.count)]));
  }

  async listInvocations(functionId: string, limit: number, offset: number): Promise<InvocationRecord[]> {
    const rows = await this.db
      .selectFrom('invocations')
      .selectAll()
      .where('function_id', '=', functionId)
      .orderBy('seq', 'desc')
      .limit(limit)
      .offset(offset)
      .execute();
    return rows.map(rowToInvocation);
  }

  async countInvocations(functionId: string): Promise<number> {
    const { count } = await this.db
      .selectFrom('invocations')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('function_id', '=', functionId)
      .executeTakeFirstOrThrow();
    return count;
  }

  async readStats(query: StatsQuery): Promise<KeyedBucket[]> {
    let select = this.db
      .selectFrom('invocation_stats')
      .selectAll()
      .where('resolution', '=', query.resolution)
      .where('bucket_start', '>=', query.from)
      .where('bucket_start', '<', query.to);
    if (query.functionId !== undefined) select = select.where('function_id', '=', query.functionId);
    const rows = await select.orderBy('bucket_start').orderBy('function_id').execute();
    return rows.map(rowToBucket);
  }

  async pruneStats(nowMs = this.now()): Promise<number> {
    let deleted = 0n;
    for (const resolution of resolutions) {
      const { numDeletedRows } = await this.db
        .deleteFrom('invocation_stats')
        .where('resolution', '=', resolution)
        .where('bucket_start', '<', retentionCutoff(nowMs, resolution))
        .executeTakeFirst();
      deleted += numDeletedRows;
    }
    return Number(deleted);
  }

  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
    await this.writer.drain();
    await this.release();
    await this.db.destroy();
  }

  private async findFunction(column: 'id' | 'name', value: string): Promise<FunctionRecord | undefined> {
    const row = await this.selectFunctions().where(column, '=', value).executeTakeFirst();
    return row && rowToFunction(row);
  }

  private selectFunctions() {
    return this.db.selectFrom('functions').selectAll().select(lastInvokedAt);
  }

  /** Runs a write, turning a clash on the unique function name into NameTakenError. */
  private async guardName<T>(name: string | undefined, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      if (name !== undefined && this.isNameClash(err)) throw new NameTakenError(name);
      throw err;
    }
  }
}

/**
 * A function's last_invoked_at: the invoked_at of its newest record (one step down the (function_id, seq) index),
 * so recording an invocation writes nothing but the record.
 */
function lastInvokedAt(eb: ExpressionBuilder<Tables, 'functions'>) {
  return eb
    .selectFrom('invocations')
    .select('invoked_at')
    .whereRef('invocations.function_id', '=', 'functions.id')
    .orderBy('seq', 'desc')
    .limit(1)
    .as('last_invoked_at');
}
