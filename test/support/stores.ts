// The store tests run once per store, through one interface: SQLite files in a temporary directory, and
// databases of a real PostgreSQL server started for the test file (test/support/postgres.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { Pool } from 'pg';
import type { StoreOptions } from '../../src/store/kysely-store.js';
import { openPostgresStore, pgTypes } from '../../src/store/postgres.js';
import type { Tables } from '../../src/store/rows.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/types.js';
import { startPostgres, type TestPostgres } from './postgres.js';

export interface StoreBackend {
  /** A new empty database: a file path (in a directory the store has to create) or a URL. */
  fresh(): Promise<string>;
  open(database: string, options?: StoreOptions): Promise<Store>;
  /** Kysely on the database beside the store (SQLite's foreign keys on, as the store has them), ended with the test. */
  raw(t: TestContext, database: string): Kysely<Tables>;
}

/**
 * A value a before hook makes, for the tests after it. If making it fails (no PostgreSQL installed), every test
 * that asks for it fails with that error: counted as failures, not cancelled.
 */
function setBefore<T>(make: () => Promise<T>, end: (value: T) => Promise<void>): () => T {
  let made: { value: T } | { error: unknown } = { error: new Error('asked for before its before hook ran') };
  before(async () => {
    made = await make().then((value) => ({ value }), (error: unknown) => ({ error }));
  });
  after(() => ('value' in made ? end(made.value) : undefined));
  return () => {
    if ('error' in made) throw made.error;
    return made.value;
  };
}

/** A real PostgreSQL server for the tests of the enclosing describe (started before them, stopped after). */
export function withPostgres(): () => TestPostgres {
  return setBefore(startPostgres, (server) => server.stop());
}

/** Kysely on a SQLite file beside the store, with foreign keys on as the store has them; closed with the test. */
export function rawSqlite(t: TestContext, path: string): Kysely<Tables> {
  const database = new Database(path);
  database.pragma('foreign_keys = ON');
  const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database }) });
  t.after(() => db.destroy());
  return db;
}

/** Kysely on a PostgreSQL database beside the store; its pool ends with the test. */
export function rawPostgres(t: TestContext, url: string): Kysely<Tables> {
  const pool = new Pool({ connectionString: url, types: pgTypes });
  // pool.end() resolves before its connections have closed: one may still hear the server stop (57P01) after the
  // test, and a pool without a listener would make that an uncaught error.
  pool.on('error', () => {});
  const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  t.after(() => db.destroy());
  return db;
}

/** SQLite files in a temporary directory made before the enclosing describe's tests and removed after them. */
export function sqliteBackend(): StoreBackend {
  const dir = setBefore(() => mkdtemp(join(tmpdir(), 'fnvm-store-')), (path) => rm(path, { recursive: true, force: true }));
  let next = 0;
  return {
    fresh: async () => join(dir(), `db${next++}`, 'fnvm.sqlite'),
    open: (path, options) => openSqliteStore(path, options),
    raw: rawSqlite,
  };
}

/** Databases of a PostgreSQL server started before the enclosing describe's tests and stopped after them. */
export function postgresBackend(): StoreBackend {
  const server = withPostgres();
  return {
    fresh: () => server().createDatabase(),
    open: (url, options) => openPostgresStore(url, options),
    raw: rawPostgres,
  };
}

/** Defines `suite` once per store, each in a describe named after it, with its directory or server around it. */
export function forEachStore(suite: (backend: StoreBackend) => void): void {
  describe('SQLite', () => suite(sqliteBackend()));
  describe('PostgreSQL', () => suite(postgresBackend()));
}
