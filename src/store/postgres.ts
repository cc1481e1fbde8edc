// The Store on PostgreSQL: node-postgres through Kysely's PostgresDialect (the queries shared with SQLite,
// kysely-store.ts), records group-committed by postgres-writer.ts. Several stores (hosts) may share one database:
// migrations take Kysely's advisory lock, and concurrent batches merge statistics under row locks.
import { Kysely, PostgresDialect } from 'kysely';
import { DatabaseError, Pool, TypeOverrides, types } from 'pg';
import { InvocationWriter } from './invocation-writer.js';
import { KyselyStore, type StoreOptions } from './kysely-store.js';
import { migrateToLatest } from './migrations.js';
import { EscapedTextPlugin } from './postgres-text.js';
import { postgresBatchCommit, refusedByServer } from './postgres-writer.js';
import type { Tables } from './rows.js';
import type { Store } from './types.js';

export type PostgresStoreOptions = StoreOptions;

/** How long opening a connection may take before it fails (node-postgres waits forever by default). */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * bigint columns (unix ms, counts, seq) come back as numbers, as SQLite's do: node-postgres gives strings, since
 * int8 can pass 2^53; these columns stay far below it. Per pool, so no other user of pg in the process is changed.
 */
export const pgTypes = new TypeOverrides();
pgTypes.setTypeParser(types.builtins.INT8, Number);

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/** Connects to the database at `url` (postgres:// or postgresql://), migrates it and prunes old statistics. */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<Store> {
  if (!isPostgresUrl(url)) throw new Error('a PostgreSQL URL starts with postgres:// or postgresql://');
  const log = options.log ?? (() => {});
  const pool = new Pool({
    connectionString: url,
    types: pgTypes,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    fallback_application_name: 'fnvm',
    keepAlive: true,
    allowExitOnIdle: true, // a store that is never closed must not keep the process alive
  });
  // Without a listener, an idle connection the server drops (a restart) would be an uncaught error.
  pool.on('error', (error) => log(`PostgreSQL: an idle connection failed: ${error.message}`));
  try {
    await pool.query('SELECT 1').catch((error: unknown) => {
      throw new Error(`cannot use PostgreSQL at ${databaseLocation(url)}: ${error instanceof Error ? error.message : String(error)}`);
    });
    const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }), plugins: [new EscapedTextPlugin()] });
    await migrateToLatest(db);
    const store = new PostgresStore(db, new InvocationWriter(postgresBatchCommit(pool), refusedByServer), options);
    await store.pruneStats();
    return store;
  } catch (err) {
    if (!pool.ended) await pool.end();
    throw err;
  }
}

/** Where a URL points, without its credentials (error messages get logged). */
export function databaseLocation(url: string): string {
  try {
    const parsed = new URL(url);
    // A unix socket's directory is the host query parameter, which node-postgres prefers to the URL's host.
    const host = parsed.searchParams.get('host') ?? (decodeURIComponent(parsed.hostname) || 'localhost');
    return `${host}${parsed.port === '' ? '' : `:${parsed.port}`} (database ${decodeURIComponent(parsed.pathname.slice(1))})`;
  } catch {
    return 'an unparsable URL';
  }
}

class PostgresStore extends KyselyStore {
  protected isNameClash(err: unknown): boolean {
    return err instanceof DatabaseError && err.code === '23505' && err.constraint === 'functions_name_unique';
  }

  protected async release(): Promise<void> {
    // Kysely's destroy ends the pool.
  }
}
