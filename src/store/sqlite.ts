// The Store on SQLite: better-sqlite3 through Kysely (the queries shared with PostgreSQL, kysely-store.ts), a
// file in WAL mode checkpointed by a worker thread, records group-committed with prepared statements.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, type SqliteDatabase } from 'kysely';
import { backstopCheckpointPages, startCheckpointer, type Checkpointer } from './checkpointer.js';
import { InvocationWriter } from './invocation-writer.js';
import { KyselyStore, type StoreOptions } from './kysely-store.js';
import { migrateToLatest } from './migrations.js';
import type { Tables } from './rows.js';
import { sqliteBatchCommit } from './sqlite-writer.js';
import type { Store } from './types.js';

const MEMORY = ':memory:';
const STATEMENT_CACHE_SIZE = 200;

export type SqliteStoreOptions = StoreOptions;

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
    const writer = new InvocationWriter(sqliteBatchCommit(sqlite, (write) =>
      // A Kysely transaction spans awaits: wait for it to end. Otherwise nothing is open, and better-sqlite3 is
      // synchronous, so the write is over before any other statement can start.
      sqlite.inTransaction ? db.connection().execute(async () => write()) : new Promise((resolve) => resolve(write())),
    ));
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

class SqliteStore extends KyselyStore {
  constructor(db: Kysely<Tables>, writer: InvocationWriter, private readonly checkpointer: Checkpointer | null, options: StoreOptions) {
    super(db, writer, options);
  }

  protected isNameClash(err: unknown): boolean {
    return (
      err instanceof Database.SqliteError &&
      err.code === 'SQLITE_CONSTRAINT_UNIQUE' &&
      err.message.includes('functions.name')
    );
  }

  protected async release(): Promise<void> {
    await this.checkpointer?.stop();
  }
}
