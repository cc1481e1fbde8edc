// The Store on SQLite (better-sqlite3 through Kysely, so a PostgreSQL store can share the query style).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, sql, type ExpressionBuilder, type Generated, type SqliteDatabase, type Insertable, type Selectable, type Updateable } from 'kysely';
import { backstopCheckpointPages, startCheckpointer, type Checkpointer } from './checkpointer.js';
import { InvocationWriter, type EventRow, type InvocationRow } from './invocation-writer.js';
import { migrateToLatest } from './migrations.js';
import { rowToBucket, type StatsRow } from './stats-table.js';
import type { KeyedBucket } from '../stats/batch.js';
import { resolutions, retentionCutoff } from '../stats/resolutions.js';
import {
  asyncDefaults,
  NameTakenError,
  type AsyncEvent,
  type EventSettlement,
  type FunctionPatch,
  type FunctionRecord,
  type InvocationRecord,
  type NewFunction,
  type QueuedEvent,
  type StatsQuery,
  type Store,
} from './types.js';

// Row types derive from the records so the two cannot drift apart; only encoded columns differ.
interface FunctionsTable extends Omit<FunctionRecord, 'env_vars' | 'last_invoked_at' | 'code' | 'package'> {
  env_vars: string;
  /** NOT NULL since 0001: '' for a packaged function. */
  code: string;
  package_sha256: string | null;
  package_size: number | null;
  package_unpacked_size: number | null;
  package_files: number | null;
}
interface InvocationsTable extends InvocationRow {
  seq: Generated<number>;
}
interface Tables {
  functions: FunctionsTable;
  invocations: InvocationsTable;
  invocation_stats: StatsRow;
  async_events: EventRow;
}
type FunctionRow = Selectable<FunctionsTable> & { last_invoked_at: string | null };

const MEMORY = ':memory:';
const STATEMENT_CACHE_SIZE = 200;
/** Statistics past their retention are deleted this often (and at open), off the request path. */
export const statsPruneIntervalMs = 10 * 60_000;

export interface SqliteStoreOptions {
  /** The clock statistics are pruned by (tests move it instead of waiting a day). */
  now?: () => number;
  /** Where a failed background prune is reported. */
  log?: (message: string) => void;
}

/**
 * Opens (creating if needed) the database file at `path`, or an in-memory one for ':memory:', migrates it and
 * prunes old statistics.
 */
export async function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Promise<Store> {
  if (path !== MEMORY) mkdirSync(dirname(path), { recursive: true });
  const sqlite = new Database(path);
  try {
    configure(sqlite);
    const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
    await migrateToLatest(db);
    const writer = new InvocationWriter(sqlite, (write) =>
      // A Kysely transaction spans awaits: wait for it to end. Otherwise nothing is open, and better-sqlite3 is
      // synchronous, so the write is over before any other statement can start.
      sqlite.inTransaction ? db.connection().execute(async () => write()) : new Promise((resolve) => resolve(write())),
    );
    const store = new SqliteStore(db, writer, path === MEMORY ? null : startCheckpointer(path), options);
    await store.pruneStats();
    return store;
  } catch (err) {
    sqlite.close();
    throw err;
  }
}

/**
 * Kysely's SQLite driver prepares every query anew; the same query shapes repeat (values are bound
 * parameters), so reusing prepared statements saves a parse per statement on the hot path.
 */
function withStatementCache(sqlite: Database.Database): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => sqlite.close(),
    prepare: (sql: string) => {
      const cached = cache.get(sql);
      if (cached && !cached.busy) return cached; // busy: an iterator is still reading it
      const statement = sqlite.prepare(sql);
      if (cache.size >= STATEMENT_CACHE_SIZE) cache.clear(); // bounds it should query shapes ever vary
      cache.set(sql, statement);
      return statement;
    },
  };
}

function configure(sqlite: Database.Database): void {
  sqlite.pragma('journal_mode = WAL'); // readers never block the writer; other processes can read
  sqlite.pragma('synchronous = NORMAL'); // with WAL: no corruption; only a power loss can drop the last commits
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON'); // off by default in SQLite, per connection
  // Checkpoints run in a worker (checkpointer.ts); this one only if the WAL grows past what the worker allows.
  sqlite.pragma(`wal_autocheckpoint = ${backstopCheckpointPages}`);
  sqlite.pragma(`journal_size_limit = ${backstopCheckpointPages * 4096}`); // the WAL file shrinks back after a burst
}

class SqliteStore implements Store {
  private readonly now: () => number;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(
    private readonly db: Kysely<Tables>,
    private readonly writer: InvocationWriter,
    private readonly checkpointer: Checkpointer | null,
    options: SqliteStoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    const log = options.log ?? (() => {});
    this.pruneTimer = setInterval(() => {
      this.pruneStats().catch((error: unknown) => log(`pruning statistics failed: ${(error as Error).message}`));
    }, statsPruneIntervalMs).unref();
  }

  async createFunction(fn: NewFunction): Promise<FunctionRecord> {
    const now = timestamp();
    const { code: _code, package: _package, ...fields } = fn;
    const row: Insertable<FunctionsTable> = {
      ...fields,
      code: '',
      ...sourceColumns(fn),
      env_vars: JSON.stringify(fn.env_vars),
      created_at: now,
      updated_at: now,
      init_ms: null,
      snapshot_bytes: null,
      description: fn.description ?? '',
      lambda_role: fn.lambda_role ?? null,
      lambda_runtime: fn.lambda_runtime ?? null,
      async_max_retries: fn.async_max_retries ?? asyncDefaults.maxRetries,
      async_max_event_age_seconds: fn.async_max_event_age_seconds ?? asyncDefaults.maxEventAgeSeconds,
      async_configured_at: fn.async_configured_at ?? null,
    };
    const created = await guardName(fn.name, () =>
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
    // rowid is insertion order; created_at alone ties within a millisecond.
    const rows = await this.selectFunctions().orderBy('created_at').orderBy(sql`functions.rowid`).execute();
    return rows.map(rowToFunction);
  }

  async updateFunction(id: string, patch: FunctionPatch): Promise<FunctionRecord | undefined> {
    const row = { ...patchToRow(patch), updated_at: timestamp() };
    const updated = await guardName(patch.name, () =>
      this.db.updateTable('functions').set(row).where('id', '=', id).returningAll().returning(lastInvokedAt).executeTakeFirst(),
    );
    return updated && rowToFunction(updated);
  }

  deleteFunction(id: string): Promise<boolean> {
    // Deletes the history explicitly too, so it does not rely on the foreign key pragma being on.
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

  saveEvent(event: QueuedEvent): Promise<void> {
    return this.writer.write({ kind: 'save', event });
  }

  async deleteEvent(requestId: string): Promise<boolean> {
    const { numDeletedRows } = await this.db.deleteFrom('async_events').where('request_id', '=', requestId).executeTakeFirst();
    return numDeletedRows > 0n;
  }

  async getEvent(requestId: string): Promise<AsyncEvent | undefined> {
    const row = await this.db.selectFrom('async_events').selectAll().where('request_id', '=', requestId).executeTakeFirst();
    return row && rowToEvent(row);
  }

  async eventPayload(requestId: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('async_events').select('payload').where('request_id', '=', requestId).executeTakeFirst();
    return row?.payload;
  }

  async listQueuedEvents(): Promise<QueuedEvent[]> {
    const rows = await this.db.selectFrom('async_events').select(queuedEventColumns).where('state', '=', 'queued').execute();
    return rows.map(rowToEvent);
  }

  async listDeadLetters(functionId: string, limit: number, offset: number): Promise<AsyncEvent[]> {
    const rows = await this.deadEvents(functionId, limit, offset).select('payload').execute();
    return rows.map(rowToEvent);
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

  async countDeadLetters(): Promise<Map<string, number>> {
    const rows = await this.db
      .selectFrom('async_events')
      .select((eb) => ['function_id', eb.fn.countAll<number>().as('count')])
      .where('state', '=', 'dead')
      .groupBy('function_id')
      .execute();
    return new Map(rows.map((r) => [r.function_id, r.count]));
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
    await this.checkpointer?.stop();
    await this.writer.drain();
    await this.db.destroy();
  }

  private async findFunction(column: 'id' | 'name', value: string): Promise<FunctionRecord | undefined> {
    const row = await this.selectFunctions().where(column, '=', value).executeTakeFirst();
    return row && rowToFunction(row);
  }

  private selectFunctions() {
    return this.db.selectFrom('functions').selectAll().select(lastInvokedAt);
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

/** ISO-8601 UTC with milliseconds: sorts as text in time order. */
function timestamp(): string {
  return new Date().toISOString();
}

/** Runs a write, turning a clash on the unique function name into NameTakenError. */
async function guardName<T>(name: string | undefined, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (name !== undefined && isNameClash(err)) throw new NameTakenError(name);
    throw err;
  }
}

function isNameClash(err: unknown): boolean {
  return (
    err instanceof Database.SqliteError &&
    err.code === 'SQLITE_CONSTRAINT_UNIQUE' &&
    err.message.includes('functions.name')
  );
}

function parseJson<T>(text: string): T {
  return JSON.parse(text) as T;
}

function rowToFunction(row: FunctionRow): FunctionRecord {
  const { code, package_sha256: sha256, package_size: size, package_unpacked_size: unpacked, package_files: files, ...rest } = row;
  const source = sha256 === null
    ? { code }
    : { package: { sha256, size: size ?? 0, unpacked_size: unpacked ?? 0, files: files ?? 0 } };
  return { ...rest, ...source, env_vars: parseJson<FunctionRecord['env_vars']>(row.env_vars) };
}

/** The columns of a function's source: its code, or its package (and then code is ''). */
function sourceColumns(source: Pick<FunctionPatch, 'code' | 'package'>) {
  const pkg = source.package;
  if (pkg) return { code: '', package_sha256: pkg.sha256, package_size: pkg.size, package_unpacked_size: pkg.unpacked_size, package_files: pkg.files };
  if (source.code !== undefined) return { code: source.code, package_sha256: null, package_size: null, package_unpacked_size: null, package_files: null };
  return {};
}

function patchToRow(patch: FunctionPatch): Updateable<FunctionsTable> {
  const { env_vars, code: _code, package: _package, ...rest } = patch;
  const row = { ...rest, ...sourceColumns(patch) };
  return env_vars === undefined ? row : { ...row, env_vars: JSON.stringify(env_vars) };
}

/** Every column of an event but its payload. */
const queuedEventColumns = [
  'request_id', 'function_id', 'state', 'attempts', 'failures', 'enqueued_at', 'next_attempt_at', 'last_error', 'dead_reason', 'updated_at',
] as const satisfies ReadonlyArray<keyof QueuedEvent>;

function rowToEvent<Row extends Pick<EventRow, 'last_error'>>(row: Row): Omit<Row, 'last_error'> & Pick<AsyncEvent, 'last_error'> {
  return { ...row, last_error: row.last_error === null ? null : parseJson<NonNullable<AsyncEvent['last_error']>>(row.last_error) };
}

function rowToInvocation(row: Selectable<InvocationsTable>): InvocationRecord {
  const { seq: _seq, cold_start, logs, error, async, ...rest } = row;
  return {
    ...rest,
    async: async === 1,
    cold_start: cold_start === 1,
    logs: parseJson<InvocationRecord['logs']>(logs),
    error: error === null ? null : parseJson<NonNullable<InvocationRecord['error']>>(error),
  };
}
