// Schema migrations, kept in code so they ship inside dist/ and run on every open, one set for SQLite and
// PostgreSQL. Each migration is frozen once released: change the schema by adding a new one. Column types are
// ones both databases know: 'bigint' where values pass 2^31 (unix ms), 'double precision' for durations
// (PostgreSQL's 'real' is 4 bytes). SQLite goes by type affinity, so these names store exactly what the names
// of the first release ('integer', 'real') did: files made by either behave the same.
import { Migrator, SqliteAdapter, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

// Migrations take Kysely<unknown>: they must not depend on today's table types.
export const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>): Promise<void> {
      let functions = db.schema
        .createTable('functions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('runtime', 'text', (c) => c.notNull())
        .addColumn('code', 'text', (c) => c.notNull())
        .addColumn('handler', 'text', (c) => c.notNull())
        .addColumn('env_vars', 'text', (c) => c.notNull()) // JSON object
        .addColumn('timeout_seconds', 'integer', (c) => c.notNull())
        .addColumn('memory_mb', 'integer', (c) => c.notNull())
        .addColumn('vcpu', 'integer', (c) => c.notNull())
        .addColumn('max_concurrency', 'integer', (c) => c.notNull())
        .addColumn('vm_id', 'text')
        .addColumn('guest_ip', 'text')
        .addColumn('port', 'integer')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('last_invoked_at', 'text');
      // SQLite's implicit rowid is insertion order (listFunctions' tie-break); PostgreSQL has none, so it gets one.
      if (!isSqlite(db)) functions = functions.addColumn('rowid', 'bigint', (c) => c.notNull().generatedAlwaysAsIdentity());
      await functions.execute();
      await db.schema.createIndex('functions_name_unique').unique().on('functions').column('name').execute();

      await db.schema
        .createTable('invocations')
        // seq never reuses a trimmed value, so it orders invocations for good: AUTOINCREMENT on SQLite (which needs
        // exactly INTEGER PRIMARY KEY), an identity column on PostgreSQL (bigint: it outlives 2^31 records).
        .addColumn('seq', isSqlite(db) ? 'integer' : 'bigint', (c) => (isSqlite(db) ? c.primaryKey().autoIncrement() : c.primaryKey().generatedAlwaysAsIdentity()))
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('function_id', 'text', (c) => c.notNull().references('functions.id').onDelete('cascade'))
        .addColumn('request_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('duration_ms', 'double precision', (c) => c.notNull())
        .addColumn('invoked_at', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('cold_start', 'integer', (c) => c.notNull()) // 0 or 1
        .addColumn('logs', 'text', (c) => c.notNull()) // JSON array of strings
        .addColumn('error', 'text') // JSON object or NULL
        .execute();
      // Serves listing, counting and retention trimming per function without a sort.
      await db.schema
        .createIndex('invocations_function_seq')
        .on('invocations')
        .columns(['function_id', 'seq'])
        .execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.dropTable('invocations').execute();
      await db.schema.dropTable('functions').execute();
    },
  },
  // last_invoked_at is now the invoked_at of the newest invocation record (sqlite.ts): kept in the functions row,
  // every invoke rewrote that row (SQLite reads and compares the code in it) and its page in the WAL.
  '0002_derived_last_invoked_at': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('functions').dropColumn('last_invoked_at').execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('functions').addColumn('last_invoked_at', 'text').execute();
      await sql`UPDATE functions SET last_invoked_at = (SELECT invoked_at FROM invocations
                WHERE function_id = functions.id ORDER BY seq DESC LIMIT 1)`.execute(db);
    },
  },
  '0003_snapstart': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('functions').addColumn('init_ms', 'double precision').execute();
      await db.schema.alterTable('functions').addColumn('snapshot_bytes', 'bigint').execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('functions').dropColumn('snapshot_bytes').execute();
      await db.schema.alterTable('functions').dropColumn('init_ms').execute();
    },
  },
  // A packaged function's zip lives in the content-addressed package store; its row names it (code stays '').
  '0004_packages': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('functions').addColumn('package_sha256', 'text').execute();
      await db.schema.alterTable('functions').addColumn('package_size', 'integer').execute();
      await db.schema.alterTable('functions').addColumn('package_unpacked_size', 'integer').execute();
      await db.schema.alterTable('functions').addColumn('package_files', 'integer').execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      for (const column of ['package_files', 'package_unpacked_size', 'package_size', 'package_sha256']) {
        await db.schema.alterTable('functions').dropColumn(column).execute();
      }
    },
  },
  // Per-function invocation statistics in minute and hour buckets (src/stats), kept apart from the records so
  // retention never touches them; written in the records' own transaction (invocation-writer.ts).
  '0005_invocation_stats': {
    async up(db: Kysely<unknown>): Promise<void> {
      let table = db.schema
        .createTable('invocation_stats')
        .addColumn('function_id', 'text', (c) => c.notNull().references('functions.id').onDelete('cascade'))
        .addColumn('resolution', 'integer', (c) => c.notNull()) // seconds: 60 or 3600
        .addColumn('bucket_start', 'bigint', (c) => c.notNull()) // unix seconds, UTC, a multiple of resolution
        .addColumn('invocations', 'integer', (c) => c.notNull())
        .addColumn('errors', 'integer', (c) => c.notNull())
        .addColumn('timeouts', 'integer', (c) => c.notNull())
        .addColumn('cold_starts', 'integer', (c) => c.notNull())
        .addColumn('duration_sum', 'double precision', (c) => c.notNull())
        .addColumn('duration_min', 'double precision', (c) => c.notNull())
        .addColumn('duration_max', 'double precision', (c) => c.notNull())
        .addColumn('histogram', 'text', (c) => c.notNull()) // JSON [bin, count, ...] (src/stats/histogram.ts)
        .addPrimaryKeyConstraint('invocation_stats_key', ['function_id', 'resolution', 'bucket_start']);
      // SQLite only: rows live in key order, so a range of one function is one contiguous read (PostgreSQL reads
      // it through the primary key's index).
      if (isSqlite(db)) table = table.modifyEnd(sql`WITHOUT ROWID`);
      await table.execute();
      // Serves pruning by age and ranges over every function.
      await db.schema.createIndex('invocation_stats_age').on('invocation_stats').columns(['resolution', 'bucket_start']).execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.dropTable('invocation_stats').execute();
    },
  },
  // Asynchronous invocations: the durable queue and dead-letter list, the per-function settings, and which
  // attempt of which kind of invocation a record is.
  '0006_async_events': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('async_events')
        .addColumn('request_id', 'text', (c) => c.primaryKey())
        .addColumn('function_id', 'text', (c) => c.notNull().references('functions.id').onDelete('cascade'))
        .addColumn('payload', 'text', (c) => c.notNull()) // JSON
        .addColumn('state', 'text', (c) => c.notNull()) // queued | dead
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('enqueued_at', 'bigint', (c) => c.notNull()) // unix ms
        .addColumn('next_attempt_at', 'bigint', (c) => c.notNull()) // unix ms
        .addColumn('last_error', 'text') // JSON {type, message} or NULL
        .addColumn('dead_reason', 'text')
        .addColumn('updated_at', 'bigint', (c) => c.notNull()) // unix ms
        .execute();
      // Serves the dead-letter list per function, newest failure first, and deleting a function's events.
      await db.schema.createIndex('async_events_function').on('async_events').columns(['function_id', 'state', 'updated_at']).execute();
      await db.schema.alterTable('functions').addColumn('async_max_retries', 'integer', (c) => c.notNull().defaultTo(2)).execute();
      await db.schema.alterTable('functions').addColumn('async_max_event_age_seconds', 'integer', (c) => c.notNull().defaultTo(21_600)).execute();
      await db.schema.alterTable('functions').addColumn('async_configured_at', 'text').execute();
      await db.schema.alterTable('invocations').addColumn('attempt', 'integer', (c) => c.notNull().defaultTo(1)).execute();
      await db.schema.alterTable('invocations').addColumn('async', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('invocations').dropColumn('async').execute();
      await db.schema.alterTable('invocations').dropColumn('attempt').execute();
      for (const column of ['async_configured_at', 'async_max_event_age_seconds', 'async_max_retries']) {
        await db.schema.alterTable('functions').dropColumn(column).execute();
      }
      await db.schema.dropTable('async_events').execute();
    },
  },
  // What Lambda clients set that fnvm keeps: a description (also on /v1), the role and the runtime identifier.
  '0007_lambda_fields': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('functions').addColumn('description', 'text', (c) => c.notNull().defaultTo('')).execute();
      await db.schema.alterTable('functions').addColumn('lambda_role', 'text').execute();
      await db.schema.alterTable('functions').addColumn('lambda_runtime', 'text').execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      for (const column of ['lambda_runtime', 'lambda_role', 'description']) {
        await db.schema.alterTable('functions').dropColumn(column).execute();
      }
    },
  },
  // The fleet (src/fleet/registry.ts): hosts with leases, and which host (under which generation) holds a function.
  // One host on SQLite never fills them.
  '0008_fleet': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.createTable('hosts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('vcpu', 'integer', (c) => c.notNull())
        .addColumn('memory_mb', 'integer', (c) => c.notNull())
        .addColumn('max_functions', 'integer', (c) => c.notNull())
        .addColumn('max_live_vms', 'integer', (c) => c.notNull())
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('lease_expires_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('draining', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.alterTable('functions').addColumn('host_id', 'text').execute();
      await db.schema.alterTable('functions').addColumn('host_generation', 'integer').execute();
      await db.schema.createIndex('functions_host').on('functions').columns(['host_id', 'host_generation']).execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.dropIndex('functions_host').execute();
      for (const column of ['host_generation', 'host_id']) await db.schema.alterTable('functions').dropColumn(column).execute();
      await db.schema.dropTable('hosts').execute();
    },
  },
  // A fleet's deployment packages (src/fleet/package-blobs.ts): the zip of every package a function uses, so that a
  // host that takes a function over has its package. One host on SQLite never fills the table.
  '0009_package_blobs': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.createTable('package_blobs')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('zip', isSqlite(db) ? 'blob' : 'bytea', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('stored_at', 'bigint', (c) => c.notNull()) // unix ms on the database's clock: last stored or reused
        .execute();
      // Serves "does any function still use this package?" (deleting unused blobs).
      await db.schema.createIndex('functions_package').on('functions').column('package_sha256').execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.dropIndex('functions_package').execute();
      await db.schema.dropTable('package_blobs').execute();
    },
  },
  // Which host runs an event's attempt, until when (unix ms on the database's clock): KyselyStore.claimEvent.
  '0010_event_leases': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema.alterTable('async_events').addColumn('lease_host', 'text').execute();
      await db.schema.alterTable('async_events').addColumn('lease_expires_at', 'bigint').execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      for (const column of ['lease_expires_at', 'lease_host']) await db.schema.alterTable('async_events').dropColumn(column).execute();
    },
  },
};

function isSqlite(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter instanceof SqliteAdapter;
}

const provider: MigrationProvider = {
  getMigrations: () => Promise.resolve(migrations),
};

/** Brings the schema up to date; already applied migrations are skipped. Throws if any migration fails. */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<void> {
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'migration setup';
    throw new Error(`database migration failed: ${failed}`, { cause: error });
  }
}
