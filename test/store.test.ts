// Tests of the SQLite store against real database files in a fresh temporary directory.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { copyFileSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { checkpointIntervalMs } from '../src/store/checkpointer.js';
import { migrations } from '../src/store/migrations.js';
import { openSqliteStore } from '../src/store/sqlite.js';
import { NameTakenError, type AsyncEvent, type InvocationRecord, type NewFunction, type Store } from '../src/store/types.js';

const ISO_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let dir: string;
let nextFile = 0;
let nextId = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fnvm-store-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A path for a new database file, in a subdirectory the store has to create. */
function freshPath(): string {
  return join(dir, `db${nextFile++}`, 'fnvm.db');
}

/** Opens a store on a new file and closes it when the test ends. */
async function openStore(t: TestContext, path = freshPath()): Promise<Store> {
  const store = await openSqliteStore(path);
  t.after(() => store.close());
  return store;
}

function uid(prefix: string): string {
  return `${prefix}-${nextId++}`;
}

function newFunction(overrides: Partial<NewFunction> = {}): NewFunction {
  return {
    id: uid('fn'),
    name: uid('name'),
    runtime: 'node',
    code: 'export const handler = () => 42;',
    handler: 'index.handler',
    env_vars: { A: '1' },
    timeout_seconds: 30,
    memory_mb: 128,
    vcpu: 1,
    max_concurrency: 4,
    vm_id: null,
    guest_ip: null,
    port: null,
    state: 'creating',
    error: null,
    version: 1,
    ...overrides,
  };
}

function newInvocation(functionId: string, overrides: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    id: uid('inv'),
    function_id: functionId,
    request_id: uid('req'),
    status: 'success',
    duration_ms: 12.5,
    invoked_at: new Date().toISOString(),
    version: 1,
    cold_start: false,
    logs: [],
    error: null,
    attempt: 1,
    async: false,
    ...overrides,
  };
}

/** Records `count` invocations and returns them oldest first. */
async function recordMany(store: Store, functionId: string, count: number, retention = 1000): Promise<InvocationRecord[]> {
  const recorded: InvocationRecord[] = [];
  for (let i = 0; i < count; i++) {
    const invocation = newInvocation(functionId);
    await store.recordInvocation(invocation, retention);
    recorded.push(invocation);
  }
  return recorded;
}

const ids = (records: { id: string }[]): string[] => records.map((r) => r.id);

/** Reads a database file directly, bypassing the store. */
function withRaw<T>(path: string, read: (db: Database.Database) => T): T {
  const db = new Database(path);
  try {
    return read(db);
  } finally {
    db.close();
  }
}

describe('functions', () => {
  test('the description and what Lambda clients set are kept and updated', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction({ ...newFunction(), description: 'résumé ✓', lambda_role: 'arn:aws:iam::000000000000:role/r', lambda_runtime: 'python3.12' });
    assert.deepEqual([fn.description, fn.lambda_role, fn.lambda_runtime], ['résumé ✓', 'arn:aws:iam::000000000000:role/r', 'python3.12']);
    const updated = await store.updateFunction(fn.id, { description: '', lambda_runtime: null });
    assert.deepEqual([updated?.description, updated?.lambda_role, updated?.lambda_runtime], ['', 'arn:aws:iam::000000000000:role/r', null]);
    assert.deepEqual(await store.getFunction(fn.id), updated);
  });

  test('create, get, get by name, and list oldest first', async (t) => {
    const store = await openStore(t);
    const input = newFunction({ name: 'alpha' });
    const created = await store.createFunction(input);
    assert.deepEqual(created, {
      ...input, created_at: created.created_at, updated_at: created.created_at, last_invoked_at: null, init_ms: null, snapshot_bytes: null,
      description: '', lambda_role: null, lambda_runtime: null, async_max_retries: 2, async_max_event_age_seconds: 21_600, async_configured_at: null,
    });
    assert.match(created.created_at, ISO_UTC_MS);

    const others = [await store.createFunction(newFunction()), await store.createFunction(newFunction())];
    assert.deepEqual(await store.getFunction(created.id), created);
    assert.deepEqual(await store.getFunctionByName('alpha'), created);
    assert.deepEqual(await store.listFunctions(), [created, ...others]);
    assert.equal(await store.getFunction('missing'), undefined);
    assert.equal(await store.getFunctionByName('missing'), undefined);
  });

  test('a taken name throws NameTakenError on create and on rename', async (t) => {
    const store = await openStore(t);
    await store.createFunction(newFunction({ name: 'taken' }));
    await assert.rejects(store.createFunction(newFunction({ name: 'taken' })), (err: unknown) => {
      assert.ok(err instanceof NameTakenError);
      assert.equal(err.functionName, 'taken');
      return true;
    });

    const other = await store.createFunction(newFunction({ name: 'other' }));
    await assert.rejects(store.updateFunction(other.id, { name: 'taken' }), NameTakenError);
    assert.deepEqual(await store.getFunction(other.id), other, 'a failed rename changes nothing');
    assert.equal((await store.updateFunction(other.id, { name: 'free' }))?.name, 'free');
  });

  test('update applies the patch and bumps only updated_at', async (t) => {
    const store = await openStore(t);
    const created = await store.createFunction(newFunction());
    await sleep(5); // so the new updated_at differs at millisecond resolution
    const patch = {
      env_vars: { KEY: 'value', EMPTY: '', QUOTE: '"x"\n' },
      code: 'new code',
      state: 'ready',
      vm_id: 'vm-1',
      guest_ip: '10.0.0.2',
      port: 8080,
      version: 2,
    } as const;
    const updated = await store.updateFunction(created.id, patch);
    assert.ok(updated);
    assert.deepEqual(updated, { ...created, ...patch, updated_at: updated.updated_at });
    assert.equal(updated.created_at, created.created_at);
    assert.ok(updated.updated_at > created.updated_at);
    assert.deepEqual(await store.getFunction(created.id), updated);

    await sleep(5);
    const touched = await store.updateFunction(created.id, {});
    assert.ok(touched && touched.updated_at > updated.updated_at, 'an empty patch still bumps updated_at');
    assert.equal(await store.updateFunction('missing', { state: 'error' }), undefined);
  });

  test('delete removes the function and its invocations', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const kept = await store.createFunction(newFunction());
    await recordMany(store, fn.id, 3);
    await recordMany(store, kept.id, 2);

    assert.equal(await store.deleteFunction(fn.id), true);
    assert.equal(await store.getFunction(fn.id), undefined);
    assert.equal(await store.countInvocations(fn.id), 0);
    assert.deepEqual(await store.listInvocations(fn.id, 10, 0), []);
    assert.equal(await store.countInvocations(kept.id), 2);
    assert.equal(await store.deleteFunction(fn.id), false);
  });

  test('a function has code or a package: storing one drops the other, and both survive a reopen', async () => {
    const path = freshPath();
    const store = await openSqliteStore(path);
    const pkg = { sha256: 'ab'.repeat(32), size: 1234, unpacked_size: 56789, files: 12 };
    const { code: _code, ...withoutCode } = newFunction();
    const created = await store.createFunction({ ...withoutCode, package: pkg });
    assert.deepEqual(created.package, pkg);
    assert.equal('code' in created, false, 'a packaged function has no code key');
    const toCode = await store.updateFunction(created.id, { code: 'exports.handler = () => 1;' });
    assert.equal(toCode?.code, 'exports.handler = () => 1;');
    assert.equal('package' in (toCode ?? {}), false, 'new code dropped the package');
    const other = { ...pkg, sha256: 'cd'.repeat(32), files: 3 };
    await store.updateFunction(created.id, { package: other });
    await store.close();
    const reopened = await openSqliteStore(path);
    const loaded = await reopened.getFunction(created.id);
    await reopened.close();
    assert.deepEqual(loaded?.package, other);
    assert.equal(loaded?.code, undefined);
  });

  test('the foreign key cascades deletes done outside the store', async (t) => {
    const path = freshPath();
    const store = await openStore(t, path);
    const fn = await store.createFunction(newFunction());
    await recordMany(store, fn.id, 2);
    withRaw(path, (db) => {
      db.pragma('foreign_keys = ON');
      db.prepare('DELETE FROM functions WHERE id = ?').run(fn.id);
    });
    assert.equal(await store.countInvocations(fn.id), 0);
  });
});

describe('async events', () => {
  const newEvent = (functionId: string, overrides: Partial<AsyncEvent> = {}): AsyncEvent => ({
    request_id: uid('req'), function_id: functionId, payload: '{"n":1}', state: 'queued', attempts: 0, failures: 0,
    enqueued_at: 1000, next_attempt_at: 1000, last_error: null, dead_reason: null, updated_at: 1000, ...overrides,
  });

  test('enqueue, claim, dead letters newest first, counts, discard', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const a = newEvent(fn.id, { payload: '{"event":"a"}' });
    const b = newEvent(fn.id, { payload: '{"event":"b ✓"}' });
    await Promise.all([store.enqueueEvent(a), store.enqueueEvent(b)]);
    assert.deepEqual(await store.getEvent(a.request_id), a);
    // Saves carry no payload and never touch the stored one; the queue's listing leaves payloads out.
    const { payload: _a, ...queuedA } = a;
    const { payload: _b, ...queuedB } = b;
    const claimed = { ...queuedA, attempts: 1, failures: 1, next_attempt_at: 5000, updated_at: 2000 };
    await store.saveEvent(claimed);
    assert.deepEqual(await store.getEvent(a.request_id), { ...claimed, payload: a.payload });
    assert.equal(await store.eventPayload(b.request_id), b.payload);
    assert.equal(await store.eventPayload('no-such-event'), undefined);
    assert.deepEqual((await store.listQueuedEvents()).sort((x, y) => x.updated_at - y.updated_at), [queuedB, claimed]);
    const deadA = { ...claimed, state: 'dead' as const, dead_reason: 'RetriesExhausted' as const, last_error: { type: 'Error', message: 'é ✓' }, updated_at: 3000 };
    const deadB = { ...queuedB, state: 'dead' as const, dead_reason: 'EventAgeExceeded' as const, updated_at: 4000 };
    await store.saveEvent(deadA);
    await store.saveEvent(deadB);
    assert.deepEqual(await store.listDeadLetters(fn.id, 10, 0), [{ ...deadB, payload: b.payload }, { ...deadA, payload: a.payload }]);
    assert.deepEqual(await store.listDeadLetters(fn.id, 1, 1), [{ ...deadA, payload: a.payload }]);
    assert.deepEqual(await store.listDeadEvents(fn.id, 10, 0), [deadB, deadA]);
    assert.deepEqual(await store.countDeadLetters(), new Map([[fn.id, 2]]));
    assert.deepEqual(await store.listQueuedEvents(), []);
    assert.equal(await store.deleteEvent(deadA.request_id), true);
    assert.equal(await store.deleteEvent(deadA.request_id), false);
    assert.deepEqual(await store.countDeadLetters(), new Map([[fn.id, 1]]));
  });

  test('an attempt\'s record commits with its settlement; a failed commit leaves the event as it was', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const done = newEvent(fn.id, { attempts: 1, failures: 1 });
    const retried = newEvent(fn.id, { attempts: 1, failures: 1 });
    await Promise.all([store.enqueueEvent(done), store.enqueueEvent(retried)]);
    const { payload: _payload, ...queuedRetried } = retried;
    const later = { ...queuedRetried, next_attempt_at: 9000, last_error: { type: 'Error', message: 'x' } };
    await Promise.all([
      store.recordInvocation(newInvocation(fn.id, { request_id: done.request_id, async: true }), 100, { delete: done.request_id }),
      store.recordInvocation(newInvocation(fn.id, { request_id: retried.request_id, async: true, status: 'error' }), 100, { save: later }),
    ]);
    assert.equal(await store.getEvent(done.request_id), undefined);
    assert.deepEqual(await store.getEvent(retried.request_id), { ...later, payload: retried.payload });
    const records = await store.listInvocations(fn.id, 10, 0);
    assert.deepEqual(records.map((r) => [r.request_id, r.attempt, r.async]).sort(), [[done.request_id, 1, true], [retried.request_id, 1, true]].sort());
    // A record that cannot commit (its function is unknown) takes its settlement down with it.
    await assert.rejects(store.recordInvocation(newInvocation('no-such-function'), 100, { delete: retried.request_id }));
    assert.deepEqual(await store.getEvent(retried.request_id), { ...later, payload: retried.payload });
  });

  test('deleting a function deletes its events; an event for an unknown function is refused', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const event = newEvent(fn.id);
    await store.enqueueEvent(event);
    await store.saveEvent({ ...newEvent(fn.id), request_id: 'missing' }); // saving a missing event changes nothing
    await store.deleteFunction(fn.id);
    assert.equal(await store.getEvent(event.request_id), undefined);
    await assert.rejects(store.enqueueEvent(newEvent('no-such-function')));
  });
});

describe('invocations', () => {
  test('record sets last_invoked_at and round-trips logs, error and cold_start', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const failed = newInvocation(fn.id, {
      status: 'error',
      cold_start: true,
      duration_ms: 3.25,
      invoked_at: '2024-05-01T10:00:00.123Z',
      logs: ['line 1', '', 'ünïcødé ✓'],
      error: { type: 'TypeError', message: 'x is not a function', stack: 'TypeError: x\n    at f (index.js:1:1)' },
    });
    const ok = newInvocation(fn.id, { invoked_at: '2024-05-01T10:00:01.000Z', version: 2 });
    await store.recordInvocation(failed, 100);
    await store.recordInvocation(ok, 100);

    assert.deepEqual(await store.listInvocations(fn.id, 10, 0), [ok, failed]);
    assert.equal((await store.getFunction(fn.id))?.last_invoked_at, ok.invoked_at);
    assert.equal(await store.countInvocations(fn.id), 2);
  });

  test('record for an unknown function fails and stores nothing', async (t) => {
    const store = await openStore(t);
    await assert.rejects(store.recordInvocation(newInvocation('missing'), 10), /FOREIGN KEY/);
    assert.equal(await store.countInvocations('missing'), 0);
  });

  test('retention trims each function to its newest records', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const other = await store.createFunction(newFunction());
    await recordMany(store, other.id, 4, 3);
    const recorded = await recordMany(store, fn.id, 10, 3);

    assert.equal(await store.countInvocations(fn.id), 3);
    assert.deepEqual(ids(await store.listInvocations(fn.id, 10, 0)), ids(recorded.slice(-3).reverse()));
    assert.equal(await store.countInvocations(other.id), 3, 'trimming one function leaves others alone');

    await store.recordInvocation(newInvocation(fn.id), 0);
    assert.equal(await store.countInvocations(fn.id), 0, 'retention 0 keeps nothing');
    await assert.rejects(store.recordInvocation(newInvocation(fn.id), -1), RangeError);
  });

  test('list is newest first with limit and offset', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    // Identical timestamps: the order must come from recording order, not the clock.
    const newestFirst: InvocationRecord[] = [];
    for (let i = 0; i < 7; i++) {
      const invocation = newInvocation(fn.id, { invoked_at: '2024-01-01T00:00:00.000Z' });
      await store.recordInvocation(invocation, 100);
      newestFirst.unshift(invocation);
    }
    assert.deepEqual(await store.listInvocations(fn.id, 3, 0), newestFirst.slice(0, 3));
    assert.deepEqual(await store.listInvocations(fn.id, 3, 3), newestFirst.slice(3, 6));
    assert.deepEqual(await store.listInvocations(fn.id, 3, 6), newestFirst.slice(6));
    assert.deepEqual(await store.listInvocations(fn.id, 3, 9), []);
  });
});

describe('group commit', () => {
  test('concurrent records commit together, each acknowledged only once a fresh connection reads it', async (t) => {
    const path = freshPath();
    const store = await openStore(t, path);
    const fn = await store.createFunction(newFunction());
    const reader = new Database(path, { readonly: true });
    t.after(() => reader.close());
    const visible = reader.prepare('SELECT count(*) AS n FROM invocations WHERE id = ?').pluck();
    const unpin = pinWal(t, path);
    const commitsBefore = walFrames(path);
    const invocations = Array.from({ length: 50 }, () => newInvocation(fn.id));
    await Promise.all(invocations.map(async (invocation) => {
      await store.recordInvocation(invocation, 1000);
      assert.equal(visible.get(invocation.id), 1, `${invocation.id} acknowledged before it was committed`);
    }));
    assert.equal(await store.countInvocations(fn.id), 50);
    assert.deepEqual(ids(await store.listInvocations(fn.id, 50, 0)), ids(invocations.reverse()), 'recorded in call order');
    // One transaction appends each page it changed once: 50 commits of their own would append >= 100 frames.
    assert.ok(walFrames(path) - commitsBefore < 40, `${walFrames(path) - commitsBefore} WAL frames for one batch`);
    unpin();
  });

  test('a record that cannot be stored fails alone: the rest of its batch is committed', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const good = [newInvocation(fn.id), newInvocation(fn.id)];
    const results = await Promise.allSettled([
      store.recordInvocation(good[0]!, 10),
      store.recordInvocation(newInvocation('deleted-meanwhile'), 10),
      store.recordInvocation(good[1]!, 10),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /FOREIGN KEY/);
    assert.deepEqual(ids(await store.listInvocations(fn.id, 10, 0)), ids(good.reverse()));
  });

  test('retention stays exact within a batch and last_invoked_at is the last record\'s', async (t) => {
    const store = await openStore(t);
    const fn = await store.createFunction(newFunction());
    const other = await store.createFunction(newFunction());
    const invocations = Array.from({ length: 30 }, (_, i) => newInvocation(i % 3 === 0 ? other.id : fn.id, {
      invoked_at: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
    }));
    await Promise.all(invocations.map((invocation) => store.recordInvocation(invocation, 5)));
    const mine = invocations.filter((i) => i.function_id === fn.id);
    assert.deepEqual(ids(await store.listInvocations(fn.id, 100, 0)), ids(mine.slice(-5).reverse()));
    assert.equal(await store.countInvocations(other.id), 5);
    assert.equal((await store.getFunction(fn.id))?.last_invoked_at, mine.at(-1)?.invoked_at);
    assert.equal((await store.updateFunction(fn.id, { state: 'ready' }))?.last_invoked_at, mine.at(-1)?.invoked_at);
  });

  test('commits reach the database file through the background checkpoint, not the committing connection', async (t) => {
    const path = freshPath();
    const store = await openStore(t, path);
    const fn = await store.createFunction(newFunction());
    await recordMany(store, fn.id, 20); // far fewer pages than the main connection's own checkpoint threshold
    await sleep(checkpointIntervalMs * 4);
    const copy = `${path}.copy`;
    copyFileSync(path, copy); // the database file alone, without its WAL
    assert.equal(withRaw(copy, (db) => db.prepare('SELECT count(*) FROM invocations').pluck().get()), 20);
  });

  test('a database from migration 0001 keeps each function\'s last_invoked_at', async () => {
    const path = freshPath();
    await openSqliteStore(path).then((store) => store.close()); // creates the file; migrated back to 0001 below
    const sqlite = new Database(path);
    const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
    try {
      const down = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateTo('0001_initial');
      assert.equal(down.error, undefined);
      sqlite.prepare(`INSERT INTO functions (id, name, runtime, code, handler, env_vars, timeout_seconds, memory_mb, vcpu,
        max_concurrency, state, version, created_at, updated_at, last_invoked_at)
        VALUES ('f', 'f', 'node', 'c', 'h', '{}', 1, 128, 1, 1, 'ready', 1, 't', 't', '2024-01-01T00:00:02.000Z')`).run();
      const record = sqlite.prepare(`INSERT INTO invocations (id, function_id, request_id, status, duration_ms, invoked_at,
        version, cold_start, logs) VALUES (?, 'f', 'r', 'success', 1, ?, 1, 0, '[]')`);
      record.run('i1', '2024-01-01T00:00:01.000Z');
      record.run('i2', '2024-01-01T00:00:02.000Z');
    } finally {
      await db.destroy();
    }
    const store = await openSqliteStore(path);
    try {
      assert.equal((await store.getFunction('f'))?.last_invoked_at, '2024-01-01T00:00:02.000Z');
      assert.equal((await store.listFunctions())[0]?.last_invoked_at, '2024-01-01T00:00:02.000Z');
    } finally {
      await store.close();
    }
  });
});

/**
 * Holds a read transaction open until the returned function (or the test's end) releases it: the WAL cannot
 * start over while a reader uses it, so its size counts every frame appended meanwhile.
 */
function pinWal(t: TestContext, path: string): () => void {
  const pin = new Database(path, { readonly: true });
  pin.exec('BEGIN');
  pin.prepare('SELECT count(*) FROM invocations').get();
  const release = () => {
    if (!pin.open) return;
    pin.exec('COMMIT');
    pin.close();
  };
  t.after(release);
  return release;
}

/** Frames in the database's WAL file (they are 4 KiB pages with a 24-byte header; the file has a 32-byte one). */
function walFrames(path: string): number {
  return Math.floor((statSync(`${path}-wal`).size - 32) / (4096 + 24));
}

describe('database file', () => {
  test('reopening keeps everything and reruns no migration', async () => {
    const path = freshPath();
    const first = await openSqliteStore(path);
    const fn = await first.createFunction(newFunction());
    const invocations = await recordMany(first, fn.id, 3);
    const saved = await first.getFunction(fn.id);
    await first.close();

    const reopened = await openSqliteStore(path);
    try {
      assert.deepEqual(await reopened.listFunctions(), [saved]);
      assert.deepEqual(await reopened.listInvocations(fn.id, 10, 0), invocations.reverse());
    } finally {
      await reopened.close();
    }
    const applied = withRaw(path, (db) => db.prepare('SELECT name FROM kysely_migration').all());
    assert.deepEqual(applied, [
      { name: '0001_initial' }, { name: '0002_derived_last_invoked_at' }, { name: '0003_snapstart' }, { name: '0004_packages' },
      { name: '0005_invocation_stats' }, { name: '0006_async_events' }, { name: '0007_lambda_fields' },
    ]);
  });

  test('two stores on one file see each other\'s writes', async (t) => {
    const path = freshPath();
    const a = await openStore(t, path);
    const b = await openStore(t, path);
    assert.equal(withRaw(path, (db) => db.pragma('journal_mode', { simple: true })), 'wal');

    const fromA = await a.createFunction(newFunction());
    assert.deepEqual(await b.getFunction(fromA.id), fromA);
    const invocation = newInvocation(fromA.id);
    await b.recordInvocation(invocation, 10);
    assert.deepEqual(await a.listInvocations(fromA.id, 10, 0), [invocation]);
  });

  test('unicode and a 5 MB code string round-trip intact', async (t) => {
    const store = await openStore(t);
    const line = '// ünïcødé 日本語 🚀 \u0000 "quotes" \\ back\n';
    const code = line.repeat(Math.ceil((5 * 1024 * 1024) / line.length));
    const input = newFunction({ name: 'función-🚀-名前', code, env_vars: { 'CLÉ_🔑': 'värde ✓', NUL: 'a\u0000b' } });
    const created = await store.createFunction(input);
    const loaded = await store.getFunctionByName(input.name);
    assert.ok(loaded);
    assert.equal(loaded.code?.length, code.length);
    assert.ok(loaded.code === code, 'code differs');
    assert.deepEqual(loaded, created);
    assert.deepEqual(loaded.env_vars, input.env_vars);
  });

  test('an in-memory store works', async () => {
    const store = await openSqliteStore(':memory:');
    try {
      const fn = await store.createFunction(newFunction());
      await store.recordInvocation(newInvocation(fn.id), 5);
      assert.equal(await store.countInvocations(fn.id), 1);
    } finally {
      await store.close();
    }
  });
});
